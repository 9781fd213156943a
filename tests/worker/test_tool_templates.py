"""Tools through real chat templates of the three families (the template text only, in
tests/worker/data/templates/): the syntax each teaches, tools and history rendered the way
the template expects them, grammars for forced calls, and templates that know no tools."""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp
import pytest

from llm_gateway.errors import InvalidRequest
from llm_gateway.worker.engines.base import ModelInfo
from llm_gateway.worker.prompts import Prompter
from llm_gateway.worker.templates import ChatRenderer
from llm_gateway.worker.toolcalls.formats import SYNTAXES, detect
from llm_gateway.worker.toolcalls.grammar import call_grammar
from llm_gateway.worker.toolcalls.parsers import PARSERS
from llm_gateway.worker.toolcalls.scan import CallArgs, CallStart

TEMPLATES = Path(__file__).parent / "data" / "templates"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
SMOL = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_abc123", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_abc123", "content": "22 C"},
]


def prompter(template: str, tool_format: str | None = None) -> tuple[Prompter, list[str]]:
    texts: list[str] = []

    def tokenize(text: str, add_special: bool, parse_special: bool) -> list[int]:
        texts.append(text)
        return [ord(c) for c in text]

    info = ModelInfo(n_ctx=100_000, n_vocab=0x110000, n_embd=8, max_embedding_tokens=8,
                     embedding=False, metadata={"tokenizer.chat_template": template},
                     bos_token="<s>", eos_token="</s>", bos_id=1, tokenize=tokenize,
                     detokenize=lambda tokens: b"x")
    return Prompter(info, ChatRenderer(info), tool_format=tool_format), texts


