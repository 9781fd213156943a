"""operationId -> handler: the one table that ties our OpenAPI documents to code."""

from __future__ import annotations

from llm_gateway.api import chat, completions, embeddings, health, metrics, models, responses

HANDLERS = {
    "createChatCompletion": chat.create_chat_completion,
    "createCompletion": completions.create_completion,
    "createEmbedding": embeddings.create_embedding,
    "listModels": models.list_models,
    "retrieveModel": models.retrieve_model,
    "createResponse": responses.create_response,
    "getResponse": responses.get_response,
    "deleteResponse": responses.delete_response,
    # gateway.yaml
    "getHealthz": health.get_healthz,
    "getReadyz": health.get_readyz,
    "getMetrics": metrics.get_metrics,
}
