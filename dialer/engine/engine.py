"""`DialerEngine`: the sans-I/O dialer. Events in (each with `now`), commands out.

The engine composes the pieces: per campaign a hopper of leads (`hopper.Hopper`), a pacer
held to the abandon target (`pacing.AbandonGuard`) and an abandon ledger; the shared operator
board and routing policy from `acd/`; and the call flow (`flow.CallFlow`) that moves each
call through the session table. Two drivers feed it the same way: the daemon (AMI events,
timers, HTTP requests) and the simulator in `benchmarks/` (a virtual clock).

What a caller may rely on:

- `handle(event)` returns the commands to perform, in order, and reads no clock: the same
  events give the same commands. An event the engine must refuse (an operator's action that
  does not fit, an unknown campaign) raises an `EngineError` and changes nothing.
- At most one call is open per order: an order is never dialled while a call for it is open
  (from its Originate until its `StoreOutcome`).
- The engine dials on `Tick` and on `OrderArrived`; on every `Tick` it first expires wrap-ups,
  gives up on lost dials, abandons answered customers who waited the connect budget, and offers
  waiting customers to free operators. The driver should tick at least every 0.25 s, and by
  `next_deadline()` at the latest, for the connect budget to hold.
- After `Drain` no Originate is emitted again; calls already placed run to their end.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from acd.board import OperatorBoard, OperatorView
from acd.errors import AcdError
from acd.routing import RoutingPolicy
from acd.states import OperatorState
from dialer.engine.abandon import DAY, HOUR, MONTH_30D, AbandonLedger
from dialer.engine.book import CallBook
from dialer.engine.campaign import CampaignRules
from dialer.engine.commands import Command, HoldCustomer, Originate, Publish
from dialer.engine.errors import (
    EngineError,
    InvalidEvent,
    InvalidRules,
    OperatorActionRejected,
    UnknownCampaign,
)
from dialer.engine.events import (
    AmdResult,
    CallbackChoice,
    CampaignConfigured,
    CampaignPaused,
    CampaignResumed,
    ConnectFailed,
    ConsultEnded,
    CustomerAnswered,
    CustomerHungUp,
    CustomerRinging,
    Disposition,
    Drain,
    EndpointRegistration,
    Event,
    InboundCall,
    OperatorAnswered,
    OperatorHungUp,
    OperatorLogin,
    OperatorLogout,
    OperatorPause,
    OperatorReady,
    OrderArrived,
    OrdersArrived,
    OriginateResult,
    Tick,
    TransferDecision,
    TransferRequested,
)
from dialer.engine.flow import CallFlow, hour_of_day
from dialer.engine.hopper import Hopper, Pick
from dialer.engine.pacing import AbandonGuard, BusyOperator, Pacer, PacingSnapshot, make_pacer
from dialer.engine.records import call_published
from dialer.engine.scheduling import in_window, record_attempt
from dialer.engine.session import CallSession, CallState, Trigger
from dialer.engine.stats import (
    CampaignCounters,
    CampaignStatistics,
    EngineStatistics,
    TimeToFirstCallSamples,
)

__all__ = ["DialerEngine"]

_DIALING = frozenset({CallState.DIALING, CallState.RINGING, CallState.SCREENING})
# How many of the next leads' ages a pacer is told in one step (walking the hopper for every
# one of a big floor's thousands of leads cost milliseconds a step).
NEXT_LEADS_TOLD = 256
_PHASES: Mapping[OperatorState, str] = {
    OperatorState.RESERVED: "ringing",
    OperatorState.RINGING: "ringing",
    OperatorState.TALKING: "talking",
    OperatorState.WRAPUP: "wrap-up",
}


class DialerEngine:
    """The dialer's decisions for a set of campaigns; see the module docstring.

    `pacers` maps a campaign id to its pacer (wrapped in `AbandonGuard` if it is not already);
    a campaign without one gets `make_pacer(rules.pacing)`. `id_factory` returns a new, unique
    call id (the ChannelId) each time it is called. The board is shared with whoever adds the
    operator profiles to it; the engine changes operator states only through it.
    """

    def __init__(
        self,
        *,
        campaigns: Sequence[CampaignRules],
        board: OperatorBoard,
        router: RoutingPolicy,
        pacers: Mapping[str, Pacer] | None = None,
        id_factory: Callable[[], str],
    ) -> None:
        self._rules: dict[str, CampaignRules] = {}
        for rules in campaigns:
            if rules.id in self._rules:
                raise InvalidRules(f"campaign {rules.id!r} is given twice")
            self._rules[rules.id] = rules
        pacers = pacers or {}
        unknown = set(pacers) - set(self._rules)
        if unknown:
            raise InvalidRules(f"pacers given for unknown campaigns: {sorted(unknown)}")
        self._board = board
        self._ids = id_factory
        self._pacers: dict[str, Pacer] = {
            cid: AbandonGuard(pacers[cid]) if cid in pacers else make_pacer(rules.pacing)
            for cid, rules in self._rules.items()
        }
        self._hoppers = {cid: Hopper(rules) for cid, rules in self._rules.items()}
        self._ledgers = {cid: AbandonLedger() for cid in self._rules}
        self._counters = {cid: CampaignCounters() for cid in self._rules}
        self._ttfc = {cid: TimeToFirstCallSamples() for cid in self._rules}
        self._arrived: dict[str, float] = {}
        self._paused: set[str] = set()
        self._draining = False
        self._book = CallBook()
        self._flow = CallFlow(
            rules=self._rules,
            board=board,
            router=router,
            book=self._book,
            hoppers=self._hoppers,
            pacers=self._pacers,
            ledgers=self._ledgers,
            counters=self._counters,
        )
        flow = self._flow
        self._handlers: dict[type[Event], Callable[[Any, list[Command]], None]] = {
            OrderArrived: self._order_arrived,
            OrdersArrived: self._orders_arrived,
            Tick: self._tick,
            CustomerRinging: flow.ringing,
            OriginateResult: flow.originate_result,
            AmdResult: flow.amd,
            CustomerAnswered: flow.answered,
            ConnectFailed: flow.connect_failed,
            OperatorAnswered: flow.operator_answered,
            CustomerHungUp: flow.customer_hung_up,
            OperatorHungUp: flow.operator_hung_up,
            Disposition: flow.disposition,
            InboundCall: self._inbound_call,
            CallbackChoice: self._callback_choice,
            TransferRequested: self._transfer,
            TransferDecision: flow.consults.decide,
            ConsultEnded: self._consult_ended,
            OperatorLogin: self._operator_login,
            OperatorReady: self._operator_ready,
            OperatorPause: self._operator_pause,
            OperatorLogout: self._operator_logout,
            EndpointRegistration: self._endpoint_registration,
            CampaignPaused: self._campaign_paused,
            CampaignConfigured: self._campaign_configured,
            CampaignResumed: self._campaign_resumed,
            Drain: self._drain,
        }

    @property
    def draining(self) -> bool:
        """True once `Drain` was handled."""
        return self._draining

    def handle(self, event: Event) -> list[Command]:
        """Apply one event at `event.now`; returns the commands to perform, in order."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise InvalidEvent(f"not an engine event: {type(event).__name__}")
        out: list[Command] = []
        handler(event, out)
        return out

    def next_deadline(self) -> float | None:
        """The earliest time a `Tick` is needed to abandon a waiting customer, if any waits."""
        return self._flow.connector.next_deadline()

    def awaiting_disposition(self, operator_id: str) -> list[str]:
        """Calls of `operator_id` that ended and still wait for their disposition (in wrap-up,
        or overdue), oldest first: what the operator's desktop must ask them about."""
        pending = [
            s
            for s in self._book
            if s.operator_id == operator_id
            and s.state in (CallState.WRAP_UP, CallState.DISPOSITION_OVERDUE)
        ]
        return [s.call_id for s in sorted(pending, key=lambda s: s.queued_at)]

    def call(self, call_id: str) -> CallSession | None:
        """The open call `call_id` (read it, do not change it), or None."""
        return self._book.get(call_id)

    # -- orders and dialling -----------------------------------------------------------------

    def _order_arrived(self, ev: OrderArrived, out: list[Command]) -> None:
        rules = self._take_order(ev)
        if rules is not None:
            self._dial(rules, ev.now, out)

    def _orders_arrived(self, ev: OrdersArrived, out: list[Command]) -> None:
        campaigns = {rules.id: rules for a in ev.arrivals if (rules := self._take_order(a))}
        for rules in campaigns.values():
            self._dial(rules, ev.now, out)

    def _take_order(self, ev: OrderArrived) -> CampaignRules | None:
        """Put the order's lead in its hopper; its campaign, or None for an order known
        already (replayed at start-up, or sent twice by the CRM)."""
        lead = ev.lead
        rules = self._campaign(lead.campaign_id)
        hopper = self._hoppers[rules.id]
        if self._book.order_open(lead.order_id) or lead.order_id in hopper:
            return None
        hopper.put(lead, ev.now)
        if lead.fresh:
            if in_window(ev.now, lead.timezone, rules.calling_window):
                self._arrived[lead.order_id] = ev.now
            else:
                self._ttfc[rules.id].defer()
        return rules

    def _tick(self, ev: Tick, out: list[Command]) -> None:
        self._flow.expire_wrapups(ev.now, out)
        self._flow.fail_lost(ev.now, out)
        self._flow.abandon_overdue(ev.now, out)
        self._flow.connector.serve_waiting(ev.now, out)
        self._flow.desk.tick(ev.now, out)
        self._flow.consults.tick(ev.now, out)
        for rules in self._rules.values():
            self._dial(rules, ev.now, out)

    # -- inbound calls and transfers -----------------------------------------------------------

    def _inbound_call(self, ev: InboundCall, out: list[Command]) -> None:
        session = self._flow.desk.arrive(ev, out)
        if session is not None:
            self._flow.connector.offer(session, ev.now, out)
            self._flow.desk.announce(session.campaign_id, out)

    def _callback_choice(self, ev: CallbackChoice, out: list[Command]) -> None:
        if not self._flow.desk.callback_choice(ev, out):
            self._flow.stale += 1

    def _transfer(self, ev: TransferRequested, out: list[Command]) -> None:
        if ev.mode == "attended":
            self._flow.consults.start(ev, out)
            return
        session = self._flow.desk.transfer(ev, out)
        if not self._flow.connector.offer(session, ev.now, out):
            out.append(HoldCustomer(call_id=session.call_id))

    def _consult_ended(self, ev: ConsultEnded, out: list[Command]) -> None:
        if not self._flow.consults.ended(ev, out):
            self._flow.stale += 1

    def _dial(self, rules: CampaignRules, now: float, out: list[Command]) -> None:
        if self._draining or rules.id in self._paused or rules.inbound is not None:
            return
        hopper = self._hoppers[rules.id]
        free = self._board.free(rules.id)
        busy = self._busy_operators(rules.id, now)
        # A call with its operator reserved is already matched: the pacer plans the rest.
        dialing = [
            s
            for s in self._book
            if s.campaign_id == rules.id and s.state in _DIALING and s.reserved_operator_id is None
        ]
        placed = [now if s.originated_at is None else s.originated_at for s in dialing]
        leads = hopper.due_count(now)
        # Customers answer less the older their order: the pacer is told how old the orders of
        # the calls in flight and of the next leads are (at most four per operator logged in,
        # the predictive pacer's default cap on calls in flight).
        told = min(leads, 4 * (len(free) + len(busy)), NEXT_LEADS_TOLD)
        ahead = hopper.peek_created_at(now, told)
        if leads > told and ahead:
            # past those told, leads count as fresh (the likeliest to answer): a pacer that
            # wants more calls than that in one step plans no more than it would for the truth
            ahead.append(now)
        snap = PacingSnapshot(
            now=now,
            hour_of_day=hour_of_day(rules, now),
            ready_operators=len(free),
            busy_operators=busy,
            calls_dialing=len(dialing),
            dialing_elapsed_s=tuple(max(0.0, now - at) for at in placed),
            dialing_lead_ages_s=tuple(
                max(0.0, at - s.lead.created_at) for at, s in zip(placed, dialing, strict=True)
            ),
            next_lead_ages_s=tuple(max(0.0, now - created) for created in ahead),
            dialing_screening=tuple(s.state is CallState.SCREENING for s in dialing),
            calls_waiting=len(self._book.waiting(rules.id)),
            leads_available=leads,
            abandon_rate=self._ledgers[rules.id].rate(now, rules.abandon_window_s),
            abandon_target=rules.abandon_target,
            abandon_counts=self._ledgers[rules.id].counts(now, rules.abandon_window_s),
        )
        n = self._pacers[rules.id].calls_to_place(snap)
        if n <= 0:
            return
        longest_idle_first = sorted(free, key=_idle_key)
        for pick in hopper.next_leads(now, n, [view.id for view in longest_idle_first]):
            self._originate(pick, rules, now, out)

    def _originate(self, pick: Pick, rules: CampaignRules, now: float, out: list[Command]) -> None:
        lead = pick.lead
        call_id = self._ids()
        if self._book.known(call_id) or self._book.order_open(lead.order_id):
            self._hoppers[rules.id].put(lead, now)
            raise EngineError(f"call id {call_id!r} reused, or order {lead.order_id} already open")
        session = CallSession(
            call_id=call_id,
            lead=record_attempt(lead, now),
            now=now,
            reserved_operator_id=pick.operator_id,
        )
        if pick.operator_id is not None:
            self._board.reserve(pick.operator_id, call_id, now)
        self._book.open(session)
        if pick.operator_id is not None:
            self._book.assign(session, pick.operator_id)
            self._flow.publish_operator(pick.operator_id, out)
        session.apply(Trigger.ORIGINATE, now)
        self._counters[rules.id].originated += 1
        arrived = self._arrived.pop(lead.order_id, None)
        if arrived is not None:
            self._ttfc[rules.id].add(now - arrived)
        out.append(
            Originate(
                call_id=call_id,
                order_id=lead.order_id,
                campaign_id=rules.id,
                phone=lead.phone,
                timeout_s=rules.ring_timeout_s,
                amd=rules.amd,
                caller_id=rules.caller_id,
                shop_name=rules.shop_name,
                operator_id=pick.operator_id,
            )
        )
        out.append(call_published(session))

    def _busy_operators(self, campaign_id: str, now: float) -> tuple[BusyOperator, ...]:
        busy: list[BusyOperator] = []
        for view in self._board.in_states(_PHASES):
            phase = _PHASES[view.state]
            if campaign_id not in view.profile.campaigns:
                continue
            session = self._book.get(view.call_id) if view.call_id is not None else None
            started = view.since
            if session is not None and session.connected_at is not None:
                started = session.connected_at  # talk and wrap-up count from the call's start
            busy.append(BusyOperator(phase=phase, elapsed_s=max(0.0, now - started)))
        return tuple(busy)

    # -- operators and campaigns -------------------------------------------------------------

    def _on_board(self, action: Callable[[], None], operator_id: str, out: list[Command]) -> None:
        try:
            action()
        except AcdError as exc:
            raise OperatorActionRejected(str(exc)) from exc
        self._flow.publish_operator(operator_id, out)

    def _operator_login(self, ev: OperatorLogin, out: list[Command]) -> None:
        self._on_board(lambda: self._board.login(ev.operator_id, ev.now), ev.operator_id, out)

    def _operator_ready(self, ev: OperatorReady, out: list[Command]) -> None:
        self._on_board(lambda: self._board.ready(ev.operator_id, ev.now), ev.operator_id, out)
        self._flow.connector.serve_waiting(ev.now, out)

    def _operator_pause(self, ev: OperatorPause, out: list[Command]) -> None:
        self._on_board(
            lambda: self._board.pause(ev.operator_id, ev.reason, ev.now), ev.operator_id, out
        )

    def _operator_logout(self, ev: OperatorLogout, out: list[Command]) -> None:
        self._on_board(lambda: self._board.logout(ev.operator_id, ev.now), ev.operator_id, out)

    def _endpoint_registration(self, ev: EndpointRegistration, out: list[Command]) -> None:
        self._board.set_registered(ev.endpoint, ev.registered, ev.now)

    def _campaign_paused(self, ev: CampaignPaused, out: list[Command]) -> None:
        self._paused.add(self._campaign(ev.campaign_id).id)
        out.append(
            Publish(kind="campaign", payload={"campaign_id": ev.campaign_id, "paused": True})
        )

    def _campaign_resumed(self, ev: CampaignResumed, out: list[Command]) -> None:
        self._paused.discard(self._campaign(ev.campaign_id).id)
        out.append(
            Publish(kind="campaign", payload={"campaign_id": ev.campaign_id, "paused": False})
        )

    def _campaign_configured(self, ev: CampaignConfigured, out: list[Command]) -> None:
        old = self._campaign(ev.campaign_id)
        rules = dataclasses.replace(  # validates again, raising InvalidRules
            old,
            abandon_target=old.abandon_target if ev.abandon_target is None else ev.abandon_target,
            pacing=old.pacing if ev.pacing is None else ev.pacing,
        )
        pacer = make_pacer(rules.pacing) if rules.pacing != old.pacing else None
        # the flow and the connector read these same mappings: one change reaches all
        self._rules[rules.id] = rules
        if pacer is not None:
            self._pacers[rules.id] = pacer
        out.append(
            Publish(
                kind="campaign",
                payload={
                    "campaign_id": rules.id,
                    "abandon_target": rules.abandon_target,
                    "pacing": rules.pacing,
                },
            )
        )

    def _drain(self, ev: Drain, out: list[Command]) -> None:
        self._draining = True
        out.append(Publish(kind="engine", payload={"draining": True}))

    def _campaign(self, campaign_id: str) -> CampaignRules:
        try:
            return self._rules[campaign_id]
        except KeyError:
            raise UnknownCampaign(campaign_id) from None

    # -- statistics --------------------------------------------------------------------------

    def statistics(self, now: float) -> EngineStatistics:
        """A frozen snapshot of every campaign at `now`; see `stats.EngineStatistics`."""
        campaigns: dict[str, CampaignStatistics] = {}
        for cid in self._rules:
            hopper = self._hoppers[cid]
            ledger = self._ledgers[cid]
            counters = self._counters[cid]
            pacer = self._pacers[cid].statistics()
            oldest = hopper.oldest_created_at()
            waits = [
                now - s.answered_at for s in self._book.waiting(cid) if s.answered_at is not None
            ]
            campaigns[cid] = CampaignStatistics(
                campaign_id=cid,
                paused=cid in self._paused,
                calls_by_state={s.value: n for s, n in self._book.counts(cid).items()},
                dial_level=pacer.dial_level,
                pacer=pacer,
                originated=counters.originated,
                live_answers=counters.live_answers,
                machines=counters.machines,
                abandons=counters.abandons,
                connected=counters.connected,
                dispositions=counters.dispositions,
                missing_dispositions=counters.missing_dispositions,
                unreached=counters.unreached,
                abandon_rate_1h=ledger.rate(now, HOUR),
                abandon_rate_24h=ledger.rate(now, DAY),
                abandon_rate_30d=ledger.rate(now, MONTH_30D),
                leads_waiting=len(hopper),
                leads_due=hopper.due_count(now),
                oldest_lead_age_s=max(0.0, now - oldest) if oldest is not None else None,
                longest_wait_s=max(waits, default=0.0),
                time_to_first_call=self._ttfc[cid].summary(),
            )
        return EngineStatistics(
            now=now,
            draining=self._draining,
            open_calls=len(self._book),
            live_calls=sum(1 for s in self._book if s.live),
            stale_events=self._flow.stale,
            campaigns=campaigns,
            queues=self._flow.desk.statistics(now),
        )


def _idle_key(view: OperatorView) -> tuple[float, str]:
    started = view.idle_since if view.idle_since is not None else view.since
    return (started, view.id)
