"""The hopper: the callable leads of one campaign, ready to hand out the next ones to dial.

A lead sits in exactly one place: waiting (its time, retry or calling window has not come),
ready (due, may be dialled predictively), locked (due, but under the abandon lockout, so it
needs an operator reserved for it) or mine (a due callback promised to one operator). Each
place is a heap with lazy deletion, so handing out `n` leads costs O((n + promoted) log N)
rather than a sort of every lead on every tick; at 10,000 leads a tick stays well under a
millisecond.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from dialer.engine.campaign import CampaignRules
from dialer.engine.scheduling import Lead, in_window, not_before, priority

__all__ = ["Hopper", "Pick"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Pick:
    """A lead handed out to be dialled now.

    With `operator_id` set the call must be placed progressively: that operator is reserved
    for it before the Originate and gets the customer when they answer.
    """

    lead: Lead
    operator_id: str | None = None


class _Place(Enum):
    WAITING = "waiting"
    READY = "ready"
    LOCKED = "locked"
    MINE = "mine"


@dataclass(slots=True)
class _Entry:
    lead: Lead
    token: int
    place: _Place


_Key = tuple[int, float, float, str]


class Hopper:
    """The callable leads of one campaign.

    A caller may rely on: a lead put in is handed out at most once by `next_leads` (it leaves
    the hopper when handed out; put it back to schedule another attempt); it is handed out
    only inside the calling window of its time zone, not before its next attempt time, and,
    while locked out or promised to one operator, only together with an operator from
    `reserved_operator_ids`.
    """

    def __init__(self, rules: CampaignRules) -> None:
        self._rules = rules
        self._entries: dict[str, _Entry] = {}
        self._tokens = itertools.count()
        self._waiting: list[tuple[float, int, str]] = []
        self._ready: list[tuple[_Key, int, str]] = []
        self._locked: list[tuple[_Key, int, str]] = []
        self._mine: dict[str, list[tuple[_Key, int, str]]] = {}
        self._oldest: list[tuple[float, int, str]] = []
        self._counts: Counter[_Place] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._entries

    def __iter__(self) -> Iterator[Lead]:
        return (entry.lead for entry in self._entries.values())

    def get(self, order_id: str) -> Lead | None:
        """The lead for `order_id` if it is in the hopper."""
        entry = self._entries.get(order_id)
        return entry.lead if entry is not None else None

    def put(self, lead: Lead, now: float) -> None:
        """Add a lead, or replace the one with the same order id."""
        self.discard(lead.order_id)
        entry = _Entry(lead=lead, token=next(self._tokens), place=_Place.WAITING)
        self._entries[lead.order_id] = entry
        self._counts[_Place.WAITING] += 1
        heapq.heappush(self._oldest, (lead.created_at, entry.token, lead.order_id))
        self._place(entry, now)

    def discard(self, order_id: str) -> Lead | None:
        """Remove the lead for `order_id`; returns it, or None if it was not here."""
        entry = self._entries.pop(order_id, None)
        if entry is None:
            return None
        self._counts[entry.place] -= 1
        return entry.lead

    def due_count(self, now: float) -> int:
        """How many leads are due at `now` (some may need a reserved operator)."""
        self._promote(now)
        return len(self._entries) - self._counts[_Place.WAITING]

    def oldest_created_at(self) -> float | None:
        """`created_at` of the oldest lead in the hopper, or None when it is empty."""
        while self._oldest:
            _, token, order_id = self._oldest[0]
            entry = self._entries.get(order_id)
            if entry is not None and entry.token == token:
                return entry.lead.created_at
            heapq.heappop(self._oldest)
        return None

    def peek_created_at(self, now: float, k: int) -> list[float]:
        """`created_at` of the next `k` leads that may be dialled ahead of the operators, best
        first, without handing them out.

        These are the due leads outside any lockout and callback, inside their calling window,
        in the order `next_leads` hands them out. Costs O(k log k) whatever the hopper holds:
        the heap is walked from its root, never sorted.
        """
        self._promote(now)
        heap, window = self._ready, self._rules.calling_window
        found: list[float] = []
        frontier: list[tuple[_Key, int, int]] = [(heap[0][0], heap[0][1], 0)] if heap else []
        while frontier and len(found) < k:
            _, _, at = heapq.heappop(frontier)
            _, token, order_id = heap[at]
            entry = self._entries.get(order_id)
            if (
                entry is not None
                and entry.token == token
                and entry.place is _Place.READY
                and in_window(now, entry.lead.timezone, window)
            ):
                found.append(entry.lead.created_at)
            # A stale entry still orders its children: walk past it.
            for child in (2 * at + 1, 2 * at + 2):
                if child < len(heap):
                    heapq.heappush(frontier, (heap[child][0], heap[child][1], child))
        return found

    def next_leads(
        self, now: float, n: int, reserved_operator_ids: Iterable[str] = ()
    ) -> list[Pick]:
        """Hand out up to `n` leads to dial at `now`, best first; they leave the hopper.

        `reserved_operator_ids` are the operators the caller is prepared to reserve, in the
        order it prefers them; each is given to at most one pick. Callbacks promised to one of
        them come first, then the rest by `scheduling.priority`; a locked-out lead takes the
        first operator still unused and is skipped when none is left.
        """
        self._promote(now)
        operators = list(dict.fromkeys(reserved_operator_ids))
        unused = dict.fromkeys(operators)
        picks: list[Pick] = []
        for operator_id in operators:
            if len(picks) >= n:
                break
            lead = self._pop_due(self._mine.get(operator_id), _Place.MINE, now)
            if lead is not None:
                del unused[operator_id]
                picks.append(Pick(lead=lead, operator_id=operator_id))
        while len(picks) < n:
            ready = self._valid_top(self._ready, _Place.READY)
            locked = self._valid_top(self._locked, _Place.LOCKED) if unused else None
            if ready is None and locked is None:
                break
            if locked is not None and (ready is None or locked < ready):
                lead = self._pop_due(self._locked, _Place.LOCKED, now)
                if lead is not None:
                    operator_id = next(iter(unused))
                    del unused[operator_id]
                    picks.append(Pick(lead=lead, operator_id=operator_id))
            else:
                lead = self._pop_due(self._ready, _Place.READY, now)
                if lead is not None:
                    picks.append(Pick(lead=lead))
        return picks

    # -- internals ---------------------------------------------------------------------------

    def _place(self, entry: _Entry, now: float) -> None:
        lead = entry.lead
        place: _Place
        at = not_before(lead, now, self._rules)
        if at > now:
            place = _Place.WAITING
            heapq.heappush(self._waiting, (at, entry.token, lead.order_id))
        elif lead.callback_operator_id is not None:
            place = _Place.MINE
            heap = self._mine.setdefault(lead.callback_operator_id, [])
            heapq.heappush(
                heap, (priority(lead, self._rules.calling_window), entry.token, lead.order_id)
            )
        elif lead.lockout_until is not None and lead.lockout_until > now:
            place = _Place.LOCKED
            heapq.heappush(
                self._locked,
                (priority(lead, self._rules.calling_window), entry.token, lead.order_id),
            )
            # Wake up when the lockout ends: from then on it may be dialled predictively.
            heapq.heappush(self._waiting, (lead.lockout_until, entry.token, lead.order_id))
        else:
            place = _Place.READY
            heapq.heappush(
                self._ready,
                (priority(lead, self._rules.calling_window), entry.token, lead.order_id),
            )
        self._counts[entry.place] -= 1
        self._counts[place] += 1
        entry.place = place

    def _promote(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            _, token, order_id = heapq.heappop(self._waiting)
            entry = self._entries.get(order_id)
            if entry is None or entry.token != token:
                continue
            if entry.place in (_Place.WAITING, _Place.LOCKED):
                self._place(entry, now)

    def _valid_top(self, heap: list[tuple[_Key, int, str]], place: _Place) -> _Key | None:
        while heap:
            key, token, order_id = heap[0]
            entry = self._entries.get(order_id)
            if entry is not None and entry.token == token and entry.place is place:
                return key
            heapq.heappop(heap)
        return None

    def _pop_due(
        self, heap: list[tuple[_Key, int, str]] | None, place: _Place, now: float
    ) -> Lead | None:
        """Pop the best valid lead of `heap` that is inside its calling window."""
        window = self._rules.calling_window
        while heap and self._valid_top(heap, place) is not None:
            _, _, order_id = heapq.heappop(heap)
            entry = self._entries[order_id]
            if in_window(now, entry.lead.timezone, window):
                del self._entries[order_id]
                self._counts[place] -= 1
                return entry.lead
            # The window closed while the lead sat here: back to waiting for the next one.
            self._place(entry, now)
        return None
