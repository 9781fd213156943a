"""What makes two requests "the same": the key under which they share a call or a cached answer.

The identity is a digest of

* the **scope**: the team (or the key, for a key without a team) so that no answer crosses
  teams; teams with ``shared_cache`` all use one shared scope instead, both for the cache and
  for coalescing (an opt-in on both sides: a team that did not opt in never sees theirs);
* the **endpoint** (a chat answer is not a completion answer);
* the ``openai-beta`` request header, the one forwarded header that selects API behaviour;
* the **canonical body**: the parsed JSON re-serialised with sorted keys, so key order and
  whitespace do not matter, with every field included except ``stream`` and
  ``stream_options``. Those two change only the answer's *shape* (one JSON body or SSE events;
  the usage chunk), which grouping converts per waiter, so a streaming and a non-streaming
  request share. Everything else stays in, even fields that look harmless: ``user`` (and
  ``safety_identifier``) attribute a request to an end user for OpenAI's abuse tracking, so
  two end users never share one upstream request; ``metadata``/``store`` ask OpenAI to keep
  the completion under that metadata; ``n``, ``logprobs``, ``max_tokens`` and the sampling
  parameters change the answer itself. Numbers compare as written: ``0`` and ``0.0`` differ.

The model name is the one asked for (it is in the body): aliases of one model do not share.
"""

from __future__ import annotations

from hashlib import blake2b

import orjson

from llm_gateway.call import Call
from llm_gateway.principal import Principal

# Shape-only fields: the grouping layer hands each waiter the shape it asked for.
SHAPE_FIELDS = ("stream", "stream_options")
SHARED_SCOPE = "shared"


def scope_of(principal: Principal | None) -> str:
    """The namespace an answer may be shared within."""
    if principal is None:
        return "anonymous"
    if principal.shared_cache:
        return SHARED_SCOPE
    if principal.team:
        return "team:" + principal.team
    return "key:" + principal.key_id


def canonical_body(call: Call) -> bytes:
    body = call.body
    if "stream" in body or "stream_options" in body:
        body = {k: v for k, v in body.items() if k not in SHAPE_FIELDS}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def identity(call: Call, principal: Principal | None) -> str:
    """The hex digest two requests share exactly when one's answer is right for the other."""
    beta = call.headers.get("openai-beta", "")
    head = f"{scope_of(principal)}\n{call.endpoint}\n{beta}\n".encode()
    return blake2b(head + canonical_body(call), digest_size=20).hexdigest()
