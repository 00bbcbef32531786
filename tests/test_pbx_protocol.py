"""The AMI wire parser: however the bytes arrive, the same messages come out."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.errors import AmiLocalError
from pbx.protocol import AmiParser, Banner, Frame, encode
from tests import golden

CYRILLIC = Frame.of(
    ("Event", "UserEvent"),
    ("Channel", "PJSIP/trunk-0000000a"),
    ("UserEvent", "ObzvonAnswered"),
    ("CallerIDName", "Анна Сергеевна Кузнецова"),
    ("Address", "г. Алматы, ул. Абая, д. 10 — кв. 5"),
)


def parse_whole(data: bytes, *, expect_banner: bool = True) -> list[Banner | Frame]:
    return AmiParser(expect_banner=expect_banner).feed(data)


def parse_chunks(chunks: list[bytes], *, expect_banner: bool = True) -> list[Banner | Frame]:
    parser = AmiParser(expect_banner=expect_banner)
    out: list[Banner | Frame] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# the start of answer.ami (banner, login, Originate answer, channel events) and a message
# whose multibyte characters land on many different byte boundaries
SHORT_STREAM = b"".join(s.raw for s in golden.load("answer")[:6] if s.direction == "<<<")
SHORT_STREAM += CYRILLIC.encode()


def test_every_golden_transcript_parses_into_its_messages() -> None:
    for name in golden.SCENARIOS:
        steps = [s for s in golden.load(name) if s.direction == "<<<"]
        frames = parse_whole(golden.received(name))
        assert len(frames) == len(steps), name
        assert isinstance(frames[0], Banner) and frames[0].version == "11.0.0"
        assert all(isinstance(f, Frame) for f in frames[1:])


def test_stream_split_at_every_byte_boundary_gives_the_same_frames() -> None:
    whole = parse_whole(SHORT_STREAM)
    assert whole[-1] == CYRILLIC
    for cut in range(1, len(SHORT_STREAM)):
        assert parse_chunks([SHORT_STREAM[:cut], SHORT_STREAM[cut:]]) == whole, cut


def test_stream_fed_one_byte_at_a_time_gives_the_same_frames() -> None:
    data = golden.received("connect")
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert parse_chunks(chunks) == parse_whole(data)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(golden.SCENARIOS),
    cuts=st.lists(st.integers(min_value=1, max_value=60_000), max_size=40),
)
def test_random_chunkings_of_a_golden_stream_give_the_same_frames(
    name: str, cuts: list[int]
) -> None:
    data = golden.received(name)
    chunks = split_at(data, [c % len(data) for c in cuts if c % len(data)])
    assert parse_chunks(chunks) == parse_whole(data)


def test_multibyte_characters_split_between_reads_are_decoded_whole() -> None:
    data = CYRILLIC.encode()
    start = data.index("Анна".encode())
    for cut in range(start, start + 8):  # inside the two-byte letters of the name
        (frame,) = parse_chunks([data[:cut], data[cut:]], expect_banner=False)
        assert isinstance(frame, Frame)
        assert frame.get("CallerIDName") == "Анна Сергеевна Кузнецова"
        assert frame.get("Address") == "г. Алматы, ул. Абая, д. 10 — кв. 5"


@settings(max_examples=60, deadline=None)
@given(
    garbage=st.lists(
        st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
        min_size=1,
        max_size=5,
    ),
    position=st.integers(min_value=0, max_value=10),
)
def test_garbage_lines_never_lose_the_messages_around_them(
    garbage: list[bytes], position: int
) -> None:
    messages = [f.encode() for f in parse_whole(golden.received("busy")) if isinstance(f, Frame)]
    messages = messages[:7]
    # garbage goes inside a message, as extra lines before its blank line
    i = position % len(messages)
    bad = messages[i][:-2] + b"".join(g + b"\r\n" for g in garbage) + b"\r\n"
    stream = b"".join([*messages[:i], bad, *messages[i + 1 :]])
    frames = parse_whole(stream, expect_banner=False)
    assert len(frames) == len(messages)
    assert frames[i + 1 :] == parse_whole(b"".join(messages[i + 1 :]), expect_banner=False)
    assert frames[:i] == parse_whole(b"".join(messages[:i]), expect_banner=False)


def test_garbage_between_messages_is_counted_and_skipped() -> None:
    parser = AmiParser(expect_banner=False)
    good = CYRILLIC.encode()
    frames = parser.feed(good + b"this is not a header\r\n\xff\xfe\x00\r\n\r\n" + good)
    assert frames == [CYRILLIC, CYRILLIC]
    assert parser.statistics.garbage_lines == 2


def test_a_value_larger_than_the_limit_drops_only_its_frame() -> None:
    parser = AmiParser(expect_banner=False, max_frame_bytes=4096)
    huge = Frame.of(("Event", "UserEvent"), ("Blob", "x" * 10_000)).encode()
    stream = CYRILLIC.encode() + huge + CYRILLIC.encode()
    frames: list[Banner | Frame] = []
    for i in range(0, len(stream), 1000):
        frames.extend(parser.feed(stream[i : i + 1000]))
    assert frames == [CYRILLIC, CYRILLIC]
    assert parser.statistics.oversize_frames == 1


def test_encode_refuses_a_line_break_that_would_inject_an_action() -> None:
    with pytest.raises(AmiLocalError):
        encode([("Action", "Originate"), ("CallerID", "Shop\r\nAction: Hangup")])
