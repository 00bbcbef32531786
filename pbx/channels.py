"""Which live channels belong to which call, without I/O.

A call is known by the ChannelId obzvon chose for its Originate (see `pbx.commands.Originate`).
Asterisk gives that id back in three ways, and these are the only ones used here:

- the channel created by the Originate (``;1`` of a Local channel, or the PJSIP channel) has
  ``Uniqueid == ChannelId``;
- the ``;2`` half of that Local channel has ``Uniqueid == ChannelId + ";2"``;
- every channel dialled from the call afterwards (the operator's leg) has
  ``Linkedid == ChannelId``.

What a caller may rely on: `call_of()` answers for a call from `track()` until `forget()`,
whether or not it still has channels; `on_event()` keeps each call's live channels from
``Newchannel`` and ``Hangup``; `resync()` replaces them with what ``CoreShowChannels`` listed
after a reconnect and says which calls survived the outage and which ended unseen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .events import AmiEvent, ChannelEvent, DialEvent, Hangup, Newchannel, OriginateResponse

LOCAL_SECOND_HALF = ";2"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResyncReport:
    """`survived`: tracked calls with channels alive after the outage. `lost`: calls that had
    live channels before it and have none now (they ended while the link was down)."""

    survived: frozenset[str]
    lost: frozenset[str]


class ChannelTracker:
    """Live channels per call (Uniqueid → channel name), fed with typed events."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[str, str]] = {}

    def track(self, call_id: str, channel: str | None = None) -> None:
        """Start following `call_id` (the ChannelId), before its Originate is sent; or, with
        `channel`, a call that is already up on that channel (an inbound caller, whose
        Uniqueid is the call id)."""
        channels = self._calls.setdefault(call_id, {})
        if channel:
            channels[call_id] = channel

    def forget(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    def call_of(self, event: AmiEvent) -> str | None:
        """The tracked call `event` belongs to, or ``None``."""
        if isinstance(event, ChannelEvent):
            found = self._by_ids(event.uniqueid, event.linkedid)
            if found is None and isinstance(event, DialEvent):
                found = self._by_ids(event.dest_uniqueid, event.dest_linkedid)
            return found
        if isinstance(event, OriginateResponse):
            return self._by_ids(event.uniqueid, "")
        return None

    def on_event(self, event: AmiEvent) -> str | None:
        """Update the live channels; returns the call the event belongs to, or ``None``."""
        call = self.call_of(event)
        if call is None or not isinstance(event, ChannelEvent) or not event.uniqueid:
            return call
        channels = self._calls[call]
        if isinstance(event, Newchannel):
            channels[event.uniqueid] = event.channel
        elif isinstance(event, Hangup):
            channels.pop(event.uniqueid, None)
        elif event.uniqueid in channels and event.channel:
            channels[event.uniqueid] = event.channel  # renamed (masquerade), keep it current
        return call

    def customer_channel(self, call_id: str) -> str | None:
        """The channel whose Uniqueid is the call id (the customer's), if it is live."""
        return self._calls.get(call_id, {}).get(call_id)

    def channels_of(self, call_id: str) -> frozenset[str]:
        """Names of the call's live channels (empty for an unknown or finished call)."""
        return frozenset(self._calls.get(call_id, {}).values())

    def live_calls(self) -> frozenset[str]:
        """Tracked calls with at least one live channel."""
        return frozenset(call for call, chans in self._calls.items() if chans)

    def tracked(self) -> frozenset[str]:
        return frozenset(self._calls)

    def resync(self, channels: Iterable[ChannelEvent]) -> ResyncReport:
        """Replace every call's live channels with `channels` (the CoreShowChannel list).

        A tracked call with no channel before the outage (its Originate not yet answered by a
        Newchannel) is reported only if it has channels now, as survived.
        """
        was_live = self.live_calls()
        fresh: dict[str, dict[str, str]] = {call: {} for call in self._calls}
        for ch in channels:
            call = self.call_of(ch)
            if call is not None and ch.uniqueid:
                fresh[call][ch.uniqueid] = ch.channel
        self._calls = fresh
        now_live = self.live_calls()
        return ResyncReport(survived=now_live, lost=was_live - now_live)

    def _by_ids(self, uniqueid: str, linkedid: str) -> str | None:
        if uniqueid:
            if uniqueid in self._calls:
                return uniqueid
            base = uniqueid.removesuffix(LOCAL_SECOND_HALF)
            if base != uniqueid and base in self._calls:
                return base
        if linkedid and linkedid in self._calls:
            return linkedid
        return None
