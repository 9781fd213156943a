"""/admin/keys: create, list, show, change, revoke and rotate gateway keys.

Every change also updates this replica's key cache (a key that stopped working is
remembered as refused, even if the database fails later), so it applies here at once; other
replicas see it within auth.cache_seconds.
"""

from __future__ import annotations

from starlette.requests import Request

from llm_gateway.api.admin_auth import (
    admin_state,
    json_body,
    json_response,
    key_store,
    query_flag,
)
from llm_gateway.web.responses import BytesResponse


async def create_key(request: Request) -> BytesResponse:
    state = admin_state(request)
    fields = await json_body(request, "adminCreateKey")
    record, key = await key_store(state).create(fields)
    return json_response({**record.to_json(state.auth.clock()), "key": key}, 201)


async def list_keys(request: Request) -> BytesResponse:
    state = admin_state(request)
    records = await key_store(state).list(
        team=request.query_params.get("team") or None,
        include_inactive=query_flag(request, "include_disabled"),
    )
    now = state.auth.clock()
    return json_response({"object": "list", "data": [r.to_json(now) for r in records]})


async def get_key(request: Request) -> BytesResponse:
    state = admin_state(request)
    record = await key_store(state).get(request.path_params["key_id"])
    return json_response(record.to_json(state.auth.clock()))


async def update_key(request: Request) -> BytesResponse:
    state = admin_state(request)
    fields = await json_body(request, "adminUpdateKey")
    record = await key_store(state).update(request.path_params["key_id"], fields)
    state.auth.key_changed(record)
    return json_response(record.to_json(state.auth.clock()))


async def revoke_key(request: Request) -> BytesResponse:
    state = admin_state(request)
    record = await key_store(state).revoke(request.path_params["key_id"])
    state.auth.key_changed(record)
    return json_response(record.to_json(state.auth.clock()))


async def rotate_key(request: Request) -> BytesResponse:
    state = admin_state(request)
    record, key = await key_store(state).rotate(request.path_params["key_id"])
    state.auth.key_changed(record, rotated=True)
    return json_response({**record.to_json(state.auth.clock()), "key": key})
