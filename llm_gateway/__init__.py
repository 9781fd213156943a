"""llm-gateway: one OpenAI-compatible endpoint for upstream APIs and local llama.cpp workers."""

__version__ = "0.1.0"
