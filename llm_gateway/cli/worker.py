"""`llm-gateway worker`: serve one model with llama-cpp-python over OpenAI's HTTP shapes.

The server listens at once and loads the model in the background (/health says "loading",
then "ok"). Sources that need no download are checked first, so a wrong path fails fast.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from llm_gateway.config.tracing import TracingConfig, export_proxy_problem
from llm_gateway.tracing.build import missing_extra
from llm_gateway.worker.config import CLIENT_BOUNDS, WorkerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a GGUF path, hf://owner/repo/file.gguf, or 'default' (SmolLM2)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port (default: %(default)s)")
    parser.add_argument("--served-name", help="model name to answer to (default: file name)")
    parser.add_argument("--n-gpu-layers", type=int, default=-1,
                        help="layers to offload to the GPU; -1: all (default: %(default)s)")
    parser.add_argument("--n-ctx", type=int, default=4096,
                        help="context size in tokens; 0: the model's (default: %(default)s)")
    parser.add_argument("--n-batch", type=int, default=512,
                        help="prompt tokens per decode (default: %(default)s)")
    parser.add_argument("--n-threads", type=int,
                        help="CPU threads (default: one per physical core)")
    parser.add_argument("--flash-attn", nargs="?", const="on", default="auto",
                        choices=["auto", "on", "off"],
                        help="flash attention; auto: where the device supports it, as "
                             "llama.cpp's own default (default: %(default)s; alone: on)")
    template = parser.add_mutually_exclusive_group()
    template.add_argument("--chat-format", help="a llama-cpp-python chat format name "
                          "(chatml-function-calling enables tools)")
    template.add_argument("--chat-template", help="a Jinja2 chat template file")
    parser.add_argument("--tool-format", default="auto",
                        choices=["auto", "hermes", "llama3", "mistral"],
                        help="the model's tool-call syntax; auto: read from the chat template "
                             "(default: %(default)s)")
    parser.add_argument("--lora", help="a LoRA adapter (GGUF) to apply")
    parser.add_argument("--embeddings", default=True, action=argparse.BooleanOptionalAction,
                        help="serve /v1/embeddings, from a second context on the same model "
                             "beside chat (default: on)")
    # The flag's name when embeddings were off by default; still taken, now a no-op.
    parser.add_argument("--embedding", dest="embeddings", action="store_true",
                        help="the same as --embeddings")
    parser.add_argument("--max-queue", type=int, default=16,
                        help="requests that may wait for the model; more get 429 "
                             "(default: %(default)s)")
    clients = parser.add_argument_group("client bounds (spawned workers get the gateway's)")
    clients.add_argument("--max-body-bytes", type=int, default=CLIENT_BOUNDS.max_body_bytes,
                         help="largest request body; a larger one is a 413 "
                              "(default: %(default)s)")
    clients.add_argument("--header-timeout-seconds", type=float,
                         default=CLIENT_BOUNDS.header_timeout_seconds,
                         help="a request's head must arrive within this of its first byte, "
                              "else 408 (default: %(default)s)")
    clients.add_argument("--body-timeout-seconds", type=float,
                         default=CLIENT_BOUNDS.body_timeout_seconds,
                         help="longest wait for the next piece of a body, else 408 "
                              "(default: %(default)s)")
    clients.add_argument("--body-min-bytes-per-second", type=float,
                         default=CLIENT_BOUNDS.body_min_bytes_per_second,
                         help="a body's least average rate after that first wait, else 408; "
                              "0: none (default: %(default)s)")
    parser.add_argument("--engine", choices=["batching", "simple"], default="batching",
                        help="batching: up to --parallel requests decoded together; simple: "
                             "one at a time (default: %(default)s)")
    parser.add_argument("--parallel", type=int, default=8,
                        help="sequences the batching engine decodes together "
                             "(default: %(default)s)")
    parser.add_argument("--kv-unified", action="store_true",
                        help="batching: one KV cache of --n-ctx cells shared by all sequences "
                             "(less memory; answers may drift from those given alone) instead "
                             "of --n-ctx cells for each")
    parser.add_argument("--cache-slots", type=int,
                        help="batching: sequence ids that keep finished sequences' prefixes "
                             "besides the running ones (default: as many as --parallel with "
                             "--kv-unified, where they cost no memory; else 0: each would take "
                             "--n-ctx cells of its own, and finished sequences stay cached on "
                             "idle running ids, as llama-server's slots)")
    parser.add_argument("--sample-threads", type=int,
                        help="batching: threads that sample a step's sequences in parallel; 1: "
                             "on the engine thread (default: up to 4 from 4 threads, else 1)")
    parser.add_argument("--backend-sampling", action="store_true",
                        help="batching: sample inside the decode (llama.cpp's backend "
                             "sampling) where a request allows it: not with logprobs, n > 1 "
                             "or a grammar (default: off)")
    parser.add_argument("--decode-overlap", choices=["auto", "on", "off"], default="auto",
                        help="batching: make the last step's text and events while the next "
                             "decode runs; auto: where the model is on a GPU, whose decode "
                             "runs on after llama_decode returns (default: %(default)s)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the short decode at load that spares the first request "
                             "the first decode's cost (mapping weights in, loading kernels)")
    parser.add_argument("--seed", type=int, help="seed for requests that bring none")
    traces = parser.add_argument_group(
        "tracing (requests with a traceparent; grpc: the otel extra)")
    traces.add_argument("--otlp-endpoint", help="export spans here (OTLP); default: none")
    traces.add_argument("--otlp-protocol", choices=["http", "grpc"], default="http",
                        help="OTLP over http (protobuf) or grpc (default: %(default)s)")
    traces.add_argument("--otlp-service-name", default="llm-gateway-worker",
                        help="the spans' service.name (default: %(default)s)")
    traces.add_argument("--otlp-proxy", default="env",
                        help="env (the environment's https_proxy...), none, or "
                             "http://host:port (default: %(default)s)")
    traces.add_argument("--otlp-header", action="append", default=[], metavar="NAME=ENV",
                        help="an export header, its value read from the variable ENV")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])


def config_from_args(args: argparse.Namespace) -> WorkerConfig:
    return WorkerConfig(
        model=args.model, host=args.host, port=args.port, served_name=args.served_name,
        n_gpu_layers=args.n_gpu_layers, n_ctx=args.n_ctx, n_batch=args.n_batch,
        n_threads=args.n_threads, flash_attn=args.flash_attn, chat_format=args.chat_format,
        chat_template=args.chat_template, tool_format=args.tool_format, lora=args.lora,
        embeddings=args.embeddings,
        max_queue=args.max_queue, seed=args.seed, log_level=args.log_level,
        max_body_bytes=args.max_body_bytes, header_timeout_seconds=args.header_timeout_seconds,
        body_timeout_seconds=args.body_timeout_seconds,
        body_min_bytes_per_second=args.body_min_bytes_per_second,
        engine=args.engine, parallel=args.parallel, kv_unified=args.kv_unified,
        sample_threads=args.sample_threads, cache_slots=args.cache_slots,
        backend_sampling=args.backend_sampling,
        decode_overlap=args.decode_overlap, warmup=args.warmup,
        tracing=_tracing(args),
    )


def _tracing(args: argparse.Namespace) -> TracingConfig | None:
    """--otlp-*: the gateway's tracing section as its spawned workers get it."""
    if args.otlp_endpoint is None:
        return None
    headers = dict(item.partition("=")[::2] for item in args.otlp_header)
    return TracingConfig(enabled=True, endpoint=args.otlp_endpoint,
                         protocol=args.otlp_protocol, service_name=args.otlp_service_name,
                         proxy=args.otlp_proxy,
                         headers_env=headers)


