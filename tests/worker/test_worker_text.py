"""TextStream: whole characters only, stop strings cut even across tokens."""

from __future__ import annotations

from llm_gateway.worker.engines.text import TextStream


def feed(stream: TextStream, pieces: list[bytes]) -> list[str]:
    return [stream.push(p) for p in pieces]


def test_without_stops_text_passes_through():
    s = TextStream()
    assert feed(s, [b"Hel", b"lo"]) == ["Hel", "lo"] and s.flush() == ""


def test_split_utf8_waits_for_the_whole_character():
    s = TextStream()
    snowman = "☃".encode()
    assert feed(s, [b"a" + snowman[:1], snowman[1:2], snowman[2:] + b"b"]) == ["a", "", "☃b"]


def test_stop_across_tokens_is_cut_and_not_returned():
    s = TextStream(["END"])
    out = feed(s, [b"one E", b"N", b"D two"])
    assert "".join(out) == "one " and s.stopped
    assert out[0] == "one "  # "E" is held back: it may start the stop string
    assert s.push(b"more") == "" and s.flush() == ""


def test_held_back_text_is_released_when_it_is_not_a_stop():
    s = TextStream(["END"])
    assert feed(s, [b"one E", b"X"]) == ["one ", "EX"]
    s = TextStream(["END"])
    assert feed(s, [b"one EN"]) == ["one "] and s.flush() == "EN"


def test_earliest_of_several_stops_wins():
    s = TextStream(["zz", "b"])
    assert s.push(b"abczz") == "a" and s.stopped
