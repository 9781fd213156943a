"""The database behind keys, teams and the usage ledger: SQLite or PostgreSQL."""
