"""The admission protocol between limits and accounting: what admitting one call reserved,
settled once when the call is over. Limits implements it (`limits.gate.Reservation`);
accounting settles it; both import it from here, downward."""

from __future__ import annotations


class Admission:
    """What admitting one call reserved; settled once with what it really used."""

    __slots__ = ("headers",)

    def __init__(self, headers: list[tuple[str, str]] | None = None) -> None:
        self.headers = headers or []  # x-ratelimit-* for the response

    def settle(self, tokens: int, cost: float) -> None:
        """The call is over and used this much (0, 0: nothing). Called exactly once; never
        blocks (any shared-store work runs in the background)."""


NO_LIMITS = Admission()  # shared by every call no limit applies to: nothing to settle
