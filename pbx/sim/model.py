"""Who answers, how long phones ring, how long people talk: the simulator's call model.

Every outgoing leg the simulator places gets one `FarEnd`: what the person (or the phone) at the
other end will do. It comes from, in order of precedence:

1. a `NumberScript` set for that number (customers) or an `OperatorScript` (operators);
2. for ``Local/<number>@sim-customer`` without a script, the rule of the golden dialplan (the last
   digit decides: 1 busy, 2 no answer, 3 congestion, else answer after 2 s and talk 20 s);
3. the `CallModel`, drawn from a random generator seeded by the simulator's seed and the
   number, so the same seed gives the same draws whatever order calls are placed in.

A script's fields left as None take the model's typical (median) value rather than a random draw,
and a scripted customer never hangs up on their own unless told to: a scripted number behaves the
same on every run.
"""

from __future__ import annotations

import math
import random
from dataclasses import KW_ONLY, dataclass
from typing import Final, Literal

Outcome = Literal["answer", "busy", "no_answer", "congestion", "fail"]
AmdStatus = Literal["HUMAN", "MACHINE", "NOTSURE"]

OUTCOMES: Final[tuple[Outcome, ...]] = ("answer", "busy", "no_answer", "congestion", "fail")
AMD_STATUSES: Final[tuple[AmdStatus, ...]] = ("HUMAN", "MACHINE", "NOTSURE")


def _non_negative(value: float | None, what: str) -> None:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{what} must be a finite number >= 0, not {value!r}")


def _share(value: float, what: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be between 0 and 1, not {value!r}")


@dataclass(frozen=True, slots=True)
class NumberScript:
    """What one customer number does when called, overriding the model.

    `ring_s`: seconds before the outcome (answer, busy, congestion); ``no_answer`` rings until the
    caller gives up. `talk_s`: once answered, the customer hangs up after this long, connected or
    not. `hangup_while_waiting_s`: once answered, the customer hangs up after this long unless
    talking to an operator by then. `amd`: what answering-machine detection reports.
    """

    outcome: Outcome
    _: KW_ONLY
    ring_s: float | None = None
    talk_s: float | None = None
    hangup_while_waiting_s: float | None = None
    amd: AmdStatus | None = None

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}")
        if self.amd is not None and self.amd not in AMD_STATUSES:
            raise ValueError(f"amd must be one of {', '.join(AMD_STATUSES)}, not {self.amd!r}")
        _non_negative(self.ring_s, "ring_s")
        _non_negative(self.talk_s, "talk_s")
        _non_negative(self.hangup_while_waiting_s, "hangup_while_waiting_s")


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorScript:
    """An operator's softphone: rings `ring_s`, answers (unless `answer` is false), talks `talk_s`
    and hangs up. None draws the value from the model on every call. An unregistered endpoint
    cannot be dialled (``CHANUNAVAIL``)."""

    ring_s: float | None = None
    answer: bool = True
    talk_s: float | None = None
    registered: bool = True

    def __post_init__(self) -> None:
        _non_negative(self.ring_s, "ring_s")
        _non_negative(self.talk_s, "talk_s")


@dataclass(frozen=True, slots=True)
class FarEnd:
    """What the far end of one outgoing leg will do, decided when the leg is placed.

    `ring_s` is the time before the outcome; `talk_s` (hang up that long after answering, None:
    never on their own) and `patience_s` (hang up that long after answering unless bridged) only
    matter once answered. `keypress` is what the person keys in when a prompt asks (``Read``);
    empty: nothing.
    """

    outcome: Outcome
    ring_s: float = 0.0
    talk_s: float | None = None
    patience_s: float | None = None
    amd: AmdStatus = "HUMAN"
    keypress: str = ""


def golden_customer(number: str) -> FarEnd:
    """The ``sim-customer`` context of the golden captures: the number's last digit decides."""
    last = number[-1:]
    if last == "1":
        return FarEnd("busy")
    if last == "2":
        return FarEnd("no_answer")
    if last == "3":
        return FarEnd("congestion")
    return FarEnd("answer", ring_s=2.0, talk_s=20.0)