def family(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def render(template: str, messages: list[dict], **body) -> tuple[str, Prompter, object]:
    p, texts = prompter(template)
    prepared = p.chat({"model": "m", "messages": messages, **body})
    return texts[-1], p, prepared


@pytest.mark.parametrize(("name", "syntax"), [("qwen2.5.jinja", "hermes"),
                                              ("llama3.1.jinja", "llama3"),
                                              ("mistral-v0.3.jinja", "mistral")])
def test_the_syntax_is_read_from_the_template(name, syntax):
    assert detect(family(name)) == syntax
    assert prompter(family(name))[0].tool_syntax.name == syntax
    assert detect(SMOL) == detect(None) == "hermes"  # told in the system message instead
    assert prompter(family(name), "mistral")[0].tool_syntax.name == "mistral"  # overridden


def _parsed(syntax: str, text: str) -> list[tuple[str, dict]]:
    """The calls a parser finds in the text a template wrote (the syntaxes must agree)."""
    parser = PARSERS[syntax]()
    events = parser.push(text) + parser.close()
    names = [e.name for e in events if isinstance(e, CallStart)]
    args = "".join(e.text for e in events if isinstance(e, CallArgs))
    return [(names[0], json.loads(args))] if names else []


def test_qwen_gets_tools_in_the_system_turn_and_history_as_blocks():
    text, _, prepared = render(family("qwen2.5.jinja"), HISTORY, tools=[WEATHER])
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    assert "<tools>\n" + json.dumps(WEATHER, ensure_ascii=False) + "\n</tools>" in text
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert "<|im_start|>assistant\n" + call + "<|im_end|>" in text  # arguments not re-quoted
    assert "<|im_start|>user\n<tool_response>\n22 C\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert _parsed("hermes", call) == [("get_weather", {"city": "Paris"})]
    assert prepared.tools is not None and prepared.job.grammar is None  # auto: not forced


def test_llama_gets_tools_in_the_first_user_turn_and_results_as_ipython():
    text, _, prepared = render(family("llama3.1.jinja"), HISTORY, tools=[WEATHER],
                               parallel_tool_calls=True)
    assert "Environment: ipython\n" in text
    first_user = text.split("<|start_header_id|>user<|end_header_id|>\n\n")[1]
    assert json.dumps(WEATHER, indent=4, ensure_ascii=False) in first_user
    assert first_user.split("<|eot_id|>")[0].endswith("Weather in Paris?")
    call = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
    assert "<|start_header_id|>assistant<|end_header_id|>\n\n" + call + "<|eot_id|>" in text
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"22 C"<|eot_id|>' in text
    assert _parsed("llama3", call) == [("get_weather", {"city": "Paris"})]
    assert prepared.tools.parallel is False  # its template renders one call per turn
    # An empty tool_calls list is no call (the template would reject it).
    plain = [*HISTORY[:2], {"role": "assistant", "content": "Hm.", "tool_calls": []},
             {"role": "user", "content": "And?"}]
    assert "Hm.<|eot_id|>" in render(family("llama3.1.jinja"), plain)[0]


def test_mistral_gets_tools_before_the_last_user_turn_and_ids_it_accepts():
    history = [*HISTORY, {"role": "assistant", "content": "It is 22 C."},
               {"role": "user", "content": "Thanks"}]
    text, _, _ = render(family("mistral-v0.3.jinja"), history, tools=[WEATHER])
    head, last = text.rsplit("[AVAILABLE_TOOLS] ", 1)
    assert last.startswith("[" + json.dumps(WEATHER, ensure_ascii=False) + "][/AVAILABLE_TOOLS]")
    assert last.endswith("[INST] Be brief.\n\nThanks[/INST]")
    start = head.index("[TOOL_CALLS] ")
    calls = json.loads(head[start + len("[TOOL_CALLS] "):head.index("]</s>", start) + 1])
    mapped = calls[0]["id"]
    assert len(mapped) == 9 and mapped.isalnum()  # call_abc123 would be refused
    assert calls[0]["arguments"] == {"city": "Paris"}
    assert f'[TOOL_RESULTS] {{"content": 22 C, "call_id": "{mapped}"}}[/TOOL_RESULTS]' in head
    assert _parsed("mistral", head[start:]) == [("get_weather", {"city": "Paris"})]


def test_tool_choice_none_renders_no_tools():
    text, _, prepared = render(family("qwen2.5.jinja"), HISTORY[:2], tools=[WEATHER],
                               tool_choice="none")
    assert "<tools>" not in text and prepared.tools is None and prepared.job.grammar is None


@pytest.mark.parametrize("name", ["qwen2.5.jinja", "llama3.1.jinja", "mistral-v0.3.jinja"])
def test_forced_calls_get_a_grammar_llama_cpp_accepts(name, vocab):
    _, p, prepared = render(family(name), HISTORY[:2], tools=[WEATHER],
                            tool_choice={"type": "function", "function": {"name": "get_weather"}})
    grammar = prepared.job.grammar
    assert grammar is not None and '\\"name\\": \\"get_weather\\"' in grammar
    opener = {"hermes": '"<tool_call>\\n"', "llama3": "root ::= call",
              "mistral": '"[TOOL_CALLS]["'}[p.tool_syntax.name]
    assert opener in grammar.splitlines()[0]
    for text in (grammar, call_grammar(p.tool_syntax, [WEATHER["function"]], True)):
        sampler = llama_cpp.llama_sampler_init_grammar(vocab._model.vocab, text.encode(),
                                                       b"root")
        assert sampler, text
        llama_cpp.llama_sampler_free(sampler)


def test_a_template_without_tools_is_told_in_the_system_message():
    text, _, prepared = render(SMOL, HISTORY, tools=[WEATHER], tool_choice="required")
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nBe brief.\n\n")
    assert json.dumps(WEATHER, ensure_ascii=False) in system and "<tool_call>" in system
    assert system.endswith("You must call one of the functions.")
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert f"<|im_start|>assistant\n{call}<|im_end|>" in text
    assert "<|im_start|>user\n<tool_response>\n22 C\n</tool_response><|im_end|>" in text
    assert "<|im_start|>tool" not in text
    assert prepared.job.grammar is not None and "<tool_call>" in prepared.job.grammar


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]},
     "tools[0].function.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"functions": [WEATHER["function"]]}, "functions"),
    ({"tools": [WEATHER, {"type": "function", "function": {
        "name": "f", "parameters": {"type": "bogus"}}}], "tool_choice": "required"},
     "tools[1].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": "required",
      "response_format": {"type": "json_object"}}, "response_format"),
])
def test_bad_tool_requests_are_400s_naming_the_parameter(body, param):
    p, _ = prompter(family("qwen2.5.jinja"))
    with pytest.raises(InvalidRequest) as err:
        p.chat({"model": "m", "messages": HISTORY[:2], **body})
    assert err.value.param == param


def test_syntaxes_write_calls_their_parsers_read():
    for name, syntax in SYNTAXES.items():
        text = syntax.calls_text([("f", '{"a": [1, 2]}')])
        assert _parsed(name, text) == [("f", {"a": [1, 2]})]
