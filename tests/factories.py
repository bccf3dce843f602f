"""Build events for consumer tests without running the daemon."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from ingest.envelope import build_envelope
from ingest.event import (
    Action,
    Category,
    ClientInfo,
    EnvelopeInfo,
    Finding,
    HeaderSummary,
    MessageScanned,
    Part,
    QueueFailed,
)
from ingest.ids import uuid7


def raw_message(subject: str = "Hello", body: str = "Hi there.\n", frm: str = "a@example.com") -> bytes:
    return (
        f"From: {frm}\nTo: b@example.org\nSubject: {subject}\n"
        f"Message-ID: <{uuid7()}@example.com>\nDate: Wed, 25 Nov 2026 10:00:00 +0000\n\n{body}"
    ).encode()


def make_event(
    sender: str = "alice@example.com",
    recipients: list[str] | None = None,
    subject: str = "Quarterly report",
    action: Action = Action.DELIVER,
    category: Category = Category.CLEAN,
    reason: str = "clean",
    client_ip: str | None = "192.0.2.10",
    relay: bool = False,
    attachments: list[tuple[str, str, int]] | None = None,
    findings: list[Finding] | None = None,
    when: datetime | None = None,
    raw: bytes | None = None,
    **extra: Any,
) -> MessageScanned:
    recipients = recipients or ["bob@example.org"]
    raw = raw if raw is not None else raw_message(subject, frm=sender or "mailer-daemon@example.com")
    parts = [Part(path="1", content_type="text/plain", size=10, sha256="0" * 64)]
    for i, (name, ctype, size) in enumerate(attachments or [], start=2):
        parts.append(Part(path=str(i), content_type=ctype, filename=name, size=size, sha256="1" * 64))
    return MessageScanned(
        event_id=str(uuid7()),
        time=when or datetime.now(UTC),
        host="mx1.example.com",
        envelope=EnvelopeInfo(
            sender=sender,
            recipients=recipients,
            raw=build_envelope(sender.encode(), [r.encode() for r in recipients]),
        ),
        client=ClientInfo(ip=client_ip, host="client.example.net", relay=relay, local=client_ip is None),
        headers=HeaderSummary.model_validate(
            {"from": sender, "to": ", ".join(recipients), "subject": subject,
             "message_id": "<m1@example.com>", "date": "Wed, 25 Nov 2026 10:00:00 +0000"}
        ),
        size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        parts=parts,
        findings=findings or [],
        category=category,
        action=action,
        reason=reason,
        raw_message=raw,
        **extra,
    )


def make_queue_failed(ref: MessageScanned, exit_code: int = 71) -> QueueFailed:
    return QueueFailed(
        event_id=str(uuid7()),
        time=datetime.now(UTC),
        host=ref.host,
        ref_event_id=ref.event_id,
        exit_code=exit_code,
        reply="Zqmail-queue failed",
    )
