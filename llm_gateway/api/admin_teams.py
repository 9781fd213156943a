"""/admin/teams: create, list, show and change teams (config-file teams are read-only)."""

from __future__ import annotations

from starlette.requests import Request

from llm_gateway.api.admin_auth import admin_state, json_body, json_response
from llm_gateway.web.responses import BytesResponse


async def create_team(request: Request) -> BytesResponse:
    state = admin_state(request)
    fields = await json_body(request, "adminCreateTeam")
    record = await state.auth.teams.create(fields)
    return json_response(record.to_json(), 201)


async def list_teams(request: Request) -> BytesResponse:
    state = admin_state(request)
    records = await state.auth.teams.list()
    return json_response({"object": "list", "data": [r.to_json() for r in records]})


async def get_team(request: Request) -> BytesResponse:
    state = admin_state(request)
    record = await state.auth.teams.get(request.path_params["team"])
    body = record.to_json()
    keys = state.auth.keys
    if keys is not None:
        now = state.auth.clock()
        members = await keys.list(team=record.name, include_inactive=True)
        body["keys"] = [k.to_json(now) for k in members]
    return json_response(body)


async def update_team(request: Request) -> BytesResponse:
    state = admin_state(request)
    fields = await json_body(request, "adminUpdateTeam")
    record = await state.auth.teams.update(request.path_params["team"], fields)
    state.auth.team_changed(record.name)  # cached principals carry its old settings
    return json_response(record.to_json())
