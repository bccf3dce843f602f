"""qmail-queue stage, event schema and the log API.

This package's ``__init__`` must stay empty of imports: ``qscan-queue`` imports
``ingest.queue_client`` on every message, and anything imported here would be
paid for at each SMTP transaction.
"""
