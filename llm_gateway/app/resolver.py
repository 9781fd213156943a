"""operationId -> handler: the one table that ties our OpenAPI documents to code."""

from __future__ import annotations

from llm_gateway.api import (
    admin_keys,
    admin_models,
    admin_routing,
    admin_teams,
    admin_usage,
    chat,
    completions,
    embeddings,
    health,
    metrics,
    models,
    responses,
)

HANDLERS = {
    "createChatCompletion": chat.create_chat_completion,
    "createCompletion": completions.create_completion,
    "createEmbedding": embeddings.create_embedding,
    "listModels": models.list_models,
    "retrieveModel": models.retrieve_model,
    "createResponse": responses.create_response,
    "getResponse": responses.get_response,
    "deleteResponse": responses.delete_response,
    "listInputItems": responses.list_input_items,
    # gateway.yaml
    "getHealthz": health.get_healthz,
    "getReadyz": health.get_readyz,
    "getMetrics": metrics.get_metrics,
    "adminCreateKey": admin_keys.create_key,
    "adminListKeys": admin_keys.list_keys,
    "adminGetKey": admin_keys.get_key,
    "adminUpdateKey": admin_keys.update_key,
    "adminRevokeKey": admin_keys.revoke_key,
    "adminRotateKey": admin_keys.rotate_key,
    "adminCreateTeam": admin_teams.create_team,
    "adminListTeams": admin_teams.list_teams,
    "adminGetTeam": admin_teams.get_team,
    "adminUpdateTeam": admin_teams.update_team,
    "adminUsage": admin_usage.usage,
    "adminDeployments": admin_routing.deployments,
    "adminModels": admin_models.models,
}
