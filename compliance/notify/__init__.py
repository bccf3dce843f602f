"""Notifications: who is told that a message was quarantined, rejected or caught by DLP.

A consumer of the log (``qscan consume notify``). For each event it decides the
audience (audience.py), renders one message per person in their language from
Jinja2 templates and gettext catalogs (render.py, compose.py), and writes it to an
SQL outbox in the same transaction as its log position (sink.py, outbox.py). A
delivery loop then hands outbox rows to an SMTP relay or qmail-inject
(delivery.py), exactly once per (event, recipient, kind), retrying with back-off.
"""
