"""HTTP building blocks shared by the gateway's app and the local worker's server: response
classes, the OpenAPI documents, request validation. They import nothing of the gateway's
layers, so every layer (and the worker) imports them downward."""
