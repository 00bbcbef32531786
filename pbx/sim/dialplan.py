"""The contexts the simulator knows, as data, and the interpreter that runs channels through them.

Two sets of contexts:

- the golden captures' (``dialer``, ``dialer-connect``, ``dialer-connect-sip``,
  ``dialer-abandon``; ``sim-customer`` and ``sim-agent`` are the far ends, modelled in `legs`);
- obzvon's own, named in `pbx.dialplan` and written as in ``asterisk-conf/extensions.conf``:
  the answered customer waits in ``CONTEXT_OUTBOUND`` (after answering-machine detection with
  ``EXTEN_AMD``), is connected through ``CONTEXT_CONNECT``, hears the message in
  ``CONTEXT_ABANDON``; callers on the trunk enter ``CONTEXT_INBOUND`` and wait there on music
  with their place in line announced, as do customers put on hold (``EXTEN_HOLD``), and may be
  offered a call back (``EXTEN_CALLBACK_OFFER``); an operator consults a colleague through
  ``CONTEXT_CONSULT``; supervisors spy through ``CONTEXT_SPY``.

Substitution knows ``${VAR}``, ``${VAR:offset:length}``, ``${CALLERID(num)}`` /
``${CALLERID(name)}`` and ``$[...]`` expressions (`expr`); a step may carry a label for
``Goto`` / ``GotoIf``. A channel sent to an extension that does not exist, to a label that does
not, or that runs off the end of one, is hung up, as Asterisk does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pbx.dialplan import (
    ANNOUNCE_EVERY_S,
    CONTEXT_ABANDON,
    CONTEXT_CONNECT,
    CONTEXT_CONSULT,
    CONTEXT_INBOUND,
    CONTEXT_OUTBOUND,
    CONTEXT_SPY,
    EXTEN_ABANDON,
    EXTEN_AMD,
    EXTEN_ANSWERED,
    EXTEN_CALLBACK_OFFER,
    EXTEN_HOLD,
    EXTEN_WAIT,
    USEREVENT_AMD,
    USEREVENT_ANSWERED,
    USEREVENT_CALLBACK,
    USEREVENT_CONNECT_FAILED,
    USEREVENT_CONSULT_ENDED,
    USEREVENT_INBOUND,
    VAR_CALL,
    VAR_POSITION,
    VAR_RETURN,
    VAR_RING_TIMEOUT,
)

from . import hangup as hangups
from .apps import STOP, SYNC_APPS, Jump, blocking_app
from .channel import UNKNOWN, Channel
from .expr import evaluate
from .switch import Switch


@dataclass(frozen=True, slots=True)
class Step:
    """One priority: an application and its argument, with ``${VAR}`` substituted from the
    channel's variables (`defaults` when unset), and an optional `label` to jump to."""

    app: str
    data: str = ""
    defaults: tuple[tuple[str, str], ...] = ()
    label: str = ""


WAIT_S: Final = 3600
"""How long an answered customer is held in silence before the dialplan gives up."""
RING_TIMEOUT_S: Final = 15
WAIT_ROUNDS: Final = 15 * 60 // ANNOUNCE_EVERY_S
"""Rounds of music (`ANNOUNCE_EVERY_S` each) before a waiting caller is given up: 15 minutes."""
CONSULT_WAIT_S: Final = 120
"""How long an operator whose consultation ended waits for the dialer in silence."""

_CALL = f"Call: ${{{VAR_CALL}}}"
_POSITION = f"${{{VAR_POSITION}}}"
_RING = (VAR_RING_TIMEOUT, str(RING_TIMEOUT_S))
ENDPOINT: Final = "_[A-Za-z0-9]."
"""The extension pattern of contexts that take an endpoint name (1001, ivanova)."""

