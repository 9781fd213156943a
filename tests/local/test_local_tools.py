"""Tool calls on the local model (SmolLM2-135M), through the gateway with the openai SDK.

The model is far too small to choose tools well, so the calls are forced (`tool_choice`
required or named): the grammar makes it write a call in its syntax (hermes, as its
template knows no tools), and the worker parses it as it comes.
"""

from __future__ import annotations

import json

import jsonschema

from local_support import LocalGateway

PARAMETERS = {"type": "object",
              "properties": {"city": {"type": "string", "maxLength": 12},
                             "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
              "required": ["city", "unit"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather",
                                           "description": "The weather in a city",
                                           "parameters": PARAMETERS}},
         {"type": "function", "function": {"name": "get_time",
                                           "parameters": {"type": "object", "properties": {}}}}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
# A forced call here is about 35 tokens: the syntax's markers, the object, the arguments.
LIMIT = 60


def test_a_named_call_streams_its_arguments_in_fragments(pair: LocalGateway) -> None:
    stream = pair.client().chat.completions.create(
        model="smol", messages=ASK, tools=TOOLS, tool_choice=NAMED, parallel_tool_calls=False,
        max_tokens=LIMIT, temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks
              if c.choices and c.choices[0].delta.tool_calls]
    first = deltas[0]
    assert first.index == 0 and first.type == "function" and first.id.startswith("call_")
    assert first.function.name == "get_weather" and first.function.arguments == ""
    fragments = [d.function.arguments for d in deltas[1:]]
    assert len(fragments) >= 3, fragments  # token by token, not in one piece at the end
    assert all(d.index == 0 and d.id is None and d.function.name is None for d in deltas[1:])
    arguments = json.loads("".join(fragments))
    jsonschema.validate(arguments, PARAMETERS)
    ends = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert ends[-1] == "tool_calls" and set(ends[:-1]) == {None}
    assert chunks[-1].usage.completion_tokens > len(fragments)


def test_a_required_call_whole_then_its_result_round_trip(pair: LocalGateway) -> None:
    client = pair.client()
    done = client.chat.completions.create(
        model="smol", messages=ASK, tools=TOOLS[:1], tool_choice="required",
        parallel_tool_calls=False, max_tokens=LIMIT, temperature=0)
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)
    assert 0 < done.usage.completion_tokens <= LIMIT

    result = "Sunny and 22 degrees celsius in the city centre."
    history = [*ASK, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": result}]
    answer = client.chat.completions.create(model="smol", messages=history, tools=TOOLS[:1],
                                            tool_choice="none", max_tokens=8, temperature=0)
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    assert answer.choices[0].finish_reason in ("stop", "length")
    # The call (about 35 tokens) and the result (about 22 with its tags) reached the prompt:
    # 75 here, which neither would make alone.
    alone = client.chat.completions.create(model="smol", messages=ASK, tools=TOOLS[:1],
                                           tool_choice="none", max_tokens=1)
    assert answer.usage.prompt_tokens - alone.usage.prompt_tokens >= 60
    again = client.chat.completions.create(model="smol", messages=history, tools=TOOLS[:1],
                                           tool_choice="required", parallel_tool_calls=False,
                                           max_tokens=LIMIT, temperature=0)
    assert again.choices[0].message.tool_calls[0].function.name == "get_weather"
