"""A TCP link in front of a test CRM that loses answers after the CRM has acted on them.

The client talks to `LossyLink.url`; bytes go through to the test server unchanged. For a
request that `lose` picks, the server receives it whole and processes it, and then its answer
is lost on the way back, in one of two ways:

- ``"reset"``: the client's connection is reset when the answer's first bytes arrive (httpx:
  ``RemoteProtocolError``), as when a proxy or the network drops a connection mid-answer;
- ``"stall"``: the answer is held back until the client gives up (httpx: ``ReadTimeout``).

Requests on one connection are sequential (HTTP/1.1 without pipelining, as httpx sends them),
so the request an answer belongs to is the bytes the client sent since the previous answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Loss = Literal["reset", "stall"]


@dataclass
class LossyLink:
    """Listens on 127.0.0.1; `lose` says, per request head (the request line and headers, as
    bytes), whether to lose its answer. `budget` answers are lost at most; `lost` lists the
    request lines of those lost."""

    target_port: int
    lose: Callable[[bytes], bool] = lambda head: False
    budget: int = 0
    mode: Loss = "reset"
    lost: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lose_next(self, count: int, where: bytes, mode: Loss = "reset") -> None:
        """Lose the answers to the next `count` requests whose head contains `where`."""
        self.budget, self.mode = count, mode
        self.lose = lambda head: where in head

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
        self._server = None

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            self._tasks.discard(task)
            return
        request = bytearray()
        seen = [0, 0]  # requests begun, requests whose answer was looked at
        answered = asyncio.Event()  # an answer came back since the last request bytes

        async def upstream() -> None:
            while data := await client_r.read(65536):
                if answered.is_set() or not request:
                    request.clear()
                    answered.clear()
                    seen[0] += 1
                request.extend(data)
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if seen[1] != seen[0]:  # the first bytes of this request's answer
                    seen[1] = seen[0]
                    if self.budget > 0 and self.lose(_head(request)):
                        self.budget -= 1
                        self.lost.append(_head(request).split(b"\r\n", 1)[0].decode("latin-1"))
                        if self.mode == "stall":
                            await asyncio.Event().wait()  # until the client hangs up
                        client_w.transport.abort()
                        return
                client_w.write(data)
                await client_w.drain()
                answered.set()
            client_w.close()

        pumps = [asyncio.create_task(upstream()), asyncio.create_task(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            client_w.transport.abort()
            server_w.transport.abort()
            self._tasks.discard(task)


def _head(request: bytearray) -> bytes:
    end = request.find(b"\r\n\r\n")
    return bytes(request if end < 0 else request[:end])
