"""Discovery search (issue 25): a query language, its compilation to SQLite FTS5 and
PostgreSQL full-text search, and the index they search (docs/discovery.md)."""
