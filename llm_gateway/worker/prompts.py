"""OpenAI request bodies -> engine jobs: sampling, stops, limits, grammars, prompt tokens.

Bodies arrive already checked against our OpenAPI document (types, ranges); what is left
here is what the document cannot know: the model's context, vocabulary and template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llama_cpp import llama_grammar

from llm_gateway.errors import InvalidRequest
from llm_gateway.worker.engines.base import Job, ModelInfo, SamplingParams
from llm_gateway.worker.templates import ChatRenderer
from llm_gateway.worker.toolcalls import messages as tool_messages
from llm_gateway.worker.toolcalls.formats import Syntax, renders_tools, syntax_for
from llm_gateway.worker.toolcalls.plan import ToolPlan, tool_plan


@dataclass(slots=True)
class Prepared:
    job: Job
    model: str  # echoed in every response: the name the client asked for
    stream: bool
    include_usage: bool
    echo: str | None = None  # completions with echo: the prompt text, sent before the output
    tools: ToolPlan | None = None  # chat with tools: how its output is parsed


class Prompter:
    def __init__(self, info: ModelInfo, renderer: ChatRenderer, max_choices: int = 1, *,
                 tool_format: str | None = None) -> None:
        self.info = info
        self.renderer = renderer
        self.max_choices = max_choices  # the engine's bound on n
        self.tool_syntax: Syntax = syntax_for(tool_format, renderer.template_text)
        self._native_tools = renders_tools(renderer.template_text)
        self._markers = self._control_markers()

    # -- chat ---------------------------------------------------------------------------------

    def uses_tool_handler(self, body: dict) -> bool:
        """Whether the request goes to llama-cpp-python's whole-run function-calling handler
        (only with --chat-format chatml-function-calling; otherwise tools are native)."""
        tools = body.get("tools") or body.get("functions")
        choice = body.get("tool_choice", body.get("function_call"))
        return self.renderer.calls_tools and bool(tools) and choice != "none"

    def chat(self, body: dict) -> Prepared:
        choices = self._choices(body)
        plan = tool_plan(body, self.tool_syntax)
        if plan is not None and choices > 1:
            raise InvalidRequest("n > 1 is not supported together with tools on local models.",
                                 param="n", code="unsupported_value")
        messages = [_message(m, i) for i, m in enumerate(body["messages"])]
        if self._native_tools:
            messages = tool_messages.native(messages, self.tool_syntax)
            tools = plan.tools if plan is not None else None
        else:
            messages = tool_messages.described(
                messages, self.tool_syntax, plan.tools if plan is not None else None,
                plan.must_call if plan is not None else None)
            tools = None
        rendered = self.renderer.render(messages, tools)
        self._check_context(rendered.tokens, "messages")
        logprobs = bool(body.get("logprobs"))
        job = self._job(body, rendered.tokens, logprobs=logprobs,
                        top_logprobs=(body.get("top_logprobs") or 0) if logprobs else 0)
        job.stop = [*job.stop, *rendered.stop]
        job.n = choices
        prepared = self._prepared(body, job)
        if plan is not None:
            plan.markers = self._markers
            job.grammar = plan.grammar or job.grammar
            job.logprobs, job.top_logprobs = False, 0  # not given with tools: not computed
            prepared.tools = plan
        return prepared

    def _control_markers(self) -> dict[int, str]:
        """The syntax's markers that are control tokens of the model (decoded as no text)."""
        found = {}
        for marker in self.tool_syntax.markers:
            tokens = self.info.tokenize(marker, False, True)
            if len(tokens) == 1 and not self.info.detokenize(tokens):
                found[tokens[0]] = marker
        return found

    def handler_request(self, body: dict) -> dict:
        """The body as llama-cpp-python's chat handler takes it (tools path)."""
        _single_choice(body)
        keep = ("messages", "tools", "tool_choice", "functions", "function_call", "stop",
                "temperature", "top_p", "top_k", "min_p", "presence_penalty",
                "frequency_penalty", "repeat_penalty", "logit_bias", "response_format")
        request = {k: body[k] for k in keep if body.get(k) is not None}
        request["messages"] = [_message(m, i) for i, m in enumerate(body["messages"])]
        request["max_tokens"] = _max_tokens(body)
        if body.get("seed") is not None:
            request["seed"] = body["seed"]  # else the Llama's own (--seed, or random)
        request.setdefault("temperature", 1.0)
        request.setdefault("tool_choice", "auto")  # OpenAI's default when tools are given
        return request

    # -- completions ----------------------------------------------------------------------------

    def completion(self, body: dict) -> Prepared:
        choices = self._choices(body)
        if body.get("best_of") not in (None, 1):
            raise InvalidRequest("best_of > 1 is not supported by this worker.",
                                 param="best_of", code="unsupported_value")
        if body.get("suffix"):
            raise InvalidRequest("suffix is not supported by this model.", param="suffix",
                                 code="unsupported_value")
        tokens, text = self._completion_prompt(body.get("prompt"))
        self._check_context(tokens, "prompt")
        logprobs = body.get("logprobs")
        job = self._job(body, tokens, logprobs=logprobs is not None,
                        top_logprobs=logprobs or 0)
        job.n = choices
        prepared = self._prepared(body, job)
        if body.get("echo"):
            prepared.echo = text if text is not None else \
                self.info.detokenize(tokens).decode("utf-8", "replace")
        return prepared

    def _completion_prompt(self, prompt: Any) -> tuple[list[int], str | None]:
        if isinstance(prompt, list) and prompt and not all(isinstance(t, int) for t in prompt):
            if len(prompt) > 1:
                raise InvalidRequest("This worker takes one prompt per request.",
                                     param="prompt", code="unsupported_value")
            prompt = prompt[0]
        if isinstance(prompt, str):
            tokens = self.info.tokenize(prompt, True, True)
            if not tokens and self.info.bos_id >= 0:
                tokens = [self.info.bos_id]  # an empty prompt: start from the beginning
            text: str | None = prompt
        elif isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
            tokens, text = list(prompt), None
        else:
            raise InvalidRequest("prompt must be a string or a list of token ids.",
                                 param="prompt", code="invalid_value")
        if not tokens:
            raise InvalidRequest("The prompt is empty.", param="prompt", code="invalid_value")
        self._check_tokens(tokens, "prompt")
        return tokens, text

    # -- embeddings ---------------------------------------------------------------------------

    def embedding_inputs(self, body: dict) -> list[list[int]]:
        """The inputs as token lists, in order; what this model cannot do is refused."""
        if not self.info.embedding:
            raise InvalidRequest("This worker serves no embeddings.", param="model",
                                 code="embeddings_unsupported")
        dimensions = body.get("dimensions")
        if dimensions is not None and dimensions != self.info.n_embd:
            # Cutting a vector short is only meaningful for models trained for it
            # (Matryoshka); nothing in a GGUF says so, and OpenAI refuses it likewise.
            raise InvalidRequest(
                f"This model does not support specifying dimensions: its embeddings have "
                f"{self.info.n_embd} dimensions, and dimensions may only be that.",
                param="dimensions", code="unsupported_value")
        raw = body.get("input")
        if isinstance(raw, str) or (isinstance(raw, list) and raw
                                    and all(isinstance(t, int) for t in raw)):
            raw = [raw]
        if not isinstance(raw, list) or not raw:
            raise InvalidRequest("input must be a non-empty string, array of strings, or "
                                 "array of token arrays.", param="input", code="invalid_value")
        inputs = []
        limit = self.info.max_embedding_tokens
        for item in raw:
            if isinstance(item, str):
                tokens = self.info.tokenize(item, True, False) if item else []
            elif isinstance(item, list) and all(isinstance(t, int) for t in item):
                tokens = list(item)
                self._check_tokens(tokens, "input")
            else:
                raise InvalidRequest("Each input must be a string or an array of token ids.",
                                     param="input", code="invalid_value")
            if not tokens:
                raise InvalidRequest("An input is empty.", param="input", code="invalid_value")
            if len(tokens) > limit:
                raise InvalidRequest(
                    f"This model's maximum input length is {limit} tokens; an input has "
                    f"{len(tokens)}.", param="input", code="context_length_exceeded")
            inputs.append(tokens)
        return inputs

    # -- shared -------------------------------------------------------------------------------

    def _choices(self, body: dict) -> int:
        """`n`, within what the engine takes: a 400 beyond it."""
        n = body.get("n")
        if n is None:
            return 1
        if n > self.max_choices:
            if self.max_choices == 1:
                _single_choice(body)
            raise InvalidRequest(
                f"n is at most {self.max_choices} on this worker (the sequences its engine "
                f"decodes together); got {n}.", param="n", code="unsupported_value")
        return int(n)

    def _check_context(self, tokens: list[int], param: str) -> None:
        n_ctx = self.info.n_ctx
        if len(tokens) + 1 > n_ctx:
            what = "messages" if param == "messages" else "prompt"
            raise InvalidRequest(
                f"This model's maximum context length is {n_ctx} tokens. However, your "
                f"{what} resulted in {len(tokens)} tokens. Please reduce the length of the "
                f"{what}.", param=param, code="context_length_exceeded")

    def _check_tokens(self, tokens: list[int], param: str) -> None:
        if any(t < 0 or t >= self.info.n_vocab for t in tokens):
            raise InvalidRequest(f"Token ids must be in [0, {self.info.n_vocab}).",
                                 param=param, code="invalid_value")

    def _job(self, body: dict, tokens: list[int], *, logprobs: bool,
             top_logprobs: int) -> Job:
        return Job(
            prompt=tokens,
            sampling=self._sampling(body),
            stop=_stops(body.get("stop")),
            max_tokens=_max_tokens(body),
            grammar=_grammar(body.get("response_format")),
            logprobs=logprobs,
            top_logprobs=min(int(top_logprobs), self.info.n_vocab),
            seed=body.get("seed"),  # the engine picks one when None
        )

    def _prepared(self, body: dict, job: Job) -> Prepared:
        options = body.get("stream_options") or {}
        stream = bool(body.get("stream"))
        return Prepared(job=job, model=body["model"], stream=stream,
                        include_usage=stream and bool(options.get("include_usage")))

    def _sampling(self, body: dict) -> SamplingParams:
        return SamplingParams(
            temperature=_number(body, "temperature", 1.0),
            top_p=_number(body, "top_p", 1.0),
            top_k=int(_number(body, "top_k", 0)),
            min_p=_number(body, "min_p", 0.0),
            presence_penalty=_number(body, "presence_penalty", 0.0),
            frequency_penalty=_number(body, "frequency_penalty", 0.0),
            repeat_penalty=_number(body, "repeat_penalty", 1.0),
            logit_bias=self._logit_bias(body.get("logit_bias")),
        )

    def _logit_bias(self, raw: Any) -> dict[int, float]:
        if not raw:
            return {}
        bias = {}
        for key, value in raw.items():
            try:
                token = int(key)
            except ValueError:
                token = -1
            if not 0 <= token < self.info.n_vocab or isinstance(value, bool) \
                    or not isinstance(value, int | float):
                raise InvalidRequest(
                    f"logit_bias maps token ids (0..{self.info.n_vocab - 1}, as strings) to "
                    f"numbers; got {key!r}: {value!r}.", param="logit_bias",
                    code="invalid_value")
            bias[token] = float(value)
        return bias


