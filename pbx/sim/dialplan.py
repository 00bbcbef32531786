"""The contexts the simulator knows, as data, and the interpreter that runs channels through them.

Two sets of contexts:

- the golden captures' (``dialer``, ``dialer-connect``, ``dialer-connect-sip``,
  ``dialer-abandon``; ``sim-customer`` and ``sim-agent`` are the far ends, modelled in `legs`);
- obzvon's own, named in `pbx.dialplan`: the answered customer waits in ``CONTEXT_OUTBOUND``
  (after answering-machine detection with ``EXTEN_AMD``), is connected through
  ``CONTEXT_CONNECT``, hears the message in ``CONTEXT_ABANDON``; supervisors spy through
  ``CONTEXT_SPY``.

A channel sent to an extension that does not exist, or that runs off the end of one, is hung up,
as Asterisk does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from pbx.dialplan import (
    CONTEXT_ABANDON,
    CONTEXT_CONNECT,
    CONTEXT_OUTBOUND,
    CONTEXT_SPY,
    EXTEN_ABANDON,
    EXTEN_AMD,
    EXTEN_ANSWERED,
    EXTEN_WAIT,
    USEREVENT_AMD,
    USEREVENT_ANSWERED,
    USEREVENT_CONNECT_FAILED,
    VAR_CALL,
    VAR_RING_TIMEOUT,
)

from . import hangup as hangups
from .apps import STOP, SYNC_APPS, Jump, blocking_app
from .channel import Channel
from .switch import Switch


@dataclass(frozen=True, slots=True)
class Step:
    """One priority: an application and its argument, with ``${VAR}`` substituted from the
    channel's variables (`defaults` when unset)."""

    app: str
    data: str = ""
    defaults: tuple[tuple[str, str], ...] = ()


WAIT_S: Final = 3600
"""How long an answered customer is held in silence before the dialplan gives up."""
RING_TIMEOUT_S: Final = 15

_CALL = f"Call: ${{{VAR_CALL}}}"

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
        "_X.": (
            Step(
                "Dial",
                f"PJSIP/${{EXTEN}},${{{VAR_RING_TIMEOUT}}}",
                defaults=((VAR_RING_TIMEOUT, str(RING_TIMEOUT_S)),),
            ),
            Step("UserEvent", f"{USEREVENT_CONNECT_FAILED},{_CALL},DialStatus: ${{DIALSTATUS}}"),
            Step("Goto", f"{CONTEXT_OUTBOUND},{EXTEN_WAIT},1"),
        ),
    },
    CONTEXT_ABANDON: {
        EXTEN_ABANDON: (Step("Playback", "obzvon/abandoned"), Step("Hangup")),
    },
    CONTEXT_SPY: {
        "_X.": (Step("ChanSpy", "PJSIP/${EXTEN}-,q"), Step("Hangup")),
    },
}


def _pattern(pattern: str) -> re.Pattern[str]:
    out = []
    for char in pattern[1:]:
        out.append(
            {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(
                char, re.escape(char)
            )
        )
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


_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def substitute(text: str, ch: Channel, defaults: tuple[tuple[str, str], ...] = ()) -> str:
    fallback = dict(defaults)

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "EXTEN":
            return ch.exten
        if name == "CHANNEL":
            return ch.name
        if name == "UNIQUEID":
            return ch.uniqueid
        return ch.variables.get(name) or fallback.get(name, "")

    return _VAR.sub(value, text)


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
        ch.goto(result.context or ch.context, result.exten or ch.exten, result.priority)
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
    and leaves its bridge; a party left alone in a bridge hangs up; then each runs its target."""
    moving = {id(ch) for ch, *_ in moves}
    for ch, *_ in moves:
        if ch.task is not None:
            ch.task.cancel()
            ch.task = None
        hangups.abort_dial(sw, ch)
    for ch, *_ in moves:
        bridge = sw.leave(ch, staying=True)
        if bridge is not None and not any(id(c) in moving for c in bridge.channels):
            hangups.kick(sw, bridge)
    for ch, context, exten, priority in moves:
        if not ch.hanging:
            start(sw, ch, context, exten, priority)
