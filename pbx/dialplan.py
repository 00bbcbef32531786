"""Names shared by the dialplan in `asterisk-conf/extensions.conf`, `pbx/sim` and the dialer.

Defined once here; a test checks that `asterisk-conf/extensions.conf` uses exactly these. The
flow of an outbound call:

1. ``Originate`` the customer (``PJSIP/<number>@<trunk>``) with ``Context: CONTEXT_OUTBOUND``,
   ``Exten: EXTEN_ANSWERED`` (or ``EXTEN_AMD`` to run answering-machine detection first) and
   the variable ``VAR_CALL`` set to the call's ChannelId.
2. On answer the dialplan emits ``UserEvent: USEREVENT_ANSWERED`` (with ``AMD`` first:
   ``USEREVENT_AMD`` carrying ``Status`` = HUMAN / MACHINE / NOTSURE) and waits in silence.
3. The dialer ``Redirect``s the channel to ``CONTEXT_CONNECT`` with the operator's endpoint
   name as the extension (``Dial(PJSIP/<endpoint>)``); if the operator does not answer the
   dialplan emits ``USEREVENT_CONNECT_FAILED`` and returns the customer to waiting.
4. Or, when no operator is free within the connect budget, to ``CONTEXT_ABANDON`` (a short
   message naming the shop, then hang up).
"""

from __future__ import annotations

from typing import Final

CONTEXT_OUTBOUND: Final = "obzvon-outbound"
EXTEN_ANSWERED: Final = "answered"
EXTEN_AMD: Final = "amd"
EXTEN_WAIT: Final = "wait"
CONTEXT_CONNECT: Final = "obzvon-connect"
CONTEXT_ABANDON: Final = "obzvon-abandon"
EXTEN_ABANDON: Final = "s"
CONTEXT_INBOUND: Final = "obzvon-inbound"
CONTEXT_SPY: Final = "obzvon-spy"

VAR_CALL: Final = "OBZVON_CALL"
VAR_SHOP: Final = "OBZVON_SHOP"
VAR_RING_TIMEOUT: Final = "OBZVON_RING_TIMEOUT"
VAR_SPY_MODE: Final = "OBZVON_SPY_MODE"  # listen (default) | whisper | barge

USEREVENT_ANSWERED: Final = "ObzvonAnswered"
USEREVENT_AMD: Final = "ObzvonAmd"
USEREVENT_CONNECT_FAILED: Final = "ObzvonConnectFailed"
USEREVENT_INBOUND: Final = "ObzvonInbound"
