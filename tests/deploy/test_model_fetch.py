"""`python -m llm_gateway.worker.fetch`, the workers' init container: the model file lands at
a fixed path once, atomically, and is replaced when the source changes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llm_gateway.worker import fetch
from llm_gateway.worker.models import DEFAULT_FILE, ModelSourceError, default_model_path


def test_fetch_once_then_nothing(tmp_path: Path) -> None:
    source = tmp_path / "a.gguf"
    source.write_bytes(b"GGUF model a")
    dest = tmp_path / "models" / "model.gguf"
    assert fetch.fetch(str(source), dest) is True
    assert dest.read_bytes() == b"GGUF model a"
    assert (tmp_path / "models" / "model.gguf.source").read_text() == f"{source}\n"
    assert fetch.fetch(str(source), dest) is False  # a restarted pod finds it in place
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.gguf", "model.gguf.source"]


def test_another_source_replaces_the_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    dest = tmp_path / "model.gguf"
    fetch.fetch(str(a), dest)
    assert fetch.fetch(str(b), dest) is True
    assert dest.read_bytes() == b"b"


def test_a_file_without_its_note_is_fetched_again(tmp_path: Path) -> None:
    source = tmp_path / "a.gguf"
    source.write_bytes(b"a")
    dest = tmp_path / "model.gguf"
    dest.write_bytes(b"half a download")  # an interrupted fetch writes the note last
    assert fetch.fetch(str(source), dest) is True
    assert dest.read_bytes() == b"a"


def test_a_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError):
        fetch.fetch(str(tmp_path / "nope.gguf"), tmp_path / "model.gguf")
    out = subprocess.run([sys.executable, "-m", "llm_gateway.worker.fetch",
                          str(tmp_path / "nope.gguf"), str(tmp_path / "model.gguf")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert "model file not found" in out.stderr


def test_the_default_model_from_its_package(tmp_path: Path) -> None:
    try:
        path = default_model_path()
    except ModelSourceError as exc:
        pytest.skip(str(exc))
    dest = tmp_path / "models" / "model.gguf"
    out = subprocess.run([sys.executable, "-m", "llm_gateway.worker.fetch", "default",
                          str(dest)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{dest}: written from default"
    assert path.name == DEFAULT_FILE
    assert dest.stat().st_size == path.stat().st_size
