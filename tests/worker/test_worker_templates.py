"""Chat rendering: GGUF template, a template file, a named llama-cpp-python format."""

from __future__ import annotations

import pytest

from llm_gateway.errors import InvalidRequest
from llm_gateway.worker.engines.base import ModelInfo
from llm_gateway.worker.templates import ChatRenderer, TemplateError

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def info(template: str | None = None) -> tuple[ModelInfo, list]:
    seen: list = []

    def tokenize(text: str, add_special: bool, parse_special: bool) -> list[int]:
        seen.append((text, add_special, parse_special))
        return [ord(c) for c in text]

    metadata = {"tokenizer.chat_template": template} if template else {}
    return ModelInfo(n_ctx=512, n_vocab=70000, n_embd=8, max_embedding_tokens=512,
                     embedding=False, metadata=metadata, bos_token="<s>", eos_token="</s>",
                     bos_id=1, tokenize=tokenize, detokenize=lambda t: b""), seen


def test_gguf_template_is_rendered_and_tokenized_with_special_tokens():
    model, seen = info("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}"
                       "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    rendered = ChatRenderer(model).render(MESSAGES)
    assert seen == [("<s>[system]Be brief.[user]Hi[assistant]", False, True)]
    assert rendered.stop == ["</s>"] and len(rendered.tokens) == len(seen[0][0])


def test_template_file_wins_over_the_gguf(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("{% for m in messages %}{{ m.content }}|{% endfor %}")
    model, seen = info("{{ 'gguf' }}")
    ChatRenderer(model, chat_template=str(path)).render(MESSAGES)
    assert seen[0][0] == "Be brief.|Hi|"


def test_named_format_is_captured_from_its_handler():
    model, seen = info()
    rendered = ChatRenderer(model, chat_format="chatml").render(MESSAGES)
    text = seen[0][0]
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_end|>" in rendered.stop


def test_missing_template_and_unknown_format():
    model, _ = info()
    with pytest.raises(InvalidRequest) as err:
        ChatRenderer(model).render(MESSAGES)
    assert err.value.code == "chat_template_missing"
    with pytest.raises(TemplateError, match="unknown chat format"):
        ChatRenderer(model, chat_format="nope")
