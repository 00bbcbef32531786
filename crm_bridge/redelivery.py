"""What an adapter remembers of the calls it sent, so that sending one again adds nothing.

The relay sends a call again whenever its acknowledgement did not arrive: a timeout or a
connection reset after the CRM stored it, a crash between the answer and the database write.
RetailCRM recognises a call it already has by ``externalId``. Bitrix24 and amoCRM do not
promise to, so their adapters ask the CRM what it has before sending a call that may be there
already. A call may be there already when

- this adapter sent it and did not get the answer (`CallLedger.in_doubt`); or
- it is handed over more than `check_after_s` after it ended. The relay hands a fresh call
  over within seconds; one that comes late was held back by an outage (the check then finds
  nothing and costs a request) or was sent by a relay that stopped before it was acknowledged.
  The relay's lease on a row (300 s) is longer than `check_after_s`, so a row another relay
  was sending always comes back late enough to be checked.

A call the CRM acknowledged is remembered as such and counts as a duplicate if it comes again
(the relay sends every row of a batch again when a later part of the batch failed). A call
the CRM refused is forgotten: an admin may send it again once its cause is fixed. Memory is
bounded (`capacity` calls, the oldest forgotten first); a forgotten call falls back on the age
rule.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from crm_bridge.adapter import CallRecord

# A call handed over later than this after it ended may have been sent before.
CHECK_AFTER_S = 120.0


@dataclass(slots=True)
class CallProgress:
    """How far one call got. `crm_call_id` is the CRM's own id once it gave one (Bitrix24's
    ``CALL_ID`` after register), `finished` whether the CRM recorded the call itself
    (Bitrix24's finish), `acknowledged` whether every step is done."""

    crm_call_id: str | None = None
    finished: bool = False
    acknowledged: bool = False


class CallLedger:
    """Per ChannelId, the progress of calls sent (see the module docstring). `now` is the
    caller's clock in epoch seconds."""

    def __init__(
        self,
        *,
        now: Callable[[], float],
        check_after_s: float = CHECK_AFTER_S,
        capacity: int = 100_000,
    ) -> None:
        self._now = now
        self.check_after_s = check_after_s
        self._capacity = capacity
        self._calls: OrderedDict[str, CallProgress] = OrderedDict()

    def get(self, external_id: str) -> CallProgress | None:
        return self._calls.get(external_id)

    def sending(self, external_id: str) -> CallProgress:
        """The call is about to be sent: from now on it is in doubt until acknowledged."""
        progress = self._calls.get(external_id)
        if progress is None:
            progress = self._calls[external_id] = CallProgress()
            while len(self._calls) > self._capacity:
                self._calls.popitem(last=False)
        self._calls.move_to_end(external_id)
        return progress

    def acknowledged(self, external_id: str) -> None:
        self.sending(external_id).acknowledged = True

    def refused(self, external_id: str) -> None:
        self._calls.pop(external_id, None)

    def known(self, external_id: str) -> bool:
        """Whether the CRM acknowledged this call before."""
        progress = self._calls.get(external_id)
        return progress is not None and progress.acknowledged

    def in_doubt(self, external_id: str) -> bool:
        """Sent, and neither acknowledged nor refused."""
        progress = self._calls.get(external_id)
        return progress is not None and not progress.acknowledged

    def needs_check(self, record: CallRecord) -> bool:
        """Whether the CRM must be asked if it has `record` before sending it."""
        if self.in_doubt(record.external_id):
            return True
        if self.known(record.external_id):
            return False
        ended = record.started_at.timestamp() + record.duration_s + record.waiting_s
        return self._now() - ended > self.check_after_s
