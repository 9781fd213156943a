# syntax=docker/dockerfile:1
#
# llm-gateway, the gateway itself (`llm-gateway serve`): the OpenAI-compatible endpoint that
# routes to upstreams and to local workers. No llama.cpp here: local models run in the worker
# images (worker*.Dockerfile), which the gateway reaches as `urls:` or `discovery:` workers.
# Build from the repository root:
#
#   docker build -f docker/gateway.Dockerfile -t llm-gateway .
#
# Configuration: mount a config file and name it in LLM_GATEWAY_CONFIG, or use no file (the
# built-in default) and LLM_GATEWAY__* overrides; secrets come from the environment
# (api_key_env). See docker/README.md.

# --------------------------------------------------------------------------- builder
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src

# The extras the image carries besides the core: what a deployment of several replicas needs
# (k8s/base: the ledger, keys and teams in PostgreSQL, limits and the response cache in
# Redis) and tracing over gRPC (docs/tracing.md). tests/deploy checks this list against what
# the manifests configure.
ARG GATEWAY_EXTRAS="postgres redis otel"

# Wheels of the dependencies first, from pyproject.toml alone, so that editing the sources
# does not download them again. All of them ship binary wheels: no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; \
project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
deps = project['dependencies'] + [d for extra in sys.argv[1:] \
    for d in project['optional-dependencies'][extra]]; \
open('/tmp/requirements.txt', 'w').writelines(d + '\n' for d in deps)" $GATEWAY_EXTRAS \
    && cat /tmp/requirements.txt \
    && pip wheel --no-cache-dir --only-binary=:all: --wheel-dir /dist -r /tmp/requirements.txt

# Then the project's own wheel.
COPY README.md ./
COPY openapi/ openapi/
COPY llm_gateway/ llm_gateway/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist . \
    && ls -l /dist

# --------------------------------------------------------------------------- runtime
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# The wheels are bind-mounted from the builder, not copied: no layer keeps a second copy.
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    python -m venv /opt/venv \
    && pip install --no-cache-dir --no-index --no-deps /dist/*.whl \
    && llm-gateway --version

# An unprivileged user; USER is numeric so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/gateway \
       --shell /usr/sbin/nologin gateway
USER 10001:10001
WORKDIR /home/gateway

# A container is reached from outside it: listen on every interface, whatever the config says.
ENV LLM_GATEWAY__SERVER__HOST=0.0.0.0

EXPOSE 8080

# /healthz: the process is up and its event loop answers (no curl in the image). Probes the
# default port: with another server.port, override it (docker run --health-cmd ...).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["llm-gateway"]
CMD ["serve"]
