"""Worker fixtures: two real workers serve the whole suite (helpers in worker_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from gateway_support import require_local_extra
from worker_support import ENGINES, WorkerProcess, default_model_path

require_local_extra()


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Every test on `worker` or `small_worker` runs once per engine."""
    return request.param


@pytest.fixture(scope="session")
def worker(engine: str) -> Iterator[WorkerProcess]:
    # Embeddings off here (they are on by default): the refusal is tested on this one.
    server = WorkerProcess("--served-name", "smollm2", "--engine", engine,
                           "--no-embeddings").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def small_worker(engine: str) -> Iterator[WorkerProcess]:
    # One sequence at a time on either engine: the queue tests count on one running job.
    server = WorkerProcess("--n-ctx", "256", "--max-queue", "1", "--engine", engine,
                           "--parallel", "1").start()
    yield server
    server.stop()


@pytest.fixture
def client(worker: WorkerProcess) -> openai.OpenAI:
    return worker.client()


@pytest.fixture(scope="session")
def vocab():
    """llama-cpp-python's own tokenizer for the default model (vocabulary only)."""
    import llama_cpp

    return llama_cpp.Llama(str(default_model_path()), vocab_only=True, verbose=False)
