"""GET /admin/deployments: each balanced route's deployments and what routing knows of them
now (health, cooldown, calls in flight, latency, their own rpm/tpm use), in this process."""

from __future__ import annotations

from starlette.requests import Request

from llm_gateway.api.admin_auth import admin_state, json_response
from llm_gateway.web.responses import BytesResponse


async def deployments(request: Request) -> BytesResponse:
    state = admin_state(request)
    groups = state.router.groups.values()
    return json_response({"object": "list", "data": [group.snapshot() for group in groups]})
