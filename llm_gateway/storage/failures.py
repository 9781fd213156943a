"""Database failures that are the database's state, not the request's: a 503 for the caller.

A read-only or full disk, a locked or lost SQLite file, a PostgreSQL server that is down,
read-only (a standby) or out of connections: the request was fine and may succeed later, so
the admin API answers 503 with what happened, and the ledger writer keeps records spooled.
Constraint violations and SQL errors are bugs or conflicts, and are left alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from llm_gateway.errors import ServiceUnavailable

# PostgreSQL SQLSTATE classes and codes meaning "the server cannot do it now": connection
# exceptions, insufficient resources (disk full, too many connections), operator intervention
# (shutting down, cannot connect now), system errors (I/O), and read-only transactions.
_PG_CLASSES = ("08", "53", "57", "58")
# SQLite primary result codes of the same kind: PERM, BUSY, LOCKED, NOMEM, READONLY, IOERR,
# CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_SQLITE_STATES = frozenset({3, 5, 6, 7, 8, 10, 11, 13, 14, 15, 26})
_PG_CODES = frozenset({"25006"})


class DatabaseUnavailable(ServiceUnavailable):
    code = "database_unavailable"


class DatabaseLost(DatabaseUnavailable):
    """The SQLite file opened at start was deleted or replaced: no retry brings it back."""

    code = "database_lost"


def unavailable(exc: BaseException, where: str) -> DatabaseUnavailable | None:
    """The 503 to raise for a driver error `exc` on the database at `where`, or None when
    `exc` is not the database's state (a constraint, a bug): re-raise it as it is."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if isinstance(exc, sqlite3.Error):
        if (getattr(exc, "sqlite_errorcode", 1) & 0xFF) not in _SQLITE_STATES:
            return None  # SQLITE_ERROR (bad SQL), a constraint...: not the file's state
        return DatabaseUnavailable(f"The database ({where}) cannot be used right now: {exc}. "
                                   "Nothing was changed; retry once it is writable again.")
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate[:2] in _PG_CLASSES or sqlstate in _PG_CODES):
        return DatabaseUnavailable(f"The database ({where}) cannot be used right now: {exc}. "
                                   "Nothing was changed; retry later.")
    if isinstance(exc, OSError | TimeoutError) or type(exc).__name__ in _PG_CLIENT_ERRORS:
        return DatabaseUnavailable(f"The database ({where}) cannot be reached: "
                                   f"{type(exc).__name__}: {exc}. Retry later.")
    return None


@contextmanager
def translated(where: str) -> Iterator[None]:
    """Raise DatabaseUnavailable for the database's failures inside the block; anything else
    (a constraint, a bug, an error raised on purpose) goes through untouched."""
    try:
        yield
    except Exception as exc:
        failure = unavailable(exc, where)
        if failure is None or failure is exc:
            raise
        raise failure from exc


# asyncpg's client-side "the connection is gone" errors, by name: asyncpg is an optional extra.
_PG_CLIENT_ERRORS = frozenset({"InterfaceError", "ConnectionDoesNotExistError",
                               "InternalClientError", "ConnectionFailureError"})
