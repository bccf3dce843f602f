"""The SQL side of compliance: the summary store, audit search and their schema.

Everything here is a projection of the event log, so any table can be dropped
and rebuilt by replaying the journal; the schema itself only changes through
Alembic migrations (``qscan db upgrade``).
"""
