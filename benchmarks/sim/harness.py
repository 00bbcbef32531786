"""The discrete-event simulation: the real engine, fed by simulated customers and operators.

`Simulation` builds a `DialerEngine` with an `OperatorBoard`, the scenario's campaign rules, a
pacer from `make_pacer` (or the pacing oracle) and a routing policy from `acd.routing`, then
runs a virtual clock over an event heap. It feeds the engine exactly the events the daemon
would (order arrivals, ticks, OriginateResult, AmdResult, CustomerAnswered, OperatorAnswered,
ConnectFailed, hang-ups, operators' logins, pauses and dispositions), each stamped with its
virtual time, and turns every command the engine returns into what the simulated world does
next:

- `Originate`: the customer's line is busy, fails (an invalid number), rings out at the
  timeout, or is picked up after the ring time (a person, or an answering machine);
- a person who hears silence for longer than their patience hangs up;
- `ConnectToOperator`: the operator picks up after their own delay (`OperatorAnswered`) or
  lets it ring out (`ConnectFailed`); the talk ends with either side hanging up, and the
  wrap-up with a `Disposition` whose outcome is drawn from the operator's true rate;
- `PlayAbandon` and `HangupCall`: the customer's channel hangs up.

The engine is ticked every `tick_s` of virtual time while some lead may be dialled and some
operator is logged in, and at `engine.next_deadline()`; otherwise a tick could place no call
(every pacer scales with the operators logged in), so the clock jumps to the next event.

What a caller may rely on: the same world (scenario and seed) and policies give the same
`RunResult` figures, bar `wall_s`.
"""

from __future__ import annotations

import heapq
import itertools
import time as wallclock
from collections.abc import Callable
from typing import Any, Final

from acd.board import PAUSE_NO_ANSWER, OperatorBoard
from benchmarks.sim.calls import Sight
from benchmarks.sim.leads import LeadBook
from benchmarks.sim.legs import Legs
from benchmarks.sim.metrics import Recorder, RunResult, Sample
from benchmarks.sim.oracle import OraclePacer
from benchmarks.sim.policies import CAMPAIGN_ID, campaign_rules, make_router, profiles
from benchmarks.sim.world import World
from dialer.engine import pacing as pacing_module
from dialer.engine.commands import (
    Command,
    ConnectToOperator,
    HangupCall,
    Originate,
    PlayAbandon,
    Publish,
    StoreOutcome,
)
from dialer.engine.engine import DialerEngine
from dialer.engine.events import (
    Event,
    OperatorLogin,
    OperatorLogout,
    OperatorReady,
    OrderArrived,
    Tick,
)
from dialer.engine.pacing import Pacer
from dialer.engine.scheduling import Lead, in_window

__all__ = ["Simulation"]

Handler = Callable[[float, Any], None]

# An operator paused for missed calls notices and makes themselves ready again.
NO_ANSWER_PAUSE_S: Final = 30.0