GOLDEN_AGENT: Final = FarEnd("answer", ring_s=0.0, talk_s=15.0)
"""The ``sim-agent`` context of the golden captures: answers at once, talks 15 s."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallModel:
    """How customers and operators behave, as distributions.

    A customer answers with probability `answer_rate` after a lognormal ring time (median
    `ring_median_s`); otherwise the call is busy, unanswered or congested in the proportions of
    the three shares. `fail_rate` of calls fail outright (the trunk refuses them). An answered
    customer hangs up while waiting for an operator after a lognormal patience (None: never) and
    answering-machine detection reports MACHINE / NOTSURE at the given rates. Operators ring for
    a lognormal time and talk for a lognormal time.
    """

    answer_rate: float = 0.6
    busy_share: float = 0.5
    no_answer_share: float = 0.35
    congestion_share: float = 0.15
    fail_rate: float = 0.0
    ring_median_s: float = 8.0
    ring_sigma: float = 0.5
    busy_after_s: float = 3.0
    congestion_after_s: float = 0.5
    patience_median_s: float | None = 30.0
    patience_sigma: float = 0.6
    machine_rate: float = 0.1
    notsure_rate: float = 0.03
    amd_s: float = 2.5
    operator_ring_median_s: float = 3.0
    operator_ring_sigma: float = 0.4
    operator_talk_median_s: float = 120.0
    operator_talk_sigma: float = 0.5

    def __post_init__(self) -> None:
        for name in ("answer_rate", "fail_rate", "machine_rate", "notsure_rate"):
            _share(getattr(self, name), name)
        if self.machine_rate + self.notsure_rate > 1.0:
            raise ValueError("machine_rate + notsure_rate must not exceed 1")
        shares = (self.busy_share, self.no_answer_share, self.congestion_share)
        if min(shares) < 0 or sum(shares) <= 0:
            raise ValueError("busy, no-answer and congestion shares must be >= 0, not all 0")
        for name in (
            "ring_median_s",
            "busy_after_s",
            "congestion_after_s",
            "patience_median_s",
            "amd_s",
            "operator_ring_median_s",
            "operator_talk_median_s",
            "ring_sigma",
            "patience_sigma",
            "operator_ring_sigma",
            "operator_talk_sigma",
        ):
            _non_negative(getattr(self, name), name)

    def customer(self, rng: random.Random) -> FarEnd:
        """Draw what one customer does; the same generator state gives the same answer."""
        # every draw is taken whatever the outcome, so one number's later draws do not depend
        # on which branch an earlier call took
        u_fail, u_answer, u_kind, u_amd = (rng.random() for _ in range(4))
        ring = _lognormal(rng, self.ring_median_s, self.ring_sigma)
        patience = (
            _lognormal(rng, self.patience_median_s, self.patience_sigma)
            if self.patience_median_s is not None
            else None
        )
        if u_fail < self.fail_rate:
            return FarEnd("fail")
        if u_answer < self.answer_rate:
            amd: AmdStatus = "HUMAN"
            if u_amd < self.machine_rate:
                amd = "MACHINE"
            elif u_amd < self.machine_rate + self.notsure_rate:
                amd = "NOTSURE"
            return FarEnd("answer", ring_s=ring, patience_s=patience, amd=amd)
        total = self.busy_share + self.no_answer_share + self.congestion_share
        pick = u_kind * total
        if pick < self.busy_share:
            return FarEnd("busy", ring_s=self.busy_after_s)
        if pick < self.busy_share + self.no_answer_share:
            return FarEnd("no_answer", ring_s=ring)
        return FarEnd("congestion", ring_s=self.congestion_after_s)

    def scripted_customer(self, script: NumberScript) -> FarEnd:
        """The far end a `NumberScript` describes, gaps filled with the model's typical values."""
        ring = script.ring_s
        if ring is None:
            ring = {
                "busy": self.busy_after_s,
                "congestion": self.congestion_after_s,
                "fail": 0.0,
            }.get(script.outcome, self.ring_median_s)
        return FarEnd(
            script.outcome,
            ring_s=ring,
            talk_s=script.talk_s,
            patience_s=script.hangup_while_waiting_s,
            amd=script.amd or "HUMAN",
        )

    def operator(self, rng: random.Random, script: OperatorScript | None = None) -> FarEnd:
        """What an operator's softphone does on one call (`script` fields first)."""
        ring = _lognormal(rng, self.operator_ring_median_s, self.operator_ring_sigma)
        talk = _lognormal(rng, self.operator_talk_median_s, self.operator_talk_sigma)
        if script is not None:
            if not script.registered:
                return FarEnd("fail")
            ring = script.ring_s if script.ring_s is not None else ring
            talk = script.talk_s if script.talk_s is not None else talk
            if not script.answer:
                return FarEnd("no_answer", ring_s=ring)
        return FarEnd("answer", ring_s=ring, talk_s=talk)


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    if median <= 0:
        return 0.0
    return rng.lognormvariate(math.log(median), sigma)


def seeded_rng(seed: int, *keys: str) -> random.Random:
    """A generator for one purpose (e.g. the 3rd call to one number), independent of the rest."""
    # string seeds are hashed with SHA-512 by `random`, stable across runs and PYTHONHASHSEED
    return random.Random("\x1f".join((str(seed), *keys)))
