"""The auth tables, migrated by `db.migrate("auth", AUTH_STEPS)` at start and by the CLI.

Portable SQL (SQLite and PostgreSQL): times are epoch seconds (DOUBLE PRECISION), settings
are JSON text, booleans are 0/1 integers. A key's secret is never a column: only its keyed
hash (see auth/secret.py) and its last four characters, for recognising it in a list.
Steps are append-only: a released step is never edited, a change is a new step.
"""

from __future__ import annotations

AUTH_STEPS: list[str] = [
    """
    CREATE TABLE auth_teams (
        name TEXT PRIMARY KEY,
        models TEXT NOT NULL,
        limits TEXT,
        budget TEXT,
        upstreams TEXT NOT NULL,
        team_grouping TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE auth_keys (
        id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        team TEXT,
        models TEXT NOT NULL,
        limits TEXT,
        budget TEXT,
        expires_at DOUBLE PRECISION,
        disabled INTEGER NOT NULL DEFAULT 0,
        revoked_at DOUBLE PRECISION,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        last4 TEXT NOT NULL
    );
    CREATE INDEX auth_keys_team ON auth_keys (team)
    """,
    # Passthrough endpoint families per team and key (JSON lists; NULL = the config's).
    """
    ALTER TABLE auth_teams ADD COLUMN endpoints TEXT;
    ALTER TABLE auth_keys ADD COLUMN endpoints TEXT
    """,
]
