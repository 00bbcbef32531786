"""Live events on the real Mosquitto broker (127.0.0.1:1883), from a whole runtime against the
Asterisk simulator: a routed call pops up on its operator's screen with QoS 1, and every topic's
payload has exactly the keys `docs/events.md` shows for it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from dialer.app import background_jobs, open_runtime
from dialer.clock import ScaledClock
from dialer.config import CampaignSettings, OperatorSettings, Settings
from dialer.config.models import DatabaseSettings, HttpSettings, MqttSettings
from dialer.engine import events as ev
from dialer.events_schema import publish_campaign_stats
from dialer.storage import repo
from dialer.store import lead_of
from dialer.telephony import DialSettings
from pbx.sim import AsteriskSim, CallModel, NumberScript, OperatorScript
from tests.test_bus import needs_broker
from tests.test_wallboard import free_port

pytestmark = [pytest.mark.mqtt, needs_broker]

SCALE = 10.0
START = datetime(2026, 6, 15, 9, 0, tzinfo=UTC).timestamp()  # noon in Moscow
DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"
OPERATOR = "2001"


def documented_examples() -> dict[str, dict[str, Any]]:
    """Topic pattern (``operators/{id}/screenpop``) → the JSON example under its heading."""
    text = DOCS.read_text()
    found = re.findall(r"^### `obzvon/([^`]+)`.*?```json\n(.*?)```", text, re.S | re.M)
    return {topic: json.loads(body) for topic, body in found}


def pattern_of(topic: str) -> str:
    parts = topic.split("/")
    parts[1] = "{id}"
    return "/".join(parts)


async def test_a_routed_call_pops_up_with_qos_1_and_topics_match_the_docs(tmp_path: Path) -> None:
    prefix = f"obzvon-test-{os.getpid()}-{secrets.token_hex(3)}"
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'mqtt.db'}"),
        http=HttpSettings(listen=f"127.0.0.1:{free_port()}"),
        mqtt=MqttSettings(host="127.0.0.1", port=1883, topic_prefix=prefix),
        campaigns=(CampaignSettings(id="confirm", shop_name="Shop", pacing="progressive"),),
        operators=(OperatorSettings(id=OPERATOR),),
    )
    clock = ScaledClock(scale=SCALE, start=START)
    received: dict[str, aiomqtt.Message] = {}
    model = CallModel(patience_median_s=None, machine_rate=0.0, notsure_rate=0.0)
    async with (
        aiomqtt.Client("127.0.0.1", 1883) as listener,
        AsteriskSim(time_scale=SCALE, seed=5, model=model) as sim,
    ):
        await listener.subscribe(f"{prefix}/#", qos=1)
        sim.add_operator(OPERATOR, OperatorScript(ring_s=0.2, talk_s=30.0))
        sim.script_number("79001112233", NumberScript("answer", ring_s=1.0, talk_s=30.0))
        dial = DialSettings(dial_template="PJSIP/{digits}@trunk", recordings_dir=str(tmp_path))
        async with open_runtime(settings, clock=clock, ami_port=sim.port, dial=dial) as rt:

            async def scenario() -> None:
                await asyncio.sleep(0.3)  # the forwarder connects
                now = clock.now()
                await rt.daemon.submit(ev.OperatorLogin(operator_id=OPERATOR, now=now))
                await rt.daemon.submit(ev.OperatorReady(operator_id=OPERATOR, now=now))
                stamp = datetime.fromtimestamp(now, UTC)
                async with rt.db.session() as session:
                    order = await repo.add_order(
                        session,
                        crm="test",
                        external_id="mqtt-1",
                        phone_e164="+79001112233",
                        campaign_id="confirm",
                        timezone="Europe/Moscow",
                        created_at=stamp,
                        now=stamp,
                        customer_name="Ирина",
                        category="cosmetics",
                        amount=Decimal(1990),
                    )
                    lead = lead_of(order)
                await rt.daemon.submit(ev.OrderArrived(lead=lead, now=clock.now()))
                async with asyncio.timeout(15):
                    async for message in listener.messages:
                        topic = str(message.topic).removeprefix(prefix + "/")
                        received.setdefault(pattern_of(topic), message)
                        if {"operators/{id}/screenpop", "campaigns/{id}/stats"} <= set(received):
                            break
                rt.daemon.stop()

            stats = lambda: publish_campaign_stats(  # noqa: E731 - a job is a no-argument callable
                bus=rt.bus, engine=rt.engine, now=clock.now, sleep=clock.sleep, interval_s=2.0
            )
            await rt.daemon.run(extra=[*background_jobs(rt), stats, scenario])

    pop = received["operators/{id}/screenpop"]
    assert str(pop.topic) == f"{prefix}/operators/{OPERATOR}/screenpop"
    assert pop.qos == 1
    card = json.loads(pop.payload)
    assert card["v"] == 1 and card["customer_name"] == "Ирина"
    assert card["phone_masked"] == "+7900***2233"

    docs = documented_examples()
    for pattern in (
        "operators/{id}/screenpop",
        "operators/{id}/state",
        "calls/{id}",
        "campaigns/{id}/stats",
    ):
        payload = json.loads(received[pattern].payload)
        assert set(payload) == set(docs[pattern]), pattern
        assert docs[pattern]["v"] == 1
