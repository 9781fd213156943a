"""Exit 0 when the installed llama-cpp-python decodes a prompt of a few dozen tokens with the
default model; crash or exit 1 otherwise (.ci/run rebuilds it then: see there why)."""

from __future__ import annotations

import sys

from llama_cpp import Llama

from llm_gateway.worker.models import default_model_path

PROMPT = "The history of bread begins with the first farmers, who lived in the valleys of " * 3


def main() -> int:
    llama = Llama(str(default_model_path()), n_ctx=256, n_threads=1, verbose=False)
    out = llama.create_completion(PROMPT, max_tokens=4, temperature=0)
    text = out["choices"][0]["text"]  # type: ignore[index]
    print(f"llama-cpp-python decodes: {text!r}")
    return 0 if out["usage"]["completion_tokens"] > 0 else 1  # type: ignore[index]


if __name__ == "__main__":
    sys.exit(main())
