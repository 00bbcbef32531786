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

An inbound call (a customer dials the shop's number):

1. The trunk delivers it to ``CONTEXT_INBOUND`` with the dialled number as the extension; the
   dialplan answers, sets ``VAR_CALL`` to the channel's Uniqueid, emits ``USEREVENT_INBOUND``
   (``Call``, ``Caller`` = the caller's number, ``Number`` = the number dialled) and plays music
   on hold (``EXTEN_WAIT``). Every ``ANNOUNCE_EVERY_S`` seconds it announces ``VAR_POSITION``
   (the caller's place in line, set by the dialer with ``Setvar``) when that is set.
2. The dialer ``Redirect``s the caller to ``CONTEXT_CONNECT`` as for outbound; a failed connect
   returns the caller to music on hold (``VAR_RETURN`` names the context to go back to).
3. After the line's configured wait the dialer may ``Redirect`` the caller to
   ``EXTEN_CALLBACK_OFFER``: a prompt, one digit read; the dialplan emits
   ``USEREVENT_CALLBACK`` with ``Accepted`` = ``yes`` (digit 1: a short confirmation, then hang
   up) or ``no`` (anything else or nothing: back to music on hold).

A transfer: the dialer ``Redirect``s the customer to ``EXTEN_HOLD`` in ``CONTEXT_INBOUND``
(music on hold, a failed connect comes back there) and then connects them through
``CONTEXT_CONNECT`` to the colleague the ACD chose. An attended transfer first redirects the
operator's own channel (``ExtraChannel``) to ``CONTEXT_CONSULT`` with the colleague's endpoint
as the extension: the two talk while the customer holds; when the colleague's phone is not
answered or the consultation ends, the dialplan emits ``USEREVENT_CONSULT_ENDED`` (``Call``,
``DialStatus``) and the operator waits in silence; the dialer then ``Bridge``s the customer with
the colleague (complete) or with the operator again (cancel).
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
EXTEN_HOLD: Final = "hold"
EXTEN_CALLBACK_OFFER: Final = "callback-offer"
CONTEXT_CONSULT: Final = "obzvon-consult"
CONTEXT_SPY: Final = "obzvon-spy"
ANNOUNCE_EVERY_S: Final = 30

VAR_CALL: Final = "OBZVON_CALL"
VAR_SHOP: Final = "OBZVON_SHOP"
VAR_RING_TIMEOUT: Final = "OBZVON_RING_TIMEOUT"
VAR_SPY_MODE: Final = "OBZVON_SPY_MODE"  # listen (default) | whisper | barge
VAR_RETURN: Final = "OBZVON_RETURN"
VAR_POSITION: Final = "OBZVON_POSITION"

USEREVENT_ANSWERED: Final = "ObzvonAnswered"
USEREVENT_AMD: Final = "ObzvonAmd"
USEREVENT_CONNECT_FAILED: Final = "ObzvonConnectFailed"
USEREVENT_INBOUND: Final = "ObzvonInbound"
USEREVENT_CALLBACK: Final = "ObzvonCallback"
USEREVENT_CONSULT_ENDED: Final = "ObzvonConsultEnded"
