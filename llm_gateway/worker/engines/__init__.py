"""Engines run the model behind one seam (`base.Engine`); the HTTP layer knows only that seam."""

from llm_gateway.worker.engines.base import (
    Engine,
    EngineClosed,
    EngineError,
    EngineStats,
    Event,
    Finished,
    Job,
    ModelInfo,
    Piece,
    QueueFull,
    SamplingParams,
    TokenLogprob,
    TopLogprob,
)

__all__ = [
    "Engine",
    "EngineClosed",
    "EngineError",
    "EngineStats",
    "Event",
    "Finished",
    "Job",
    "ModelInfo",
    "Piece",
    "QueueFull",
    "SamplingParams",
    "TokenLogprob",
    "TopLogprob",
]
