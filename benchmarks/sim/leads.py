"""The simulator's own record of which orders wait to be dialled, and from when.

The engine's hopper is private to it; the simulator rebuilds the same picture from what the
engine says (`OrderArrived` in, `Originate` out, `StoreOutcome` with its next attempt time back
in), using the engine's public scheduling functions (`not_before`, `in_window`, `priority`).
The simulator uses it for two things only: to tick while some lead may be dialled (and skip the
quiet hours), and to show the pacing oracle the leads in the order the hopper hands them out.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from dialer.engine.campaign import CampaignRules
from dialer.engine.scheduling import Lead, in_window, not_before, priority

__all__ = ["LeadBook"]


class LeadBook:
    """Leads waiting to be dialled: `due` from their time on, in the hopper's order."""

    def __init__(self, rules: CampaignRules) -> None:
        self._rules = rules
        self._version: dict[str, int] = {}
        self._leads: dict[str, Lead] = {}
        self._waiting: list[tuple[float, int, str]] = []
        self._due: dict[str, Lead] = {}

    def __len__(self) -> int:
        return len(self._leads)

    def arrived(self, lead: Lead, now: float) -> None:
        """A new order, due when its calling window allows."""
        self.put(lead, not_before(lead, now, self._rules))

    def put(self, lead: Lead, due_at: float) -> None:
        """Add or replace a lead that may be dialled from `due_at` on."""
        self.take(lead.order_id)
        version = self._version.get(lead.order_id, 0) + 1
        self._version[lead.order_id] = version
        self._leads[lead.order_id] = lead
        heapq.heappush(self._waiting, (due_at, version, lead.order_id))

    def take(self, order_id: str) -> None:
        """The lead was dialled, or its order closed: forget it."""
        if self._leads.pop(order_id, None) is not None:
            self._version[order_id] = self._version.get(order_id, 0) + 1
            self._due.pop(order_id, None)

    def _promote(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            _, version, order_id = heapq.heappop(self._waiting)
            if self._version.get(order_id) == version and order_id in self._leads:
                self._due[order_id] = self._leads[order_id]

    def _requeue(self, lead: Lead, now: float) -> None:
        # The calling window closed while the lead was due: it waits for the next one.
        del self._due[lead.order_id]
        version = self._version[lead.order_id] + 1
        self._version[lead.order_id] = version
        heapq.heappush(self._waiting, (not_before(lead, now, self._rules), version, lead.order_id))

    def any_due(self, now: float) -> bool:
        """Whether some lead may be dialled at `now`."""
        self._promote(now)
        window = self._rules.calling_window
        for lead in list(self._due.values()):
            if in_window(now, lead.timezone, window):
                return True
            self._requeue(lead, now)
        return False

    def due_count(self, now: float) -> int:
        """How many leads may be dialled at `now`."""
        self._promote(now)
        window = self._rules.calling_window
        for lead in list(self._due.values()):
            if not in_window(now, lead.timezone, window):
                self._requeue(lead, now)
        return len(self._due)

    def next_due_at(self) -> float | None:
        """When the next waiting lead falls due, or None."""
        while self._waiting:
            due_at, version, order_id = self._waiting[0]
            if self._version.get(order_id) == version and order_id in self._leads:
                return due_at
            heapq.heappop(self._waiting)
        return None

    def due(self, now: float) -> Iterator[Lead]:
        """The leads that may be dialled at `now`, best first by `scheduling.priority`."""
        self._promote(now)
        window = self._rules.calling_window
        for lead in sorted(self._due.values(), key=lambda lead: priority(lead, window)):
            if in_window(now, lead.timezone, window):
                yield lead
