"""Reader for the golden AMI transcripts in tests/fixtures/ami-golden (format in its README).

Each transcript is a list of `Step`s: what the client sent (``">>>"``) or one message Asterisk
sent (``"<<<"``), with the time since connect and the raw text with CRLF line ends restored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "fixtures" / "ami-golden"
SCENARIOS = sorted(p.stem for p in GOLDEN_DIR.glob("*.ami"))

_HEADER = re.compile(r"^# (>>>|<<<) t=([0-9.]+)$")


@dataclass(frozen=True)
class Step:
    direction: str  # ">>>" client to Asterisk, "<<<" Asterisk to client
    t: float
    raw: bytes  # exactly as on the wire: CRLF line ends, a blank line after a message


def load(name: str) -> list[Step]:
    steps: list[Step] = []
    direction, t, lines = "", 0.0, []  # type: ignore[var-annotated]

    def flush() -> None:
        if not direction:
            return
        while lines and lines[-1] == "":
            lines.pop()
        if len(lines) == 1 and lines[0].startswith("Asterisk Call Manager/"):
            raw = lines[0] + "\r\n"
        else:
            raw = "".join(line + "\r\n" for line in lines) + "\r\n"
        steps.append(Step(direction, t, raw.encode()))

    for line in (GOLDEN_DIR / f"{name}.ami").read_text().split("\n"):
        m = _HEADER.match(line)
        if m:
            flush()
            direction, t, lines = m.group(1), float(m.group(2)), []
        elif direction:
            lines.append(line)
    flush()
    return steps


def received(name: str) -> bytes:
    """Everything Asterisk sent in the transcript, concatenated as one byte stream."""
    return b"".join(s.raw for s in load(name) if s.direction == "<<<")
