"""The AMI wire format, without I/O.

Everything about bytes on the AMI socket lives here: `AmiParser.feed()` takes whatever arrived
and returns the complete messages in it; `encode()` turns header pairs into bytes. The parser
never raises on input from the network and never loses a message that follows a bad one:

- frames are split on bytes, so a multibyte UTF-8 character cut between two reads is decoded
  whole (panoramisk decodes every read separately and drops such characters);
- a line without ``": "`` is counted as garbage and skipped;
- a frame larger than ``max_frame_bytes`` is dropped, and parsing resumes at the next blank line,
  so one huge value cannot make the process buffer without bound.

A message keeps its header lines in wire order (`Frame.fields`), duplicates included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import AmiLocalError

BANNER_PREFIX = "Asterisk Call Manager/"
EOL = b"\r\n"
DEFAULT_MAX_FRAME_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Banner:
    """The greeting line Asterisk sends on connect, e.g. ``Asterisk Call Manager/11.0.0``."""

    version: str


@dataclass(frozen=True, slots=True)
class Frame:
    """One AMI message: an event, a response or an action, with its headers in wire order."""

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The first value of header `key` (case-insensitive), or `default`."""
        low = key.lower()
        for k, v in self.fields:
            if k.lower() == low:
                return v
        return default

    def getall(self, key: str) -> list[str]:
        """Every value of header `key`, in order (e.g. several ``Variable`` lines)."""
        low = key.lower()
        return [v for k, v in self.fields if k.lower() == low]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.fields)

    @property
    def kind(self) -> str:
        """``"event"``, ``"response"``, ``"action"`` or ``"unknown"``, from the first header."""
        if not self.fields:
            return "unknown"
        first = self.fields[0][0].lower()
        return first if first in ("event", "response", "action") else "unknown"

    @property
    def name(self) -> str:
        """The event name, the response status or the action name."""
        return self.fields[0][1] if self.fields else ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def as_dict(self) -> dict[str, str]:
        """Headers as a dict; for repeated headers the first value wins."""
        out: dict[str, str] = {}
        for k, v in self.fields:
            out.setdefault(k, v)
        return out

    def encode(self) -> bytes:
        return encode(self.fields)

    @classmethod
    def of(cls, *pairs: tuple[str, str], **headers: str) -> Frame:
        """Build a frame from pairs and/or keyword headers (keywords keep their order)."""
        return cls(tuple(pairs) + tuple(headers.items()))


@dataclass(slots=True)
class ParserStatistics:
    frames: int = 0
    garbage_lines: int = 0
    oversize_frames: int = 0


@dataclass(slots=True)
class AmiParser:
    """Incremental AMI parser: `feed(bytes)` returns the messages completed by those bytes.

    `expect_banner` is true on the client side (Asterisk greets first); a server parsing the
    client's actions sets it to false.
    """

    expect_banner: bool = True
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    statistics: ParserStatistics = field(default_factory=ParserStatistics)
    _buffer: bytes = b""
    _fields: list[tuple[str, str]] = field(default_factory=list)
    _frame_bytes: int = 0
    _oversize: bool = False
    _skipping_line: bool = False

    def feed(self, data: bytes) -> list[Banner | Frame]:
        out: list[Banner | Frame] = []
        for line in self._lines(data):
            self._line(line, out)
        return out

    def _lines(self, data: bytes) -> Iterator[bytes]:
        buf = self._buffer + data if self._buffer else data
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if self._skipping_line:
                # the tail of a line that was already too long: drop it, keep the frame marked
                self._skipping_line = False
            else:
                yield buf[start:end]
            start = end + 1
        rest = buf[start:]
        if len(rest) > self.max_frame_bytes:
            # a line that never ends: stop buffering it, drop the frame it belongs to
            self._skipping_line = True
            self._oversize = True
            rest = b""
        self._buffer = rest

    def _line(self, raw: bytes, out: list[Banner | Frame]) -> None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            self._end_frame(out)
            return
        if self.expect_banner and not self._fields and raw.startswith(b"Asterisk Call Manager/"):
            text = raw.decode("utf-8", "replace")
            out.append(Banner(text[len(BANNER_PREFIX) :].strip()))
            return
        self._frame_bytes += len(raw) + 2
        if self._frame_bytes > self.max_frame_bytes:
            self._oversize = True
        if self._oversize:
            return
        text = raw.decode("utf-8", "replace")
        key, sep, value = text.partition(": ")
        if not sep:
            if text.endswith(":") and ":" not in text[:-1]:
                key, value = text[:-1], ""
            else:
                self.statistics.garbage_lines += 1
                return
        if not key or " " in key:
            self.statistics.garbage_lines += 1
            return
        self._fields.append((key, value))

    def _end_frame(self, out: list[Banner | Frame]) -> None:
        if self._oversize:
            self.statistics.oversize_frames += 1
        elif self._fields:
            self.statistics.frames += 1
            out.append(Frame(tuple(self._fields)))
        self._fields = []
        self._frame_bytes = 0
        self._oversize = False


def _check(text: str, what: str) -> str:
    if "\r" in text or "\n" in text:
        raise AmiLocalError(f"AMI header {what} {text[:40]!r} contains a line break")
    return text


def encode(fields: Iterable[tuple[str, str]]) -> bytes:
    """Serialise header pairs as one AMI message (``Key: Value`` lines and a blank line).

    A key or value containing CR or LF raises `AmiLocalError`: it would let text from an order
    (a customer's name, say) inject a second action into the stream.
    """
    parts: list[str] = []
    for key, value in fields:
        if not key or ":" in key:
            raise AmiLocalError(f"AMI header name {key!r} is empty or contains ':'")
        parts.append(f"{_check(key, 'name')}: {_check(str(value), 'value')}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8")


def encode_banner(version: str = "11.0.0") -> bytes:
    return f"{BANNER_PREFIX}{version}\r\n".encode()
