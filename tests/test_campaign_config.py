"""A campaign's abandon target and pacing mode change while the engine runs."""

from __future__ import annotations

import pytest

from acd.board import OperatorBoard
from acd.routing import LongestIdle
from dialer.engine import events as ev
from dialer.engine.campaign import CampaignRules
from dialer.engine.commands import Publish
from dialer.engine.engine import DialerEngine
from dialer.engine.errors import EngineError

NOW = 1_780_000_000.0


def engine() -> DialerEngine:
    return DialerEngine(
        campaigns=[CampaignRules(id="confirm", pacing="predictive")],
        board=OperatorBoard(),
        router=LongestIdle(),
        id_factory=lambda: "x",
    )


def test_a_new_pacing_mode_and_target_take_effect_and_are_announced() -> None:
    e = engine()
    out = e.handle(
        ev.CampaignConfigured(
            campaign_id="confirm", abandon_target=0.01, pacing="adaptive", now=NOW
        )
    )
    assert e.statistics(NOW).campaigns["confirm"].pacer.name == "adaptive"
    [announce] = [c for c in out if isinstance(c, Publish)]
    assert announce.payload["abandon_target"] == 0.01


@pytest.mark.parametrize(
    "change", [{"pacing": "telepathic"}, {"abandon_target": 1.5}], ids=["pacing", "target"]
)
def test_a_bad_change_is_refused_and_leaves_the_campaign_as_it_was(
    change: dict[str, object],
) -> None:
    e = engine()
    with pytest.raises(EngineError):
        e.handle(ev.CampaignConfigured(campaign_id="confirm", now=NOW, **change))  # type: ignore[arg-type]
    assert e.statistics(NOW).campaigns["confirm"].pacer.name == "predictive"
