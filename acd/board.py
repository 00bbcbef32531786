"""The operator board: every operator's state, driven by timestamped calls, with no I/O.

The board is the ACD's memory of who can take a call. A driver (the daemon, or the simulator)
calls one method per thing that happened, with the time it happened; the board checks the move
against `acd.states.TRANSITIONS`, and either applies it completely or raises and changes nothing.
It never reads a clock: wrap-ups end only when the driver calls `expire_wrapups(now)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from acd.errors import DuplicateOperator, InvalidValue, OperatorUnavailable, UnknownOperator
from acd.occupancy import Timeline
from acd.profile import OperatorProfile
from acd.states import Action, OperatorState, next_state

__all__ = [
    "PAUSE_LOGGED_IN",
    "PAUSE_NO_ANSWER",
    "BoardStatistics",
    "OperatorBoard",
    "OperatorProfile",
    "OperatorState",
    "OperatorView",
]

PAUSE_LOGGED_IN: Final = "logged in"
"""The pause reason right after `login`: logged in, not yet ready."""
PAUSE_NO_ANSWER: Final = "no answer"
"""The pause reason after too many calls in a row rang unanswered at the operator's desk."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorView:
    """A snapshot of one operator; later changes to the board do not alter it.

    `call_id` is the call being connected, talked or wrapped up (set from RESERVED to the end of
    WRAPUP). `idle_since` is when the operator last became READY, and `None` whenever they are
    not READY. `wrapup_until` is when the current wrap-up ends (`None` outside WRAPUP).
    """

    profile: OperatorProfile
    state: OperatorState
    since: float
    pause_reason: str | None
    call_id: str | None
    calls_handled: int
    idle_since: float | None
    registered: bool
    consecutive_misses: int
    wrapup_until: float | None = None

    @property
    def id(self) -> str:
        return self.profile.id


@dataclass(frozen=True, slots=True, kw_only=True)
class BoardStatistics:
    """A snapshot of the board for metrics and wallboards.

    `by_state` has every state as a key. `ready` counts operators who could take a call now
    (READY and registered); `longest_idle_s` is the longest of their idle times (0.0 if none).
    `occupancy` maps each operator to the share of their logged-in time within the window that
    they spent on calls (RESERVED, RINGING, TALKING, WRAPUP), 0.0 for one not logged in during it.
    `calls_handled` maps each operator to the calls they finished talking since being added.
    `unregistered` counts logged-in operators whose endpoint is not registered.
    """

    by_state: Mapping[OperatorState, int]
    ready: int
    longest_idle_s: float
    occupancy: Mapping[str, float]
    calls_handled: Mapping[str, int]
    unregistered: int
    window_s: float

    @property
    def total_calls_handled(self) -> int:
        return sum(self.calls_handled.values())


class _Operator:
    """The board's mutable record of one operator; never handed out (see `OperatorView`).

    Its view is built once and kept until a field changes: the engine reads the whole board on
    every dialling decision, far more often than an operator changes.
    """

    __slots__ = (
        "_view",
        "call_id",
        "calls_handled",
        "consecutive_misses",
        "idle_before_reserve",
        "idle_since",
        "pause_reason",
        "profile",
        "registered",
        "since",
        "state",
        "timeline",
        "wrapup_until",
    )

    def __init__(self, profile: OperatorProfile, now: float, window_s: float) -> None:
        self.profile = profile
        self.state = OperatorState.OFFLINE
        self.since = now
        self.pause_reason: str | None = None
        self.call_id: str | None = None
        self.calls_handled = 0
        self.idle_since: float | None = None
        self.idle_before_reserve: float | None = None
        self.registered = True
        self.consecutive_misses = 0
        self.wrapup_until: float | None = None
        self.timeline = Timeline(state=self.state, since=now, window_s=window_s)
        self._view: OperatorView | None = None

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        object.__setattr__(self, "_view", None)

    def view(self) -> OperatorView:
        view = self._view
        if view is None:
            view = self._build_view()
            object.__setattr__(self, "_view", view)
        return view

    def _build_view(self) -> OperatorView:
        return OperatorView(
            profile=self.profile,
            state=self.state,
            since=self.since,
            pause_reason=self.pause_reason,
            call_id=self.call_id,
            calls_handled=self.calls_handled,
            idle_since=self.idle_since,
            registered=self.registered,
            consecutive_misses=self.consecutive_misses,
            wrapup_until=self.wrapup_until,
        )


