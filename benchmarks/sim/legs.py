"""The simulated customers and operators on each call: what they do with the engine's commands.

`Legs` turns the engine's call commands (`Originate`, `ConnectToOperator`, `PlayAbandon`,
`HangupCall`) into future events on the simulator's clock, and those events, when their time
comes, into the engine events the daemon would feed (OriginateResult, AmdResult,
CustomerAnswered, OperatorAnswered, ConnectFailed, hang-ups, Disposition). What each side does
was drawn before the call was placed (`world.Fate`); only the answer depends on the time of
the call, and the outcome on the operator who took it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from benchmarks.sim.calls import SimCall, hold_s
from benchmarks.sim.leads import LeadBook
from benchmarks.sim.metrics import Recorder
from benchmarks.sim.world import Order, World
from dialer.engine.campaign import CampaignRules
from dialer.engine.commands import ConnectToOperator, HangupCall, Originate, PlayAbandon
from dialer.engine.events import (
    ORIGINATE_ANSWERED,
    ORIGINATE_BUSY,
    ORIGINATE_FAILURE,
    ORIGINATE_NO_ANSWER,
    AmdResult,
    AmdStatus,
    ConnectFailed,
    CustomerAnswered,
    CustomerHungUp,
    Disposition,
    DispositionOutcome,
    Event,
    OperatorAnswered,
    OperatorHungUp,
    OperatorPause,
    OriginateResult,
)

__all__ = ["END_OF_SHIFT", "Legs", "Schedule"]

NORMAL_CLEARING: Final = 16
CALLBACK_AFTER_MACHINE_S: Final = 3600.0
END_OF_SHIFT: Final = "end of shift"

Schedule = Callable[[float, Callable[[float, Any], None], Any], None]


class Legs:
    """The customer's and the operator's side of every call (see the module docstring).

    `calls` and `operator_calls` are shared with the caller, which reads them (the oracle's
    `Sight`) and forgets a call once its outcome is stored.
    """

    def __init__(
        self,
        *,
        world: World,
        rules: CampaignRules,
        recorder: Recorder,
        leads: LeadBook,
        schedule: Schedule,
        feed: Callable[[Event], None],
        operator_states: Mapping[str, str],
        leaving: set[str],
        leave: Callable[[float, str], None],
    ) -> None:
        self._world = world
        self._rules = rules
        self._recorder = recorder
        self._leads = leads
        self._schedule = schedule
        self._feed = feed
        self._op_states = operator_states
        self._leaving = leaving
        self._leave = leave
        self.calls: dict[str, SimCall] = {}
        self.operator_calls: dict[str, SimCall] = {}
        self.attempts = [0] * len(world.orders)
        self.orders: dict[str, Order] = {o.order_id: o for o in world.orders}

    # -- what happens on the line ------------------------------------------------------------

    def _on_result(self, at: float, payload: tuple[SimCall, int]) -> None:
        call, reason = payload
        call.ended = True
        self._feed(OriginateResult(now=at, call_id=call.call_id, reason=reason))

    def _on_answer(self, at: float, call: SimCall) -> None:
        call.line_up_at = at
        self._schedule(at + call.patience_s(), self._on_patience, call)
        self._feed(OriginateResult(now=at, call_id=call.call_id, reason=ORIGINATE_ANSWERED))
        if self._rules.amd:
            self._schedule(at + self._world.scenario.customers.amd_delay_s, self._on_amd, call)
        else:
            self._customer_answered(call, at)

    def _on_amd(self, at: float, call: SimCall) -> None:
        if call.ended:
            return
        if call.machine:
            self._feed(AmdResult(now=at, call_id=call.call_id, status=AmdStatus.MACHINE))
            return
        self._feed(AmdResult(now=at, call_id=call.call_id, status=AmdStatus.HUMAN))
        self._customer_answered(call, at)

    def _customer_answered(self, call: SimCall, at: float) -> None:
        call.answered_at = at
        self._recorder.live_answer(at)
        self._feed(CustomerAnswered(now=at, call_id=call.call_id))

    def _on_patience(self, at: float, call: SimCall) -> None:
        if call.ended or call.bridged:
            return
        call.ended = True
        self._recorder.hung_up_waiting += 1
        self._feed(CustomerHungUp(now=at, call_id=call.call_id, cause=NORMAL_CLEARING))

    def _on_operator_answer(self, at: float, payload: tuple[SimCall, int]) -> None:
        call, gen = payload
        if call.ended or gen != call.gen or call.operator_id is None:
            return
        call.bridged = True
        self._schedule(at + call.talk_s(), self._on_talk_end, call)
        self._feed(OperatorAnswered(now=at, call_id=call.call_id, operator_id=call.operator_id))

    def _on_operator_miss(self, at: float, payload: tuple[SimCall, int]) -> None:
        call, gen = payload
        op = call.operator_id
        if call.ended or gen != call.gen or op is None:
            return
        call.operator_id = None
        call.release_at = None
        self._feed(
            ConnectFailed(now=at, call_id=call.call_id, operator_id=op, dial_status="NOANSWER")
        )

    def _on_talk_end(self, at: float, call: SimCall) -> None:
        call.ended = True
        self._schedule(at + call.fate.wrapup_s, self._on_dispose, call)
        if call.fate.customer_hangs_up or call.operator_id is None:
            self._feed(CustomerHungUp(now=at, call_id=call.call_id, cause=NORMAL_CLEARING))
        else:
            self._feed(OperatorHungUp(now=at, call_id=call.call_id, operator_id=call.operator_id))

    def _on_dispose(self, at: float, call: SimCall) -> None:
        op = call.operator_id
        if op is None:
            return
        order, fate = call.order, call.fate
        upsell = 0.0
        callback_at: float | None = None
        if call.machine:
            outcome, callback_at = DispositionOutcome.CALLBACK, at + CALLBACK_AFTER_MACHINE_S
        elif order.duplicate:
            outcome = DispositionOutcome.DUPLICATE
        elif fate.u_confirm < self._world.rate(op, order.category):
            outcome, upsell = DispositionOutcome.CONFIRMED, fate.upsell_amount
        else:
            outcome = DispositionOutcome.REJECTED
        leaving = op in self._leaving
        if leaving and self._op_states[op] == "wrap-up":
            self._feed(OperatorPause(now=at, operator_id=op, reason=END_OF_SHIFT))
        self._feed(
            Disposition(
                now=at,
                call_id=call.call_id,
                operator_id=op,
                outcome=outcome,
                upsell_items=("upsell",) if upsell > 0 else (),
                upsell_amount=upsell,
                callback_at=callback_at,
            )
        )
        if leaving:
            self._leave(at, op)

    def _on_hangup(self, at: float, call: SimCall) -> None:
        self._feed(CustomerHungUp(now=at, call_id=call.call_id, cause=NORMAL_CLEARING))

    # -- the engine's commands ---------------------------------------------------------------

    def originate(self, cmd: Originate, now: float) -> None:
        order = self.orders[cmd.order_id]
        attempt = self.attempts[order.index]
        self.attempts[order.index] = attempt + 1
        fate = self._world.fate(order.index, attempt)
        self._leads.take(order.order_id)
        self._recorder.originated(order, now)
        answers = self._world.answers(order, fate, now, cmd.timeout_s)
        call = SimCall(
            cmd.call_id, order, fate, now, answer_at=now + fate.ring_s if answers else None
        )
        self.calls[cmd.call_id] = call
        if order.invalid:
            self._schedule(now + fate.setup_s, self._on_result, (call, ORIGINATE_FAILURE))
            fails_at = now + fate.setup_s
        elif fate.busy:
            self._schedule(now + fate.setup_s, self._on_result, (call, ORIGINATE_BUSY))
            fails_at = now + fate.setup_s
        elif call.answer_at is not None:
            self._schedule(call.answer_at, self._on_answer, call)
            fails_at = math.nan
        else:
            self._schedule(now + cmd.timeout_s, self._on_result, (call, ORIGINATE_NO_ANSWER))
            fails_at = now + cmd.timeout_s
        if cmd.operator_id is not None:
            # Progressive, with the operator reserved before the dial: tied to it till the end.
            call.reserved = True
            self.operator_calls[cmd.operator_id] = call
            call.release_at = (
                fails_at if call.answer_at is None else call.answer_at + hold_s(fate, call.machine)
            )

    def connect(self, cmd: ConnectToOperator, now: float) -> None:
        call = self.calls[cmd.call_id]
        call.gen += 1
        call.operator_id = cmd.operator_id
        self.operator_calls[cmd.operator_id] = call
        fate = call.fate
        line_up = call.line_up_at if call.line_up_at is not None else now
        gives_up = line_up + call.patience_s()
        if fate.operator_miss and call.gen == 1:
            self._schedule(now + cmd.ring_timeout_s, self._on_operator_miss, (call, call.gen))
            call.release_at = min(now + cmd.ring_timeout_s, gives_up)
            return
        picks_up = now + fate.operator_answer_s
        self._schedule(picks_up, self._on_operator_answer, (call, call.gen))
        if picks_up > gives_up:
            call.release_at = gives_up
        else:
            call.release_at = picks_up + call.talk_s() + fate.wrapup_s

    def play_abandon(self, cmd: PlayAbandon, now: float) -> None:
        call = self.calls[cmd.call_id]
        call.ended = True
        self._recorder.abandon(now)
        self._schedule(
            now + self._world.scenario.customers.abandon_message_s, self._on_hangup, call
        )

    def hangup_call(self, cmd: HangupCall, now: float) -> None:
        call = self.calls.get(cmd.call_id)
        if call is not None and not call.ended:
            call.ended = True
            self._schedule(now, self._on_hangup, call)
