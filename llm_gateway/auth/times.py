"""Points in time as users write them: `30d`, `12h`, `2026-12-31`, ISO 8601, epoch seconds.

Shared by the admin API and the CLI, so `--expires 30d` and `"expires_at": "30d"` agree.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from llm_gateway.errors import InvalidRequest

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# What a date can show (years 1 to 9999): beyond it a time cannot be listed or reported.
MIN_EPOCH = datetime(1, 1, 1, tzinfo=UTC).timestamp()
MAX_EPOCH = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()


def parse_instant(value: object, now: float, *, param: str, future: bool) -> float:
    """Epoch seconds for `value`; a relative duration counts forward (`future`) or back."""
    if isinstance(value, bool):
        raise _bad(param, value)
    if isinstance(value, int | float):
        try:
            return in_range(float(value), param)
        except OverflowError:  # an int too big for a float
            return in_range(math.inf, param)
    if not isinstance(value, str) or not value.strip():
        raise _bad(param, value)
    relative = _RELATIVE.match(value)
    if relative:
        seconds = float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        return in_range(now + seconds if future else now - seconds, param)
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(param, value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # dates and naive times are UTC, like the ledger
    return in_range(moment.timestamp(), param)


def in_range(epoch: float, param: str) -> float:
    """`epoch`, checked to be a time a date can show (else a 400 naming `param`)."""
    if not math.isfinite(epoch) or not MIN_EPOCH <= epoch <= MAX_EPOCH:
        raise InvalidRequest(
            f"Invalid value for '{param}': out of range; expected a time between the years 1 "
            "and 9999.", param=param, code="invalid_value")
    return epoch


def stored_instant(epoch: float | None) -> float | None:
    """A time read from the database, kept within range: a row written before the range was
    checked still lists (an expiry past year 9999 is the same as one at its end)."""
    if epoch is None or math.isnan(epoch):
        return None
    return min(max(epoch, MIN_EPOCH), MAX_EPOCH)


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _bad(param: str, value: object) -> InvalidRequest:
    shown = value if isinstance(value, str) and len(value) <= 40 else type(value).__name__
    return InvalidRequest(
        f"Invalid value for '{param}': {shown!r}; expected a duration like '30d' or '12h', "
        "a date (2026-12-31), an ISO 8601 time or epoch seconds.",
        param=param, code="invalid_value",
    )
