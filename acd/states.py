"""Operator states and the table of legal transitions.

Everything that decides whether an operator may move from one state to another lives here, as
data: `TRANSITIONS[state][action] -> new_state`. `OperatorBoard` consults this table before it
changes anything, so an action missing from the table raises `IllegalTransition` and leaves the
operator as they were. The state table in `docs/acd.md` is generated from it by
`transition_table_markdown()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from acd.errors import IllegalTransition


class OperatorState(StrEnum):
    OFFLINE = "offline"
    READY = "ready"
    RESERVED = "reserved"
    RINGING = "ringing"
    TALKING = "talking"
    WRAPUP = "wrap-up"
    PAUSED = "paused"


class Action(StrEnum):
    """What happens to an operator; each `OperatorBoard` method applies one of these."""

    LOGIN = "login"
    READY = "ready"
    PAUSE = "pause"
    LOGOUT = "logout"
    RESERVE = "reserve"
    RINGING = "ringing"
    ANSWERED = "answered"
    NOT_ANSWERED = "not_answered"
    # A miss that reaches the board's threshold: the operator is paused rather than offered the
    # next call, which would only ring at an empty desk while a customer waits.
    NO_ANSWER_PAUSE = "no_answer_pause"
    RELEASE = "release"
    HUNG_UP = "hung_up"
    WRAPUP_DONE = "wrapup_done"
    WRAPUP_EXPIRED = "wrapup_expired"


_S = OperatorState
_A = Action

TRANSITIONS: Final[Mapping[OperatorState, Mapping[Action, OperatorState]]] = MappingProxyType(
    {
        _S.OFFLINE: MappingProxyType({_A.LOGIN: _S.PAUSED}),
        _S.PAUSED: MappingProxyType({_A.READY: _S.READY, _A.LOGOUT: _S.OFFLINE}),
        _S.READY: MappingProxyType(
            {_A.RESERVE: _S.RESERVED, _A.PAUSE: _S.PAUSED, _A.LOGOUT: _S.OFFLINE}
        ),
        _S.RESERVED: MappingProxyType(
            {
                _A.RINGING: _S.RINGING,
                _A.ANSWERED: _S.TALKING,
                _A.NOT_ANSWERED: _S.READY,
                _A.NO_ANSWER_PAUSE: _S.PAUSED,
                _A.RELEASE: _S.READY,
            }
        ),
        _S.RINGING: MappingProxyType(
            {
                _A.ANSWERED: _S.TALKING,
                _A.NOT_ANSWERED: _S.READY,
                _A.NO_ANSWER_PAUSE: _S.PAUSED,
                _A.RELEASE: _S.READY,
            }
        ),
        _S.TALKING: MappingProxyType({_A.HUNG_UP: _S.WRAPUP}),
        _S.WRAPUP: MappingProxyType(
            {
                _A.WRAPUP_DONE: _S.READY,
                _A.WRAPUP_EXPIRED: _S.READY,
                _A.PAUSE: _S.PAUSED,
                _A.LOGOUT: _S.OFFLINE,
            }
        ),
    }
)
"""`TRANSITIONS[state][action]` is the state after `action`; a missing key means illegal."""

BUSY_STATES: Final = frozenset({_S.RESERVED, _S.RINGING, _S.TALKING, _S.WRAPUP})
"""States in which an operator is occupied with a call (counted as busy time in occupancy)."""

LOGGED_IN_STATES: Final = frozenset(set(OperatorState) - {_S.OFFLINE})
"""Every state but OFFLINE: the time an operator is at work."""


def next_state(op_id: str, state: OperatorState, action: Action) -> OperatorState:
    """The state `action` leads to from `state`; raises `IllegalTransition` if there is none."""
    try:
        return TRANSITIONS[state][action]
    except KeyError:
        raise IllegalTransition(op_id=op_id, state=state, action=action) from None


def transition_table_markdown() -> str:
    """The transition table as a Markdown table: one row per state, one column per action.

    A cell holds the new state, or "—" where the action is illegal. `docs/acd.md` embeds this
    output verbatim.
    """
    header = ["state \\ action", *(f"`{a.value}`" for a in Action)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
    ]
    for state in OperatorState:
        row = TRANSITIONS.get(state, {})
        cells = [f"**{state.value}**", *(row[a].value if a in row else "—" for a in Action)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
