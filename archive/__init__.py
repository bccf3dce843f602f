"""Archive and quarantine maildirs: the durable copies auditors and admins read.

The archive is a projection of the event log, so every write here must be safe
to repeat: names come from the event, never from mail, and a replay rewrites
nothing that is already on disk.
"""
