"""The model worker: one process serving one model in OpenAI's shapes (`llm-gateway worker`).

Contract with the gateway (which spawns `python -m llm_gateway worker --model SRC --host
127.0.0.1 --port P --served-name NAME ...`):

- It listens at once and loads in the background. `GET /health` answers 200 with
  `{"status": "ok", "model", "source", "queue_depth", "active", "max_queue", "n_ctx",
  "embeddings"}` once loaded, and 503 with status "loading" or "error" (plus `error`) before.
- `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings` take OpenAI bodies as
  they are; `model` is echoed, not checked. `GET /v1/models` lists the served name.
- Errors are OpenAI-shaped. A full queue is 429 `queue_full` with `Retry-After: 1`; not
  loaded yet is 503 `model_loading`; a prompt too long is 400 `context_length_exceeded`.
- `x-request-id` is echoed (or made). A client that disconnects cancels its generation.
- `GET /metrics`: Prometheus text, `llm_worker_*`.

Layout: `server.py` (HTTP) -> `prompts.py`/`templates.py` (request -> job) -> `engines/`
(the `Engine` seam; `simple.py` runs one sequence at a time) and `models.py` (sources).
"""
