"""The one exception configuration loading raises."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """Every problem found in a configuration, each ``"<path>: <message>"``.

    Loading collects all problems before raising, so one run of ``llm-gateway config check`` shows
    everything that is wrong instead of one error per edit-and-retry cycle.
    """

    def __init__(self, problems: Iterable[str], source: str | None = None) -> None:
        self.problems: list[str] = list(problems)
        self.source = source
        # Passing the list (not the joined text) keeps the exception picklable with its problems.
        super().__init__(self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)
