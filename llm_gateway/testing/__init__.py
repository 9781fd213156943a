"""Test helpers: :class:`FakeUpstream`, a fake OpenAI server for tests and benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_gateway.testing.fake_upstream import FakeUpstream, RecordedRequest

__all__ = ["FakeUpstream", "RecordedRequest"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `python -m llm_gateway.testing.fake_upstream` does not load the module
    # twice (runpy warns when the package import already pulled it in).
    if name in __all__:
        from llm_gateway.testing import fake_upstream

        return getattr(fake_upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