CONTEXTS: Final[dict[str, dict[str, tuple[Step, ...]]]] = {
    "dialer": {
        "answered": (
            Step("UserEvent", "DialerAnswered,Lead: ${LEAD}"),
            Step("Wait", "30"),
            Step("Hangup"),
        ),
    },
    "dialer-connect": {
        "_X.": (Step("Dial", "Local/${EXTEN}@sim-agent"), Step("Hangup")),
    },
    "dialer-connect-sip": {
        "_X.": (Step("Dial", "PJSIP/${EXTEN},15"), Step("Hangup")),
    },
    "dialer-abandon": {
        "s": (
            Step("NoOp", "abandoned: no operator free within 2 seconds"),
            Step("Wait", "1"),
            Step("Hangup"),
        ),
    },
    CONTEXT_OUTBOUND: {
        EXTEN_ANSWERED: (
            Step("UserEvent", f"{USEREVENT_ANSWERED},{_CALL}"),
            Step("Goto", f"{EXTEN_WAIT},1"),
        ),
        EXTEN_AMD: (
            Step("AMD"),
            Step("UserEvent", f"{USEREVENT_AMD},{_CALL},Status: ${{AMDSTATUS}}"),
            Step("Goto", f"{EXTEN_ANSWERED},1"),
        ),
        EXTEN_WAIT: (Step("Wait", str(WAIT_S)), Step("Hangup")),
    },
    CONTEXT_CONNECT: {
        ENDPOINT: (
            Step("Set", f"__{VAR_CALL}=${{{VAR_CALL}}}"),
            Step("Dial", f"PJSIP/${{EXTEN}},${{{VAR_RING_TIMEOUT}}}", defaults=(_RING,)),
            Step("UserEvent", f"{USEREVENT_CONNECT_FAILED},{_CALL},DialStatus: ${{DIALSTATUS}}"),
            Step(
                "Goto",
                f"${{{VAR_RETURN}}},{EXTEN_WAIT},1",
                defaults=((VAR_RETURN, CONTEXT_OUTBOUND),),
            ),
        ),
    },
    CONTEXT_ABANDON: {
        EXTEN_ABANDON: (Step("Playback", "obzvon/abandoned"), Step("Hangup")),
    },
    CONTEXT_INBOUND: {
        "_X.": (
            Step("Set", f"{VAR_CALL}=${{UNIQUEID}}"),
            Step("Set", f"{VAR_RETURN}={CONTEXT_INBOUND}"),
            Step("Answer"),
            Step(
                "UserEvent",
                f"{USEREVENT_INBOUND},{_CALL},Caller: ${{CALLERID(num)}},Number: ${{EXTEN}}",
            ),
            Step("Goto", f"{EXTEN_WAIT},1"),
        ),
        "_+X.": (Step("Goto", "${EXTEN:1},1"),),
        EXTEN_WAIT: (
            Step("Set", "ROUNDS=0"),
            Step("MusicOnHold", f"default,{ANNOUNCE_EVERY_S}", label="loop"),
            Step("Set", "ROUNDS=$[${ROUNDS} + 1]"),
            Step("GotoIf", f"$[${{ROUNDS}} >= {WAIT_ROUNDS}]?gone"),
            Step("GotoIf", f'$["{_POSITION}" = ""]?loop'),
            Step("GotoIf", f'$["{_POSITION}" = "1"]?first'),
            Step("Playback", "queue-thereare"),
            Step("SayNumber", _POSITION),
            Step("Playback", "queue-callswaiting"),
            Step("Goto", "loop"),
            Step("Playback", "queue-youarenext", label="first"),
            Step("Goto", "loop"),
            Step("Goto", f"{CONTEXT_ABANDON},{EXTEN_ABANDON},1", label="gone"),
        ),
        EXTEN_HOLD: (
            Step("Set", f"{VAR_RETURN}={CONTEXT_INBOUND}"),
            Step("Goto", f"{EXTEN_WAIT},1"),
        ),
        EXTEN_CALLBACK_OFFER: (
            Step("Read", "OFFER,obzvon/callback-offer,1,,1,5"),
            Step("GotoIf", '$["${OFFER}" = "1"]?booked'),
            Step("UserEvent", f"{USEREVENT_CALLBACK},{_CALL},Accepted: no"),
            Step("Goto", f"{EXTEN_WAIT},1"),
            Step("UserEvent", f"{USEREVENT_CALLBACK},{_CALL},Accepted: yes", label="booked"),
            Step("Playback", "obzvon/callback-booked"),
            Step("Hangup"),
        ),
    },
    CONTEXT_CONSULT: {
        ENDPOINT: (
            Step("Dial", f"PJSIP/${{EXTEN}},${{{VAR_RING_TIMEOUT}}},g", defaults=(_RING,)),
            Step("UserEvent", f"{USEREVENT_CONSULT_ENDED},{_CALL},DialStatus: ${{DIALSTATUS}}"),
            Step("Wait", str(CONSULT_WAIT_S)),
            Step("Hangup"),
        ),
    },
    CONTEXT_SPY: {
        ENDPOINT: (Step("ChanSpy", "PJSIP/${EXTEN}-,q"), Step("Hangup")),
    },
}

_PATTERN_CHARS: Final = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}


def _pattern(pattern: str) -> re.Pattern[str]:
    """An Asterisk ``_`` pattern as a regex: X Z N, ``.`` and ``!``, ``[...]`` sets."""
    out = []
    body = pattern[1:]
    i = 0
    while i < len(body):
        char = body[i]
        end = body.find("]", i) if char == "[" else -1
        if end > i:
            members = body[i + 1 : end]
            out.append("[" + "".join(c if c == "-" else re.escape(c) for c in members) + "]")
            i = end + 1
            continue
        out.append(_PATTERN_CHARS.get(char, re.escape(char)))
        i += 1
    return re.compile("".join(out))


def lookup(context: str, exten: str) -> tuple[Step, ...] | None:
    """The steps of `exten` in `context`: an exact extension first, then ``_`` patterns."""
    extens = CONTEXTS.get(context)
    if extens is None:
        return None
    if exten in extens:
        return extens[exten]
    for pattern, steps in extens.items():
        if pattern.startswith("_") and _pattern(pattern).fullmatch(exten):
            return steps
    return None


