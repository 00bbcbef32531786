"""The simulator's side of one call attempt, and what it lets the pacing oracle see.

A `SimCall` is what the simulated customer and operator will do on one attempt (its `Fate`)
and how far the call has got. `Sight` reads the open calls and the operators' states to answer
the oracle's questions (`oracle.Clairvoyant`): it knows each call's future because the fate
was drawn before the call was placed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Final

from benchmarks.sim.leads import LeadBook
from benchmarks.sim.oracle import Candidate, Demand, Foresight
from benchmarks.sim.world import Fate, Order, World
from dialer.engine.campaign import CampaignRules

__all__ = ["MACHINE_PATIENCE_S", "MACHINE_TALK_S", "Sight", "SimCall"]

# An answering machine reached without AMD: the operator hears the greeting and hangs up; the
# machine itself records for this long before it hangs up.
MACHINE_TALK_S: Final = 10.0
MACHINE_PATIENCE_S: Final = 30.0
# Plan an answered customer's connection this far inside their limits (the tick, float noise).
MARGIN_S: Final = 0.25


class SimCall:
    """One attempt as the simulator plays it (mutable, simulator-internal)."""

    __slots__ = (
        "answer_at",
        "answered_at",
        "bridged",
        "call_id",
        "ended",
        "fate",
        "gen",
        "line_up_at",
        "machine",
        "operator_id",
        "order",
        "placed_at",
        "release_at",
        "reserved",
    )

    def __init__(
        self, call_id: str, order: Order, fate: Fate, now: float, *, answer_at: float | None
    ) -> None:
        self.call_id = call_id
        self.order = order
        self.fate = fate
        self.placed_at = now
        self.answer_at = answer_at  # when the line comes up, if it will
        self.machine = fate.machine and answer_at is not None
        self.line_up_at: float | None = None
        self.answered_at: float | None = None  # when the engine was told a person answered
        self.bridged = False
        self.ended = False
        self.operator_id: str | None = None
        self.reserved = False
        self.gen = 0  # counts ConnectToOperator; stale operator events carry an older one
        self.release_at: float | None = None  # when the operator tied to it will be free

    def talk_s(self) -> float:
        return MACHINE_TALK_S if self.machine else self.fate.talk_s

    def patience_s(self) -> float:
        return MACHINE_PATIENCE_S if self.machine else self.fate.patience_s


def hold_s(fate: Fate, machine: bool) -> float:
    """How long an operator is busy with a call once offered it: pick-up, talk, wrap-up."""
    talk = MACHINE_TALK_S if machine else fate.talk_s
    return fate.operator_answer_s + talk + fate.wrapup_s


class Sight:
    """Answers `oracle.Clairvoyant` from the simulator's state (read-only)."""

    def __init__(
        self,
        *,
        world: World,
        rules: CampaignRules,
        leads: LeadBook,
        calls: Mapping[str, SimCall],
        operator_states: Mapping[str, str],
        operator_calls: Mapping[str, SimCall],
        leaving: set[str],
        shift_end: Mapping[str, float],
        ready_again: Mapping[str, float],
        attempts: Callable[[int], int],
        orders: Mapping[str, Order],
    ) -> None:
        self._world = world
        self._rules = rules
        self._leads = leads
        self._calls = calls
        self._states = operator_states
        self._op_calls = operator_calls
        self._leaving = leaving
        self._shift_end = shift_end
        self._ready_again = ready_again
        self._attempts = attempts
        self._orders = orders
        self._amd_delay = world.scenario.customers.amd_delay_s

    def demand(self, fate: Fate, machine: bool, line_up: float, answered: float) -> Demand:
        """The operator an answered call needs: taken by the engine within the connect budget,
        and picked up before the customer's patience (counted from line-up) runs out."""
        patience = MACHINE_PATIENCE_S if machine else fate.patience_s
        latest = min(
            answered + self._rules.connect_budget_s, line_up + patience - fate.operator_answer_s
        )
        return Demand(
            answer_at=answered,
            deadline=max(answered, latest - MARGIN_S),
            hold_s=hold_s(fate, machine),
        )

    def foresight(self, now: float) -> Foresight:
        free: list[tuple[float, float]] = []
        for op, state in self._states.items():
            if state == "offline" or op in self._leaving:
                continue
            at: float | None
            if state == "ready":
                at = now
            elif state == "paused":
                at = self._ready_again.get(op)
            else:
                call = self._op_calls.get(op)
                at = call.release_at if call is not None else None
            until = self._shift_end.get(op, math.inf)
            if at is not None and at < until:
                free.append((max(at, now), until))
        committed: list[Demand] = []
        for call in self._calls.values():
            if call.ended or call.operator_id is not None or call.answer_at is None:
                continue
            if call.machine and self._rules.amd:
                continue
            line_up = call.line_up_at if call.line_up_at is not None else call.answer_at
            answered = call.answered_at
            if answered is None:
                answered = line_up + (self._amd_delay if self._rules.amd else 0.0)
            committed.append(self.demand(call.fate, call.machine, line_up, answered))
        return Foresight(operators=tuple(free), committed=tuple(committed))

    def candidates(self, now: float) -> Iterator[Candidate]:
        rules = self._rules
        for lead in self._leads.due(now):
            order = self._orders[lead.order_id]
            fate = self._world.fate(order.index, self._attempts(order.index))
            locked = lead.lockout_until is not None and lead.lockout_until > now
            demand: Demand | None = None
            if self._world.answers(order, fate, now, rules.ring_timeout_s) and not (
                fate.machine and rules.amd
            ):
                line_up = now + fate.ring_s
                answered = line_up + (self._amd_delay if rules.amd else 0.0)
                demand = self.demand(fate, fate.machine, line_up, answered)
            yield Candidate(order_id=lead.order_id, demand=demand, locked=locked)