class Simulation:
    """One run of the engine over a `World`; see the module docstring."""

    def __init__(
        self,
        world: World,
        *,
        pacing: str = "predictive",
        routing: str = "longest-idle",
        tick_s: float = 1.0,
        sample_s: float = 300.0,
        pacer_options: dict[str, Any] | None = None,
        history_days: float = 0.0,
        progress: Callable[[float, float], None] | None = None,
    ) -> None:
        self.world = world
        self.rules = campaign_rules(world.scenario)
        self.tick_s = tick_s
        self.sample_s = sample_s
        self.pacing, self.routing = pacing, routing
        self._progress = progress
        self.board = OperatorBoard()
        for profile in profiles(world):
            self.board.add(profile, world.start)
        self.router = make_router(routing, world, world.seed, history_days=history_days)
        self._q: list[tuple[float, int, Handler, Any]] = []
        self._seq = itertools.count()
        self.leads = LeadBook(self.rules)
        self._op_state: dict[str, str] = {op.id: "offline" for op in world.operators}
        self._leaving: set[str] = set()
        self._shift_end: dict[str, float] = {}
        self._ready_again: dict[str, float] = {}
        self._ready = 0
        self._logged_in = 0
        self.recorder = Recorder(start=world.start, end=world.end, orders=len(world.orders))
        self.legs = Legs(
            world=world,
            rules=self.rules,
            recorder=self.recorder,
            leads=self.leads,
            schedule=self._at,
            feed=self._feed,
            operator_states=self._op_state,
            leaving=self._leaving,
            leave=self._on_logout,
        )
        self.sight = Sight(
            world=world,
            rules=self.rules,
            leads=self.leads,
            calls=self.legs.calls,
            operator_states=self._op_state,
            operator_calls=self.legs.operator_calls,
            leaving=self._leaving,
            shift_end=self._shift_end,
            ready_again=self._ready_again,
            attempts=self.legs.attempts.__getitem__,
            orders=self.legs.orders,
        )
        self.oracle: OraclePacer | None = None
        self.pacer: Pacer
        if pacing == "oracle":
            self.pacer = self.oracle = OraclePacer(self.sight)
        else:
            self.pacer = pacing_module.make_pacer(pacing, **(pacer_options or {}))
        ids = itertools.count(1)
        self.engine = DialerEngine(
            campaigns=[self.rules],
            board=self.board,
            router=self.router.policy,
            pacers={CAMPAIGN_ID: self.pacer},
            id_factory=lambda: f"c{next(ids)}",
        )
        self._tick_at: float | None = None
        self._mismatches = 0
        self._commands: dict[type[Command], Callable[[Any, float], None]] = {
            Originate: self._originate,
            ConnectToOperator: self.legs.connect,
            PlayAbandon: self.legs.play_abandon,
            HangupCall: self.legs.hangup_call,
            StoreOutcome: self._store_outcome,
            Publish: self._publish,
        }
        for order in world.orders:
            self._at(order.created_at, self._on_order, order.index)
        for op in world.operators:
            for login, logout in op.shifts:
                self._at(login, self._on_shift_start, (op.id, logout))
                if logout < world.end:
                    self._at(logout, self._on_shift_end, op.id)
        self._at(world.start, self._on_sample, None)

    # -- the loop ----------------------------------------------------------------------------

    def _at(self, at: float, handler: Handler, payload: Any) -> None:
        heapq.heappush(self._q, (at, next(self._seq), handler, payload))

    def run(self) -> RunResult:
        """Run to the end of the scenario's last day; returns the figures."""
        started = wallclock.perf_counter()
        end, q = self.world.end, self._q
        steps = 0
        while q:
            at, _, handler, payload = heapq.heappop(q)
            if at > end:
                break
            handler(at, payload)
            self._plan_tick(at)
            steps += 1
            if self._progress is not None and steps % 2000 == 0:
                self._progress(at - self.world.start, end - self.world.start)
        stats = self.engine.statistics(end).campaigns[CAMPAIGN_ID]
        counts = {
            "live_answers": stats.live_answers,
            "abandons": stats.abandons,
            "connected": stats.connected,
        }
        finals = sum(self.recorder.outcomes.values())
        return self.recorder.result(
            scenario=self.world.scenario.name,
            seed=self.world.seed,
            pacing=self.pacing,
            routing=self.routing,
            engine_counts=counts,
            open_at_end=len(self.world.orders) - finals,
            wall_s=wallclock.perf_counter() - started,
            oracle_mismatches=self._mismatches,
        )

    def _feed(self, event: Event) -> None:
        now = event.now
        commands = self._commands
        for command in self.engine.handle(event):
            handler = commands.get(type(command))
            if handler is not None:
                handler(command, now)

    def _plan_tick(self, now: float) -> None:
        planned = self._tick_at
        want: float | None = None
        if planned is None or planned > now + self.tick_s:
            if self.leads.any_due(now):
                # With nobody logged in no pacer places a call: the next login plans a tick.
                want = now + self.tick_s if self._logged_in > 0 else None
            else:
                want = self.leads.next_due_at()
        deadline = self.engine.next_deadline()
        if deadline is not None and (want is None or deadline < want):
            want = deadline
        if want is not None and (planned is None or want < planned):
            want = max(want, now)
            self._tick_at = want
            self._at(want, self._on_tick, None)

    # -- world events ------------------------------------------------------------------------

    def _on_order(self, at: float, index: int) -> None:
        order = self.world.orders[index]
        lead = Lead(
            order_id=order.order_id,
            phone=order.phone,
            campaign_id=CAMPAIGN_ID,
            timezone=order.timezone,
            created_at=at,
            category=order.category,
            amount=order.amount,
        )
        window = in_window(at, order.timezone, self.rules.calling_window)
        # An operator is free for this order when the ready ones outnumber the calls already
        # placed for them and the leads due before it: progressive dialling would call it now.
        in_flight = sum(
            1 for c in self.legs.calls.values() if not c.ended and c.operator_id is None
        )
        spare = self._ready - in_flight - self.leads.due_count(at)
        self.recorder.stored(order, at, in_window=window, operator_free=spare > 0)
        self.leads.arrived(lead, at)
        self._feed(OrderArrived(now=at, lead=lead))

    def _on_tick(self, at: float, _: None) -> None:
        if at != self._tick_at:
            return  # superseded by an earlier tick
        self._tick_at = None
        self._feed(Tick(now=at))

    def _on_sample(self, at: float, _: None) -> None:
        stats = self.engine.statistics(at).campaigns[CAMPAIGN_ID]
        by_state = stats.calls_by_state
        self.recorder.sample(
            Sample(
                at=at,
                dial_level=stats.dial_level,
                mode=stats.pacer.mode,
                calls_dialing=by_state["dialing"] + by_state["ringing"] + by_state["screening"],
                calls_waiting=by_state["answered-waiting"],
                ready=self._ready,
                logged_in=sum(1 for s in self._op_state.values() if s != "offline"),
                leads_due=stats.leads_due,
                abandon_rate_1h=stats.abandon_rate_1h,
                abandon_rate_24h=stats.abandon_rate_24h,
            )
        )
        self._at(at + self.sample_s, self._on_sample, None)

    def _on_shift_start(self, at: float, payload: tuple[str, float]) -> None:
        op, logout = payload
        self._leaving.discard(op)
        self._shift_end[op] = logout
        if self._op_state[op] == "offline":
            self._feed(OperatorLogin(now=at, operator_id=op))
            self._feed(OperatorReady(now=at, operator_id=op))

    def _on_shift_end(self, at: float, op: str) -> None:
        self._leaving.add(op)
        self._on_logout(at, op)

    def _on_logout(self, at: float, op: str) -> None:
        if op in self._leaving and self._op_state[op] in ("ready", "paused"):
            self._feed(OperatorLogout(now=at, operator_id=op))

    def _on_ready_again(self, at: float, op: str) -> None:
        self._ready_again.pop(op, None)
        if op not in self._leaving and self._op_state[op] == "paused":
            self._feed(OperatorReady(now=at, operator_id=op))

    # -- the engine's commands ---------------------------------------------------------------

    def _originate(self, cmd: Originate, now: float) -> None:
        if self.oracle is not None and self.oracle.expected:
            # A lead other than the one the oracle planned means its picture of the hopper is
            # wrong, and its promise never to abandon with it.
            self._mismatches += self.oracle.expected.popleft() != cmd.order_id
        self.legs.originate(cmd, now)

    def _store_outcome(self, cmd: StoreOutcome, now: float) -> None:
        self.legs.calls.pop(cmd.call_id, None)
        if self.router.learn is not None:
            # As the daemon's store does once it has written the outcome: a learning router
            # hears of every disposition the engine stored.
            order = self.legs.orders[cmd.order_id]
            self.router.learn(cmd, order.category, order.amount, now)
        if cmd.final:
            self.leads.take(cmd.order_id)
            upsell = cmd.details.get("upsell_amount", 0.0)
            self.recorder.final(
                self.legs.orders[cmd.order_id],
                cmd.outcome,
                float(upsell) if isinstance(upsell, int | float) else 0.0,
            )
        elif cmd.lead is not None and cmd.next_attempt_at is not None:
            self.leads.put(cmd.lead, cmd.next_attempt_at)

    def _publish(self, cmd: Publish, now: float) -> None:
        if cmd.kind != "operator":
            return
        op = str(cmd.payload["operator_id"])
        state = str(cmd.payload["state"])
        before = self._op_state[op]
        if before == state:
            return
        self._ready += (state == "ready") - (before == "ready")
        self._logged_in += (state != "offline") - (before != "offline")
        self._op_state[op] = state
        self.recorder.operator_state(op, state, now)
        if state in ("ready", "paused", "offline"):
            self.legs.operator_calls.pop(op, None)
        if state == "paused" and cmd.payload.get("pause_reason") == PAUSE_NO_ANSWER:
            self._ready_again[op] = now + NO_ANSWER_PAUSE_S
            self._at(now + NO_ANSWER_PAUSE_S, self._on_ready_again, op)
        if op in self._leaving and state in ("ready", "paused"):
            self._at(now, self._on_logout, op)