def exists(context: str, exten: str) -> bool:
    return lookup(context, exten) is not None


_VAR = re.compile(r"\$\{([A-Za-z0-9_]+(?:\([A-Za-z]*\))?)(?::(-?\d+)(?::(-?\d+))?)?\}")
_EXPR = re.compile(r"\$\[([^\[\]]*)\]")


def substitute(text: str, ch: Channel, defaults: tuple[tuple[str, str], ...] = ()) -> str:
    """`text` with its ``$[...]`` expressions evaluated (variables inside them replaced first)
    and its variables replaced; a variable's value is taken as it is, never evaluated."""
    fallback = dict(defaults)

    def value(m: re.Match[str]) -> str:
        name, offset, length = m.groups()
        found = _value(name, ch) or fallback.get(name, "")
        if offset is None:
            return found
        start = int(offset) if int(offset) >= 0 else max(0, len(found) + int(offset))
        rest = found[start:]
        return rest if length is None else rest[: int(length)]

    return _VAR.sub(value, _EXPR.sub(lambda m: evaluate(_VAR.sub(value, m.group(1))), text))


def _value(name: str, ch: Channel) -> str:
    if name == "EXTEN":
        return ch.exten
    if name == "CHANNEL":
        return ch.name
    if name == "UNIQUEID":
        return ch.uniqueid
    if name == "CALLERID(num)":
        return "" if ch.caller.num == UNKNOWN.num else ch.caller.num
    if name == "CALLERID(name)":
        return "" if ch.caller.name == UNKNOWN.name else ch.caller.name
    return ch.variables.get(name, "")


def _labelled(context: str, exten: str, label: str) -> int | None:
    steps = lookup(context, exten) or ()
    return next((i + 1 for i, step in enumerate(steps) if step.label == label), None)


def start(sw: Switch, ch: Channel, context: str, exten: str, priority: int = 1) -> None:
    """Send `ch` to ``context,exten,priority`` and run it from there."""
    ch.goto(context, exten, priority)
    run(sw, ch)


def run(sw: Switch, ch: Channel) -> None:
    """Run `ch` from where it is: synchronous steps now, the first blocking one in its task."""
    while not ch.hanging:
        steps = lookup(ch.context, ch.exten)
        if steps is None or not 1 <= ch.priority <= len(steps):
            hangups.hangup(sw, ch, 16, "soft")
            return
        step = steps[ch.priority - 1]
        data = substitute(step.data, ch, step.defaults)
        ch.app, ch.appdata = step.app, data
        sync = SYNC_APPS.get(step.app)
        if sync is None:
            ch.task = sw.spawn(_blocking(sw, ch, step.app, data), name=f"{ch.name} {step.app}")
            return
        if not _advance(sw, ch, sync(sw, ch, data)):
            return


def _advance(sw: Switch, ch: Channel, result: Jump | object | None) -> bool:
    if result is STOP:
        hangups.hangup(sw, ch, 16, "soft")
        return False
    if isinstance(result, Jump):
        context, exten = result.context or ch.context, result.exten or ch.exten
        priority = result.priority
        if isinstance(priority, str):
            found = _labelled(context, exten, priority)
            if found is None:
                hangups.hangup(sw, ch, 16, "soft")
                return False
            priority = found
        ch.goto(context, exten, priority)
    else:
        ch.priority += 1
    return True


async def _blocking(sw: Switch, ch: Channel, app: str, data: str) -> None:
    result = await blocking_app(app)(sw, ch, data)
    if ch.hanging:
        return
    ch.task = None
    if _advance(sw, ch, result):
        run(sw, ch)


def run_application(sw: Switch, ch: Channel, app: str, data: str) -> None:
    """An application Originate: the answered channel runs `app` and hangs up after it."""
    ch.at(1, app, data)
    ch.task = sw.spawn(_application(sw, ch, app, data), name=f"{ch.name} {app}")


async def _application(sw: Switch, ch: Channel, app: str, data: str) -> None:
    await blocking_app(app)(sw, ch, data)
    if not ch.hanging:
        ch.task = None
        hangups.hangup(sw, ch, 16, "soft")


def redirect(sw: Switch, moves: list[tuple[Channel, str, str, int]]) -> None:
    """Move channels elsewhere (Redirect, with ExtraChannel for two): each stops what it runs
    and leaves its bridge; a party left alone in a bridge hangs up (or goes on, when it dialled
    with ``g``); then each runs its target."""
    moving = {id(ch) for ch, *_ in moves}
    for ch, *_ in moves:
        hangups.interrupt(sw, ch)
    for ch, *_ in moves:
        bridge = sw.leave(ch, staying=True)
        if bridge is not None and not any(id(c) in moving for c in bridge.channels):
            hangups.kick(sw, bridge)
    for ch, context, exten, priority in moves:
        if not ch.hanging:
            start(sw, ch, context, exten, priority)
