"""Chat messages -> prompt tokens, through the model's chat template.

The template comes from `--chat-template FILE`, else the GGUF's `tokenizer.chat_template`,
rendered with llama-cpp-python's Jinja2 formatter; `--chat-format NAME` picks one of
llama-cpp-python's named formats instead. Tokens come from the model's own tokenizer, so the
usage we report is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_cpp import llama_chat_format

from llm_gateway.errors import InvalidRequest
from llm_gateway.worker.engines.base import ModelInfo

# The chat format whose handler can call tools (used through the engine, not rendered here).
FUNCTION_CALLING_FORMAT = "chatml-function-calling"


class TemplateError(Exception):
    """The configured chat template or format cannot be used."""


@dataclass(frozen=True, slots=True)
class RenderedChat:
    tokens: list[int]
    stop: list[str]  # the format's own end markers, for models where they are plain text


class ChatRenderer:
    def __init__(self, info: ModelInfo, *, chat_format: str | None = None,
                 chat_template: str | None = None) -> None:
        self._info = info
        self._formatter: llama_chat_format.Jinja2ChatFormatter | None = None
        self._handler: Any = None
        self.chat_format = chat_format
        self.template_text: str | None = None  # the Jinja source, when there is one
        if chat_template is not None:
            try:
                self.template_text = Path(chat_template).read_text(encoding="utf-8")
            except OSError as exc:
                raise TemplateError(f"cannot read the chat template {chat_template}: {exc}") \
                    from None
        elif chat_format is not None:
            self._handler = handler_for(chat_format)
        elif info.metadata.get("tokenizer.chat_template"):
            self.template_text = info.metadata["tokenizer.chat_template"]
        if self.template_text is not None:
            self._formatter = self._jinja(self.template_text)

    @property
    def calls_tools(self) -> bool:
        return self.chat_format == FUNCTION_CALLING_FORMAT

    def _jinja(self, template: str) -> llama_chat_format.Jinja2ChatFormatter:
        try:
            return llama_chat_format.Jinja2ChatFormatter(
                template=template, eos_token=self._info.eos_token,
                bos_token=self._info.bos_token)
        except Exception as exc:  # a Jinja syntax error
            raise TemplateError(f"the chat template does not compile: {exc}") from None

    def render(self, messages: list[dict], tools: list[dict] | None = None) -> RenderedChat:
        """`tools` go to a Jinja template as its `tools` variable (HF's convention)."""
        if self._formatter is not None:
            try:
                # Validated JSON messages, which llama-cpp types as TypedDicts per role.
                result = self._formatter(messages=messages,  # type: ignore[arg-type]
                                         tools=tools)  # type: ignore[arg-type]
            except Exception as exc:  # raise_exception() in the template, or a bad message
                raise InvalidRequest(f"The chat template rejected the messages: {exc}",
                                     param="messages", code="invalid_messages") from None
            # The template writes the special tokens itself; parse them, add none.
            tokens = self._info.tokenize(result.prompt, not result.added_special, True)
            return RenderedChat(tokens, _stops(result.stop))
        if self._handler is not None:
            return self._capture(messages)
        raise InvalidRequest(
            "The model has no chat template; start the worker with --chat-format or "
            "--chat-template, or use /v1/completions.", param="messages",
            code="chat_template_missing")

    def _capture(self, messages: list[dict]) -> RenderedChat:
        # Named formats exist only as complete handlers that end in create_completion(); hand
        # them a stand-in model that records the prompt and stops there.
        probe = _PromptProbe(self._info)
        try:
            self._handler(llama=probe, messages=messages)
        except _Captured as captured:
            prompt = captured.kwargs.get("prompt")
            tokens = prompt if isinstance(prompt, list) else \
                self._info.tokenize(str(prompt), True, True)
            return RenderedChat(list(tokens), _stops(captured.kwargs.get("stop")))
        except Exception as exc:
            raise InvalidRequest(f"The chat format rejected the messages: {exc}",
                                 param="messages", code="invalid_messages") from None
        raise InvalidRequest("The chat format produced no prompt.", param="messages")


def handler_for(chat_format: str) -> Any:
    try:
        return llama_chat_format.get_chat_completion_handler(chat_format)
    except Exception:
        known = ", ".join(sorted(llama_chat_format.LlamaChatCompletionHandlerRegistry()
                                 ._chat_handlers))
        raise TemplateError(f"unknown chat format {chat_format!r} (known: {known})") from None


def _stops(stop: str | Sequence[str] | None) -> list[str]:
    if not stop:
        return []
    return [stop] if isinstance(stop, str) else [s for s in stop if s]


class _Captured(Exception):
    def __init__(self, kwargs: dict) -> None:
        super().__init__("prompt captured")
        self.kwargs = kwargs


class _PromptProbe:
    """Just enough of `llama_cpp.Llama` for a chat handler to build its prompt."""

    verbose = False

    def __init__(self, info: ModelInfo) -> None:
        self._info = info
        self.metadata = info.metadata

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return self._info.tokenize(text.decode("utf-8"), add_bos, special)

    def create_completion(self, **kwargs: Any) -> Any:
        raise _Captured(kwargs)
