"""The event bus: in-process fan-out, and forwarding to the real Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
import json
import os
import socket

import aiomqtt
import pytest

from dialer.bus import EventBus, MqttForwarder, topic_matches


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=0.5):
            return True
    except OSError:
        return False


needs_broker = pytest.mark.skipif(
    not _broker_up() and os.environ.get("CI") != "true", reason="no MQTT broker on 1883"
)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("#", "operators/1001/screenpop", True),
        ("operators/+/screenpop", "operators/1001/screenpop", True),
        ("operators/+/screenpop", "operators/1001/state", False),
        ("operators/1001/#", "operators/1001/state", True),
        ("calls/+", "calls/a/b", False),
    ],
)
def test_topic_wildcards_follow_mqtt_rules(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


async def test_slow_subscriber_loses_oldest_messages_not_the_publisher() -> None:
    bus = EventBus()
    sub = bus.subscribe("calls/#", maxsize=2)
    for i in range(5):
        bus.publish(f"calls/{i}", {"i": i})
    bus.publish("operators/1/state", {"ignored": True})
    got = [sub.queue.get_nowait().payload["i"] for _ in range(2)]
    assert got == [3, 4]
    assert sub.dropped == 3


@pytest.mark.mqtt
@needs_broker
async def test_forwarder_publishes_versioned_json_under_the_prefix() -> None:
    bus = EventBus()
    prefix = f"obzvon-test-{os.getpid()}"
    forwarder = MqttForwarder(bus, host="127.0.0.1", port=1883, prefix=prefix)
    async with aiomqtt.Client("127.0.0.1", 1883) as listener:
        await listener.subscribe(f"{prefix}/#", qos=1)
        task = asyncio.create_task(forwarder.run(), name="mqtt-forwarder")
        try:
            for _ in range(100):
                if forwarder.statistics().connected:
                    break
                await asyncio.sleep(0.02)
            bus.publish("operators/1001/screenpop", {"order": "A-1", "name": "Ирина"}, qos=1)
            async with asyncio.timeout(5):
                async for message in listener.messages:
                    assert str(message.topic) == f"{prefix}/operators/1001/screenpop"
                    body = json.loads(message.payload)  # type: ignore[arg-type]
                    assert body == {"v": 1, "order": "A-1", "name": "Ирина"}
                    break
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_forwarder_keeps_running_without_a_broker_and_events_still_flow_in_process() -> None:
    bus = EventBus()
    local = bus.subscribe("#")
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    forwarder = MqttForwarder(bus, host="127.0.0.1", port=dead_port, backoff_max=0.05)
    task = asyncio.create_task(forwarder.run(), name="mqtt-forwarder")
    try:
        for _ in range(50):
            if forwarder.statistics().reconnects >= 2:
                break
            await asyncio.sleep(0.02)
        bus.publish("calls/x", {"state": "dialing"})
        assert not task.done()
        assert forwarder.statistics().connected is False
        assert forwarder.statistics().reconnects >= 2
        assert local.queue.get_nowait().payload == {"state": "dialing"}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
