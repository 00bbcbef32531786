"""The one exception tree of `acd/`.

Every error `acd/` raises derives from `AcdError`, so a driver can catch the package's errors in
one place. They all mean the caller asked for something the board cannot do; none of them leaves
the board half-changed.
"""

from __future__ import annotations


class AcdError(Exception):
    """Base of every error raised by `acd/`."""


class InvalidValue(AcdError, ValueError):
    """A value given to `acd/` is out of range (an empty id, a skill level outside 1..10, ...)."""


class UnknownOperator(AcdError, LookupError):
    """No operator with this id is on the board."""

    def __init__(self, op_id: str) -> None:
        super().__init__(f"unknown operator {op_id!r}")
        self.op_id = op_id


class DuplicateOperator(AcdError):
    """An operator with this id, or with this endpoint, is already on the board."""


class IllegalTransition(AcdError):
    """The action is not allowed in the operator's current state; the state is unchanged."""

    def __init__(self, *, op_id: str, state: str, action: str) -> None:
        super().__init__(f"operator {op_id!r}: {action!r} is not allowed in state {state!r}")
        self.op_id = op_id
        self.state = state
        self.action = action


class OperatorUnavailable(AcdError):
    """The operator's endpoint is not registered, so no call may be put through to them."""
