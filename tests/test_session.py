"""The call session's transition table: every (state, trigger) pair, stamps, and the docs."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from dialer.engine.errors import IllegalTransition
from dialer.engine.scheduling import Lead
from dialer.engine.session import (
    TERMINAL_STATES,
    TRANSITIONS,
    CallSession,
    CallState,
    Trigger,
    transition_table_markdown,
)

# The specification, written out independently of the module: state -> trigger -> new state.
_DIAL_ENDS = {
    "busy": "busy",
    "no-answer": "no-answer",
    "congestion": "congestion",
    "fail": "failed",
    "machine": "machine",
}
SPEC: dict[str, dict[str, str]] = {
    "queued": {"originate": "dialing", "fail": "failed", "inbound": "answered-waiting"},
    "dialing": {
        "ring": "ringing",
        "line-up": "screening",
        "human": "answered-waiting",
        **_DIAL_ENDS,
    },
    "ringing": {"line-up": "screening", "human": "answered-waiting", **_DIAL_ENDS},
    "screening": {
        "human": "answered-waiting",
        "machine": "machine",
        "fail": "failed",
        "customer-hung-up": "hung-up-waiting",
    },
    "answered-waiting": {
        "offer": "connecting",
        "abandon": "abandoned",
        "customer-hung-up": "hung-up-waiting",
        "callback": "callback-requested",
    },
    "connecting": {
        "operator-answered": "connected",
        "operator-no-answer": "answered-waiting",
        "customer-hung-up": "hung-up-waiting",
    },
    "connected": {
        "customer-hung-up": "wrap-up",
        "operator-hung-up": "wrap-up",
        "transfer": "answered-waiting",
        "consult": "consulting",
    },
    "consulting": {
        "consult-done": "connected",
        "customer-hung-up": "wrap-up",
        "transfer": "answered-waiting",
    },
    "wrap-up": {"disposition": "done", "wrapup-expired": "disposition-overdue"},
    "disposition-overdue": {"disposition": "done"},
}
TERMINAL = {
    "done",
    "busy",
    "no-answer",
    "congestion",
    "failed",
    "machine",
    "abandoned",
    "hung-up-waiting",
    "callback-requested",
}


def _path_to(target: str) -> list[str]:
    """The shortest list of triggers from queued to `target`, by the specification."""
    queue: deque[str] = deque(["queued"])
    paths: dict[str, list[str]] = {"queued": []}
    while queue:
        state = queue.popleft()
        for trigger, nxt in SPEC.get(state, {}).items():
            if nxt not in paths:
                paths[nxt] = [*paths[state], trigger]
                queue.append(nxt)
    return paths[target]


def _lead() -> Lead:
    return Lead(
        order_id="o-1", phone="79001234567", campaign_id="c", timezone="UTC", created_at=0.0
    )


def _session_in(state: str) -> CallSession:
    session = CallSession(call_id="call-1", lead=_lead(), now=0.0)
    for i, trigger in enumerate(_path_to(state), start=1):
        session.apply(Trigger(trigger), float(i), operator_id="op-1")
    assert session.state == state
    return session


def test_transition_table_is_the_specified_one() -> None:
    actual = {s.value: {t.value: n.value for t, n in row.items()} for s, row in TRANSITIONS.items()}
    assert actual == SPEC
    assert {s.value for s in TERMINAL_STATES} == TERMINAL


@pytest.mark.parametrize("state", [s.value for s in CallState])
@pytest.mark.parametrize("trigger", [t.value for t in Trigger])
def test_every_state_and_trigger_pair_follows_the_table_or_raises(state: str, trigger: str) -> None:
    session = _session_in(state)
    history = list(session.history)
    stamps = (session.originated_at, session.answered_at, session.connected_at, session.ended_at)
    expected = SPEC.get(state, {}).get(trigger)
    assert session.can(Trigger(trigger)) is (expected is not None)
    if expected is None:
        with pytest.raises(IllegalTransition) as raised:
            session.apply(Trigger(trigger), 100.0, operator_id="op-2")
        assert raised.value.state == state
        assert raised.value.trigger == trigger
        assert session.state == state
        assert session.history == history
        assert stamps == (
            session.originated_at,
            session.answered_at,
            session.connected_at,
            session.ended_at,
        )
    else:
        assert session.apply(Trigger(trigger), 100.0, operator_id="op-2") == expected
        assert session.state == expected
        assert session.history[-1].state == expected


def test_stage_timestamps_are_set_when_the_stage_is_first_reached() -> None:
    session = CallSession(call_id="call-1", lead=_lead(), now=1.0)
    steps = [
        (Trigger.ORIGINATE, 2.0, None),
        (Trigger.RING, 3.0, None),
        (Trigger.LINE_UP, 9.0, None),
        (Trigger.HUMAN, 10.0, None),
        (Trigger.OFFER, 10.1, "op-a"),
        (Trigger.OPERATOR_NO_ANSWER, 10.5, None),
        (Trigger.OFFER, 10.6, "op-b"),
        (Trigger.OPERATOR_ANSWERED, 11.0, None),
        (Trigger.CUSTOMER_HUNG_UP, 70.0, None),
        (Trigger.DISPOSITION, 80.0, None),
    ]
    for trigger, at, operator_id in steps:
        session.apply(trigger, at, operator_id=operator_id)
    assert session.queued_at == 1.0
    assert session.originated_at == 2.0
    assert session.line_up_at == 9.0
    assert session.answered_at == 10.0
    assert session.connected_at == 11.0
    assert session.ended_at == 70.0
    assert session.wrapup_ended_at == 80.0
    assert session.operator_id == "op-b"
    assert session.operators_tried == ["op-a", "op-b"]
    assert session.state is CallState.DONE
    assert session.finished and not session.live


def test_a_failed_dial_ends_the_attempt_when_it_fails() -> None:
    session = CallSession(call_id="call-1", lead=_lead(), now=1.0)
    session.apply(Trigger.ORIGINATE, 1.0)
    session.apply(Trigger.BUSY, 4.0)
    assert session.ended_at == 4.0
    assert session.answered_at is None
    assert session.finished


@pytest.mark.parametrize(
    ("state", "live"),
    [
        ("queued", False),
        ("dialing", True),
        ("answered-waiting", True),
        ("connected", True),
        ("consulting", True),
        ("wrap-up", False),
        ("done", False),
        ("abandoned", False),
    ],
)
def test_a_call_is_live_while_it_holds_a_channel(state: str, live: bool) -> None:
    assert _session_in(state).live is live


def test_docs_embed_the_generated_state_table() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "engine.md").read_text(encoding="utf-8")
    start = "<!-- session-table:start -->\n"
    end = "<!-- session-table:end -->"
    assert start in doc and end in doc
    embedded = doc[doc.index(start) + len(start) : doc.index(end)]
    assert embedded == transition_table_markdown()