def _precheck(config: WorkerConfig) -> str | None:
    """What is wrong with the settings, found without loading anything; None if nothing."""
    from llm_gateway.worker.models import ModelSourceError, needs_download, resolve_source
    from llm_gateway.worker.templates import TemplateError, handler_for

    if config.max_queue < 0:
        return "--max-queue must be 0 or more"
    if config.max_body_bytes < 1:
        return "--max-body-bytes must be 1 or more"
    if config.header_timeout_seconds <= 0 or config.body_timeout_seconds <= 0:
        return "--header-timeout-seconds and --body-timeout-seconds must be more than 0"
    if config.body_min_bytes_per_second < 0:
        return "--body-min-bytes-per-second must be 0 or more"
    if config.tracing is not None and (problem := missing_extra(config.tracing)):
        return (problem.replace("tracing.enabled is true", "--otlp-endpoint is given")
                .replace("use protocol: http, or set tracing.enabled: false",
                         "or use --otlp-protocol http"))
    if config.tracing is not None and (problem := export_proxy_problem(config.tracing.proxy)):
        return f"--otlp-proxy {problem}"
    if config.parallel < 1:
        return "--parallel must be 1 or more"
    if config.sample_threads is not None and config.sample_threads < 1:
        return "--sample-threads must be 1 or more"
    if config.cache_slots is not None and config.cache_slots < 0:
        return "--cache-slots must be 0 or more"
    if config.n_ctx < 0 or config.n_batch < 1:
        return "--n-ctx must be 0 or more and --n-batch 1 or more"
    try:
        if not needs_download(config.model):
            resolve_source(config.model)
        if config.chat_format:
            handler_for(config.chat_format)
    except (ModelSourceError, TemplateError) as exc:
        return str(exc)
    for flag, path in (("--chat-template", config.chat_template), ("--lora", config.lora)):
        if path:
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                return f"{flag} {path}: {exc.strerror}"
    return None


def run_worker(config: WorkerConfig) -> int:
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = _precheck(config)
    if problem:
        print(f"llm-gateway worker: {problem}", file=sys.stderr)
        return 2

    import uvicorn

    from llm_gateway.app.client_timeouts import HttpToolsClientTimeouts, Pace, with_pace
    from llm_gateway.worker.server import create_app

    # uvicorn re-raises SIGTERM once it has drained; a drained shutdown is a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pace = Pace(config.header_timeout_seconds, config.body_timeout_seconds,
                config.body_min_bytes_per_second)
    # The gateway's protocol, for its bounds on a request's head (time and size) and on a
    # body answered before it was read; a worker pod may be reached without the gateway.
    uvicorn.run(create_app(config), host=config.host, port=config.port, lifespan="on",
                loop="uvloop", http=with_pace(HttpToolsClientTimeouts, pace),
                access_log=False, server_header=False,
                log_level=config.log_level, timeout_graceful_shutdown=10)
    return 0