def _single_choice(body: dict) -> None:
    if body.get("n") not in (None, 1):
        raise InvalidRequest("n > 1 is not supported by this worker's engine: it generates "
                             "one choice per request (the batching engine serves n > 1, "
                             "without tools).", param="n", code="unsupported_value")


def _message(message: dict, index: int) -> dict:
    """A message as chat templates expect it: text content, known roles."""
    out = dict(message)
    if out.get("role") == "developer":
        out["role"] = "system"  # templates predate the developer role
    content = out.get("content")
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                raise InvalidRequest("Only text content is supported by this model.",
                                     param=f"messages[{index}].content",
                                     code="unsupported_content")
            texts.append(part.get("text") or part.get("refusal") or "")
        out["content"] = "".join(texts)
    elif content is None:
        out["content"] = ""
    return out


def _number(body: dict, name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"Invalid value for '{name}': must be a number.", param=name,
                             code="invalid_value")
    return float(value)


def _max_tokens(body: dict) -> int | None:
    value = body.get("max_completion_tokens")
    return value if value is not None else body.get("max_tokens")


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


def _grammar(response_format: Any) -> str | None:
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return llama_grammar.JSON_GBNF
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema is None:
            return llama_grammar.JSON_GBNF
        try:
            return llama_grammar.json_schema_to_gbnf(json.dumps(schema))
        except Exception as exc:
            raise InvalidRequest(f"The JSON schema cannot be turned into a grammar: {exc}",
                                 param="response_format.json_schema.schema",
                                 code="invalid_value") from None
    raise InvalidRequest(f"Unsupported response_format type {kind!r}.",
                         param="response_format.type", code="invalid_value")
