"""The native tool-call parsers, fed as a model writes: split at every position, and a
character at a time (the result must not depend on where tokens end)."""

from __future__ import annotations

import json

import pytest

from llm_gateway.worker.engines.base import Piece
from llm_gateway.worker.toolcalls.formats import SYNTAXES
from llm_gateway.worker.toolcalls.parsers import PARSERS
from llm_gateway.worker.toolcalls.plan import ToolPlan
from llm_gateway.worker.toolcalls.scan import CallArgs, CallEnd, CallStart, Event, Text
from llm_gateway.worker.toolcalls.stream import ToolOutput

WEATHER = '{"city": "Paris", "unit": "celsius"}'
TRICKY = '{"q": "a } ] \\" {", "n": [1, {"x": null}], "ok": true, "f": -1.5e3}'

# (syntax, model output, expected content, expected [(name, arguments JSON)])
CASES = [
    ("hermes", f'<tool_call>\n{{"name": "get_weather", "arguments": {WEATHER}}}\n</tool_call>',
     "", [("get_weather", WEATHER)]),
    ("hermes", f'Let me look.\n<tool_call>\n{{"name": "a", "arguments": {TRICKY}}}\n'
               f'</tool_call>\n<tool_call>\n{{"arguments": {{}}, "name": "b"}}\n</tool_call>',
     "Let me look.", [("a", TRICKY), ("b", "{}")]),
    ("hermes", 'No call: <tool_ here, and x < y.', "No call: <tool_ here, and x < y.", []),
    ("hermes", '<tool_call>\nnot json\n</tool_call>', "<tool_call>\nnot json\n</tool_call>",
     []),
    ("hermes", '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>', "",
     [("f", '{"a": 1}')]),
    ("llama3", f'{{"name": "get_weather", "parameters": {WEATHER}}}', "",
     [("get_weather", WEATHER)]),
    ("llama3", f'<|python_tag|>{{"name": "a", "parameters": {TRICKY}}}; '
               '{"name": "b", "parameters": {}}', "", [("a", TRICKY), ("b", "{}")]),
    ("llama3", 'The answer is {"name": "x"}.', 'The answer is {"name": "x"}.', []),
    ("llama3", '{"answer": 42}', '{"answer": 42}', []),
    ("mistral", f'[TOOL_CALLS] [{{"name": "get_weather", "arguments": {WEATHER}, '
                '"id": "a1b2c3d4e"}]', "", [("get_weather", WEATHER)]),
    ("mistral", f'Sure. [TOOL_CALLS][{{"name": "a", "arguments": {TRICKY}}}, '
                '{"name": "b", "arguments": {}}]', "Sure.", [("a", TRICKY), ("b", "{}")]),
]


def _run(syntax: str, pieces: list[str], parallel: bool = True) -> list[Event]:
    parser = PARSERS[syntax](parallel)
    events: list[Event] = []
    for piece in pieces:
        events += parser.push(piece)
    return events + parser.close()


def _result(events: list[Event]) -> tuple[str, list[tuple[str, str]]]:
    content = "".join(e.text for e in events if isinstance(e, Text))
    calls: list[list[str]] = []
    for event in events:
        if isinstance(event, CallStart):
            assert event.index == len(calls)  # indexes count up from 0
            calls.append([event.name, ""])
        elif isinstance(event, CallArgs):
            assert calls and event.index == len(calls) - 1  # arguments follow their start
            calls[event.index][1] += event.text
    ends = [e.index for e in events if isinstance(e, CallEnd)]
    assert ends == list(range(len(calls)))
    return content, [(name, args) for name, args in calls]


@pytest.mark.parametrize(("syntax", "text", "content", "calls"), CASES)
def test_the_result_does_not_depend_on_where_the_text_is_split(syntax, text, content, calls):
    whole = _result(_run(syntax, [text]))
    assert whole == (content, calls)
    for name, args in calls:
        assert json.loads(args) == json.loads(dict(calls)[name])
    for at in range(len(text) + 1):
        assert _result(_run(syntax, [text[:at], text[at:]])) == whole, at
    assert _result(_run(syntax, list(text))) == whole


@pytest.mark.parametrize("syntax", ["hermes", "llama3", "mistral"])
def test_arguments_stream_in_fragments_after_the_name(syntax):
    text = next(t for s, t, _, calls in CASES if s == syntax and calls)
    events = _run(syntax, list(text))
    kinds = [type(e) for e in events if not isinstance(e, Text)]
    assert kinds[0] is CallStart
    fragments = [e for e in events if isinstance(e, CallArgs) and e.index == 0]
    assert len(fragments) > 5  # one per character fed, not one at the end


def test_parallel_false_keeps_the_first_call_and_stops():
    text = CASES[1][1]
    parser = PARSERS["hermes"](False)
    events: list[Event] = []
    for ch in text:
        events += parser.push(ch)
        if parser.finished:
            break
    assert parser.finished
    assert parser.push('<tool_call>{"name": "z", "arguments": {}}</tool_call>') == []
    assert parser.close() == []
    assert _result(events) == ("Let me look.", [("a", TRICKY)])


def test_text_cut_inside_a_call_closes_it_as_far_as_it_got():
    events = _run("hermes", ['Hi <tool_call>{"name": "f", "arguments": {"city": "Pa'])
    assert _result(events) == ("Hi", [("f", '{"city": "Pa')])
    # Cut before the name: nothing was announced, so it is given back as text.
    assert _result(_run("mistral", ['[TOOL_CALLS] [{"na'])) == ('[TOOL_CALLS][{"na', [])


def test_a_held_marker_prefix_is_released_at_the_end():
    assert _result(_run("hermes", ["Done <tool_c"])) == ("Done <tool_c", [])
    assert _result(_run("llama3", ["  <|python_t"])) == ("  <|python_t", [])


def test_a_marker_that_is_a_control_token_is_read_from_its_id():
    # Mistral's [TOOL_CALLS] is a control token: the engine gives it no text.
    plan = ToolPlan(SYNTAXES["mistral"], [], "auto", True, None, None, markers={9: "[TOOL_CALLS]"})
    output = ToolOutput(plan)
    pieces = [Piece("", 9), Piece("[{", 10), Piece('"name": "f", ', 11),
              Piece('"arguments": {"a"', 12), Piece(": 1}}]", 13)]
    events = [e for piece in pieces for e in output.feed(piece)] + output.close()
    assert _result(events) == ("", [("f", '{"a": 1}')])
    message = output.message()
    assert message["content"] is None and message["tool_calls"][0]["function"] == {
        "name": "f", "arguments": '{"a": 1}'}
    call_id = message["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()  # what Mistral's template takes back
    # Unless the id is known as a control marker, a token without text adds nothing.
    other = ToolOutput(ToolPlan(SYNTAXES["mistral"], [], "auto", True, None, None))
    events = other.feed(Piece("", 9)) + other.close()
    assert events == []