class OperatorBoard:
    """Every operator's state. Each method either completes or raises and changes nothing.

    Methods taking an operator id raise `UnknownOperator` for an id not on the board, and
    `IllegalTransition` for an action that `acd.states.TRANSITIONS` does not allow in the
    operator's current state.

    `no_answer_pause_threshold` is how many calls in a row an operator may leave unanswered
    before they are paused with reason `PAUSE_NO_ANSWER`; `occupancy_window_s` is the window of
    `statistics().occupancy`.
    """

    def __init__(
        self, *, no_answer_pause_threshold: int = 2, occupancy_window_s: float = 3600.0
    ) -> None:
        if no_answer_pause_threshold < 1:
            raise InvalidValue(
                f"no_answer_pause_threshold must be >= 1, got {no_answer_pause_threshold}"
            )
        if not occupancy_window_s > 0:
            raise InvalidValue(f"occupancy_window_s must be > 0, got {occupancy_window_s}")
        self.no_answer_pause_threshold = no_answer_pause_threshold
        self.occupancy_window_s = occupancy_window_s
        self._ops: dict[str, _Operator] = {}
        self._by_endpoint: dict[str, str] = {}
        # who is in each state, kept as they move: a floor of 500 is read on every decision
        self._in_state: dict[OperatorState, dict[str, _Operator]] = {s: {} for s in OperatorState}
        self._rank: dict[str, int] = {}  # the order operators were added in

    # --- membership -------------------------------------------------------------------------

    def add(self, profile: OperatorProfile, now: float) -> None:
        """Put an operator on the board, OFFLINE and registered.

        Raises `DuplicateOperator` if the id, or the endpoint, is already on the board: two
        operators on one endpoint would both be rung by one call.
        """
        if profile.id in self._ops:
            raise DuplicateOperator(f"operator {profile.id!r} is already on the board")
        if profile.endpoint in self._by_endpoint:
            raise DuplicateOperator(
                f"endpoint {profile.endpoint!r} already belongs to operator "
                f"{self._by_endpoint[profile.endpoint]!r}"
            )
        op = _Operator(profile, now, self.occupancy_window_s)
        self._ops[profile.id] = op
        self._by_endpoint[profile.endpoint] = profile.id
        self._rank[profile.id] = len(self._rank)
        self._in_state[op.state][profile.id] = op

    def set_registered(self, endpoint: str, registered: bool, now: float) -> None:
        """Record whether `endpoint` is registered; the operator's state is unchanged.

        An operator whose endpoint is unregistered is never in `free()` and cannot be reserved.
        The driver maps Asterisk's device states (UNAVAILABLE and INVALID mean unregistered). An
        endpoint that belongs to no operator (a trunk, say) is ignored.
        """
        op_id = self._by_endpoint.get(endpoint)
        if op_id is not None:
            self._ops[op_id].registered = registered

    # --- operator's own actions -------------------------------------------------------------

    def login(self, op_id: str, now: float) -> None:
        """OFFLINE -> PAUSED with reason `PAUSE_LOGGED_IN`; the miss count starts at zero."""
        op = self._op(op_id)
        self._move(op, Action.LOGIN, now, pause_reason=PAUSE_LOGGED_IN)
        op.consecutive_misses = 0

    def ready(self, op_id: str, now: float) -> None:
        """PAUSED -> READY. The miss count restarts: the operator says they are at the desk."""
        op = self._op(op_id)
        self._move(op, Action.READY, now)
        op.consecutive_misses = 0

    def pause(self, op_id: str, reason: str, now: float) -> None:
        """READY or WRAPUP -> PAUSED with `reason` (non-empty). Not while a call is theirs."""
        if not reason:
            raise InvalidValue("a pause needs a non-empty reason")
        self._move(self._op(op_id), Action.PAUSE, now, pause_reason=reason)

    def logout(self, op_id: str, now: float) -> None:
        """READY, PAUSED or WRAPUP -> OFFLINE."""
        self._move(self._op(op_id), Action.LOGOUT, now)

    def wrapup_done(self, op_id: str, now: float) -> None:
        """WRAPUP -> READY: the operator gave the call's disposition."""
        self._move(self._op(op_id), Action.WRAPUP_DONE, now)

    # --- the call's progress ----------------------------------------------------------------

    def reserve(self, op_id: str, call_id: str, now: float) -> None:
        """READY -> RESERVED for `call_id`: the call is being connected to this operator.

        Raises `OperatorUnavailable` if the operator's endpoint is not registered.
        """
        if not call_id:
            raise InvalidValue("a reservation needs a non-empty call id")
        op = self._op(op_id)
        new = next_state(op_id, op.state, Action.RESERVE)  # illegal state is reported first
        if not op.registered:
            raise OperatorUnavailable(
                f"operator {op_id!r}: endpoint {op.profile.endpoint!r} is not registered"
            )
        idle_since = op.idle_since
        self._enter(op, new, now)
        op.call_id = call_id
        op.idle_before_reserve = idle_since

    def ringing(self, op_id: str, now: float) -> None:
        """RESERVED -> RINGING: the operator's phone is ringing."""
        self._move(self._op(op_id), Action.RINGING, now)

    def answered(self, op_id: str, now: float) -> None:
        """RESERVED or RINGING -> TALKING; the miss count returns to zero."""
        op = self._op(op_id)
        self._move(op, Action.ANSWERED, now)
        op.consecutive_misses = 0

    def not_answered(self, op_id: str, now: float) -> OperatorState:
        """RESERVED or RINGING -> READY, counting a miss; returns the new state.

        When the misses in a row reach `no_answer_pause_threshold` the operator goes to PAUSED
        with reason `PAUSE_NO_ANSWER` instead, and keeps the count until `ready` or `login`.
        """
        op = self._op(op_id)
        misses = op.consecutive_misses + 1
        if misses >= self.no_answer_pause_threshold:
            self._move(op, Action.NO_ANSWER_PAUSE, now, pause_reason=PAUSE_NO_ANSWER)
        else:
            self._move(op, Action.NOT_ANSWERED, now)
        op.consecutive_misses = misses
        return op.state

    def release(self, op_id: str, now: float) -> None:
        """RESERVED or RINGING -> READY without counting a miss: the customer went away.

        The operator keeps the `idle_since` they had before the reservation, so a call that
        vanished does not send them to the back of a longest-idle line.
        """
        op = self._op(op_id)
        restored = op.idle_before_reserve
        self._move(op, Action.RELEASE, now)
        if restored is not None:
            op.idle_since = restored

    def hung_up(self, op_id: str, now: float) -> None:
        """TALKING -> WRAPUP until `now + profile.wrapup_s`; the call counts as handled."""
        op = self._op(op_id)
        self._move(op, Action.HUNG_UP, now)
        op.calls_handled += 1
        op.wrapup_until = now + op.profile.wrapup_s

    def expire_wrapups(self, now: float) -> list[str]:
        """Move every WRAPUP operator whose wrap-up ended at or before `now` to READY.

        Returns their ids, in board order; their calls have no disposition yet, and it is the
        caller's job to flag that.
        """
        expired = [
            op
            for op in self._ops.values()
            if op.state is OperatorState.WRAPUP
            and op.wrapup_until is not None
            and op.wrapup_until <= now
        ]
        for op in expired:
            self._move(op, Action.WRAPUP_EXPIRED, now)
        return [op.profile.id for op in expired]

    # --- reading ----------------------------------------------------------------------------

    def get(self, op_id: str) -> OperatorView:
        """A snapshot of one operator."""
        return self._op(op_id).view()

    def all(self) -> list[OperatorView]:
        """Snapshots of every operator, in the order they were added."""
        return [op.view() for op in self._ops.values()]

    def free(self, campaign_id: str, category: str | None = None) -> list[OperatorView]:
        """Operators who may be offered a call of `campaign_id` and `category` now.

        That is: READY, registered, working in the campaign and qualified for the category
        (`OperatorProfile.serves`), in the order they were added.
        """
        ready = self._in_state[OperatorState.READY]
        ids = sorted(ready, key=self._rank.__getitem__) if len(ready) > 1 else list(ready)
        return [
            op.view()
            for op in map(ready.__getitem__, ids)
            if op.registered and op.profile.serves(campaign_id, category)
        ]

    def in_states(self, states: Iterable[OperatorState]) -> list[OperatorView]:
        """Snapshots of the operators in `states`, in the order they were added."""
        found = [op for state in states for op in self._in_state[state].values()]
        found.sort(key=lambda op: self._rank[op.profile.id])
        return [op.view() for op in found]

    def statistics(self, now: float) -> BoardStatistics:
        """A snapshot for metrics; see `BoardStatistics`."""
        by_state = dict.fromkeys(OperatorState, 0)
        idle: list[float] = []
        unregistered = 0
        for op in self._ops.values():
            by_state[op.state] += 1
            if op.state is OperatorState.READY and op.registered and op.idle_since is not None:
                idle.append(max(0.0, now - op.idle_since))
            if op.state is not OperatorState.OFFLINE and not op.registered:
                unregistered += 1
        return BoardStatistics(
            by_state=MappingProxyType(by_state),
            ready=len(idle),
            longest_idle_s=max(idle, default=0.0),
            occupancy=MappingProxyType(
                {i: op.timeline.time_in_window(now).occupancy for i, op in self._ops.items()}
            ),
            calls_handled=MappingProxyType({i: op.calls_handled for i, op in self._ops.items()}),
            unregistered=unregistered,
            window_s=self.occupancy_window_s,
        )

    # --- internals --------------------------------------------------------------------------

    def _op(self, op_id: str) -> _Operator:
        try:
            return self._ops[op_id]
        except KeyError:
            raise UnknownOperator(op_id) from None

    def _move(
        self, op: _Operator, action: Action, now: float, *, pause_reason: str | None = None
    ) -> None:
        # next_state raises before anything is touched: an illegal action changes nothing.
        self._enter(op, next_state(op.profile.id, op.state, action), now, pause_reason)

    def _enter(
        self, op: _Operator, state: OperatorState, now: float, pause_reason: str | None = None
    ) -> None:
        op.timeline.enter(state, now)
        del self._in_state[op.state][op.profile.id]
        self._in_state[state][op.profile.id] = op
        op.state = state
        op.since = now
        op.pause_reason = pause_reason if state is OperatorState.PAUSED else None
        op.idle_since = now if state is OperatorState.READY else None
        if state in (OperatorState.READY, OperatorState.PAUSED, OperatorState.OFFLINE):
            op.call_id = None
            op.idle_before_reserve = None
        if state is not OperatorState.WRAPUP:
            op.wrapup_until = None
