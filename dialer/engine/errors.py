"""The one exception tree of `dialer/engine/`.

Errors say whose fault it was:

- `InvalidEvent` / `InvalidCommand`: obzvon itself built a malformed event or command (a bug in
  the driver that translated an AMI event or an HTTP request); raised when the object is built.
- `IllegalTransition`: a call session was asked to make a move its transition table forbids;
  the session is left exactly as it was.
- `UnknownCampaign`, `UnknownCall`: an event names something the engine does not hold.
- `OperatorActionRejected`: an operator (or the HTTP API on their behalf) asked for something
  the engine must refuse, e.g. a disposition for a call they do not hold. The HTTP layer maps
  it to 409; the engine's state is unchanged.

Events that come from the PBX and no longer fit a call (AMI repeats and reorders events, and a
hang-up may arrive after the engine has finished a call) are not errors: the engine ignores them
and counts them in `EngineStatistics.stale_events`.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base of every error raised by `dialer/engine/`."""


class InvalidEvent(EngineError, ValueError):
    """An event was built with a field that cannot be right (empty id, negative time...)."""


class InvalidCommand(EngineError, ValueError):
    """A command was built with a field that cannot be right."""


class InvalidRules(EngineError, ValueError):
    """Campaign rules or a lead are inconsistent (e.g. a connect budget over 2 s)."""


class IllegalTransition(EngineError):
    """A call session cannot make this move from its current state; nothing was changed."""

    def __init__(self, *, call_id: str, state: str, trigger: str) -> None:
        super().__init__(f"call {call_id}: {trigger!r} is not allowed in state {state!r}")
        self.call_id = call_id
        self.state = state
        self.trigger = trigger


class UnknownCampaign(EngineError, KeyError):
    """The event names a campaign the engine was not built with."""

    def __str__(self) -> str:
        return f"unknown campaign {self.args[0]!r}" if self.args else "unknown campaign"


class UnknownCall(EngineError, KeyError):
    """An operator action names a call the engine does not hold (and never finished)."""

    def __str__(self) -> str:
        return f"unknown call {self.args[0]!r}" if self.args else "unknown call"


class OperatorActionRejected(EngineError):
    """An operator's action does not fit the state of their call or of the board."""
