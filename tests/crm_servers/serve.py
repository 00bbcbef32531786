"""Run an ASGI app under uvicorn on 127.0.0.1, on a free port that survives restarts.

`stop()` closes the listening socket, so clients get "connection refused", as from a CRM
that is down; `start()` again listens on the same port.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


class LoopbackServer:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self._server: uvicorn.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            access_log=False,
        )
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        # startup()/shutdown() without serve()'s main loop: that loop only polls for signals
        # and an exit flag every 0.1 s, which would add up over a test run.
        await server.startup()
        if server.should_exit:
            raise OSError(f"cannot listen on 127.0.0.1:{self.port}")
        self._server = server
        self.port = server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            # A test server stops like a crashed CRM: without waiting for open connections.
            self._server.force_exit = True
            await self._server.shutdown()
        self._server = None


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[LoopbackServer]:
    server = LoopbackServer(app)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
