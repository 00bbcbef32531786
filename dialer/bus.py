"""Live events inside the daemon, and out to MQTT.

`EventBus.publish()` never blocks and never fails: live events are for screens (screen pops,
wallboards, terminal views), and a slow screen must not slow a call. Each subscriber has a
bounded queue; when it is full the oldest message is dropped and counted.

`MqttForwarder` sends everything published on the bus to an MQTT broker under a topic prefix
(`obzvon/operators/1001/screenpop`), reconnecting with backoff when the broker goes away. While
it is away messages are dropped, never the calls. Without a broker configured the same events
still flow in-process to the wallboard and the HTTP event streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str  # relative to the prefix, e.g. "operators/1001/screenpop"
    payload: Mapping[str, Any]
    qos: int = 0

    def encode(self) -> bytes:
        return json.dumps(
            {"v": PAYLOAD_VERSION, **self.payload}, ensure_ascii=False, default=str
        ).encode()


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT wildcard match: ``+`` is one level, a trailing ``#`` is any number of levels."""
    pat, top = pattern.split("/"), topic.split("/")
    for i, part in enumerate(pat):
        if part == "#":
            return True
        if i >= len(top) or (part != "+" and part != top[i]):
            return False
    return len(pat) == len(top)


@dataclass(slots=True)
class Subscription:
    pattern: str
    queue: asyncio.Queue[BusMessage]
    dropped: int = 0

    def offer(self, message: BusMessage) -> None:
        if not topic_matches(self.pattern, message.topic):
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(message)

    async def __aiter__(self) -> AsyncIterator[BusMessage]:
        while True:
            yield await self.queue.get()


@dataclass(slots=True)
class EventBus:
    published: int = 0
    _subscriptions: list[Subscription] = field(default_factory=list)

    def publish(self, topic: str, payload: Mapping[str, Any], *, qos: int = 0) -> None:
        message = BusMessage(topic, payload, qos)
        self.published += 1
        for sub in self._subscriptions:
            sub.offer(message)

    def subscribe(self, pattern: str = "#", *, maxsize: int = 1000) -> Subscription:
        sub = Subscription(pattern, asyncio.Queue(maxsize=maxsize))
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)


@dataclass(frozen=True, slots=True)
class MqttStatistics:
    connected: bool
    sent: int
    dropped: int
    reconnects: int


class MqttForwarder:
    """Forwards bus messages to an MQTT broker until cancelled."""

    def __init__(
        self,
        bus: EventBus,
        *,
        host: str,
        port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        prefix: str = "obzvon",
        backoff_max: float = 30.0,
    ) -> None:
        self._bus = bus
        self._host, self._port = host, port
        self._username, self._password = username, password
        self._prefix = prefix.strip("/")
        self._backoff_max = backoff_max
        self._sub = bus.subscribe("#", maxsize=10_000)
        self._connected = False
        self._sent = 0
        self._reconnects = 0
        self._dropped_offline = 0

    def statistics(self) -> MqttStatistics:
        return MqttStatistics(
            self._connected, self._sent, self._sub.dropped + self._dropped_offline, self._reconnects
        )

    async def run(self) -> None:
        import aiomqtt

        delay = 0.5
        try:
            while True:
                try:
                    async with aiomqtt.Client(
                        self._host,
                        self._port,
                        username=self._username,
                        password=self._password,
                        timeout=5,
                    ) as client:
                        self._connected, delay = True, 0.5
                        log.info("MQTT connected to %s:%d", self._host, self._port)
                        while True:
                            msg = await self._sub.queue.get()
                            await client.publish(
                                f"{self._prefix}/{msg.topic}", msg.encode(), qos=msg.qos
                            )
                            self._sent += 1
                except aiomqtt.MqttError as exc:
                    if self._connected:
                        log.warning("MQTT link lost: %s; events are dropped until it is back", exc)
                    self._connected = False
                    self._reconnects += 1
                    # drop what piled up while offline: stale screen pops help nobody
                    while not self._sub.queue.empty():
                        self._sub.queue.get_nowait()
                        self._dropped_offline += 1
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, self._backoff_max)
        finally:
            self._connected = False
            self._bus.unsubscribe(self._sub)
