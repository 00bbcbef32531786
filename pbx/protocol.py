"""The AMI wire format, without I/O.

Everything about bytes on the AMI socket lives here: `AmiParser.feed()` takes whatever arrived
and returns the complete messages in it; `encode()` turns header pairs into bytes. The parser
never raises on input from the network and never loses a message that follows a bad one:

- frames are split on bytes (at the blank line ending each message) and each is decoded once,
  so a multibyte UTF-8 character cut between two reads comes out whole (panoramisk decodes
  every read separately and drops such characters);
- a line without ``": "`` is counted as garbage and skipped;
- a frame larger than ``max_frame_bytes`` is dropped, and parsing resumes at the next blank line,
  so one huge value cannot make the process buffer without bound.

A message keeps its header lines in wire order (`Frame.fields`), duplicates included.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    client's actions sets it to false. Messages end with an empty line (``CRLF CRLF``); each
    complete message is decoded once, so the cost is per message, not per read.
    """

    expect_banner: bool = True
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    statistics: ParserStatistics = field(default_factory=ParserStatistics)
    _buffer: bytes = b""
    _skipping: bool = False  # inside a frame that grew past max_frame_bytes

    def feed(self, data: bytes) -> list[Banner | Frame]:
        out: list[Banner | Frame] = []
        buf = self._buffer + data if self._buffer else data
        if self.expect_banner and buf:
            if len(buf) < len(_BANNER) and _BANNER.startswith(buf):
                self._buffer = buf  # maybe a banner, not yet complete
                return out
            if buf.startswith(_BANNER):
                eol = buf.find(b"\n")
                if eol < 0:
                    self._buffer = buf
                    return out
                text = buf[len(_BANNER) : eol].decode("utf-8", "replace")
                out.append(Banner(text.strip()))
                buf = buf[eol + 1 :]
            self.expect_banner = False
        start = 0
        while True:
            end = buf.find(_FRAME_END, start)
            if end < 0:
                break
            chunk = buf[start:end]
            start = end + 4
            if self._skipping:
                # the tail of a frame that was too large: drop it whole
                self._skipping = False
                self.statistics.oversize_frames += 1
                continue
            if len(chunk) > self.max_frame_bytes:
                self.statistics.oversize_frames += 1
                continue
            frame = self._frame(chunk)
            if frame is not None:
                out.append(frame)
        rest = buf[start:]
        if len(rest) > self.max_frame_bytes:
            # a frame that never ends: stop buffering it, drop it when its end comes
            self._skipping = True
            # keep the last bytes in case they begin the terminator
            rest = rest[-3:]
        self._buffer = rest
        return out

    def _frame(self, chunk: bytes) -> Frame | None:
        fields: list[tuple[str, str]] = []
        for line in chunk.decode("utf-8", "replace").split("\r\n"):
            key, sep, value = line.partition(": ")
            if not sep:
                if line.endswith(":") and ":" not in line[:-1]:
                    key, value = line[:-1], ""
                elif not line:
                    continue  # a stray blank line between messages
                else:
                    self.statistics.garbage_lines += 1
                    continue
            if not key or " " in key:
                self.statistics.garbage_lines += 1
                continue
            fields.append((key, value))
        if not fields:
            return None
        self.statistics.frames += 1
        return Frame(tuple(fields))


_BANNER = BANNER_PREFIX.encode()
_FRAME_END = b"\r\n\r\n"


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
