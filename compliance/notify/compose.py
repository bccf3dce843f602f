"""The notification as an RFC 5322 message: headers that keep mail loops and injections out.

``Auto-Submitted: auto-replied`` (RFC 3834) so vacation responders and other
robots stay silent, a null envelope sender by default so nothing bounces back, a
Message-ID derived from (event, recipient, kind) so a message sent twice after
an in-doubt crash is recognisably the same one, and ``X-qscan-Notification``
(signed with the site's ``MarkKey``: marks.py) so qscan never notifies about its
own notices while nobody else can silence qscan with that header. Header values are built by the
stdlib ``email`` package (policy SMTP: CRLF, RFC 2047 encoded-words for
non-ASCII) from text that ``render.clean`` already stripped of every control
character: nothing from the reported mail can start a new header line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from compliance.notify.audience import Audience, Notice
from compliance.notify.marks import NOTIFICATION_HEADER, MarkKey, notice_tag
from compliance.notify.render import Rendered, clean

# msg-id = "<" id-left "@" id-right ">" (RFC 5322 3.6.4), dot-atom text only: anything
# else from mail is not echoed into In-Reply-To / References.
_MSG_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,200}@[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\[\]:-]{1,200}>")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who notifications come from."""

    from_address: str
    from_name: str
    envelope_sender: str  # '' = the null sender
    host: str
    mark_key: MarkKey  # signs X-qscan-Notification (the loop guard)


def message_id(event_id: str, recipient: str, kind: str, host: str) -> str:
    return f"<qscan.{event_id}.{kind}.{notice_tag(recipient, kind)}@{host}>"


def original_message_id(value: str | None) -> str | None:
    value = (value or "").strip()
    return value if _MSG_ID.fullmatch(value) else None


def _address(addr: str, name: str = "") -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=clean(name, 80), username=local, domain=domain)


def compose(rendered: Rendered, notice: Notice, *, event_id: str, identity: Identity, when: datetime,
            in_reply_to: str | None = None) -> tuple[str, bytes]:
    """(Message-ID, the message as bytes with CRLF line ends)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(identity.from_address, identity.from_name)
    msg["To"] = _address(notice.address)
    msg["Subject"] = clean(rendered.subject, 250)
    msg["Date"] = format_datetime(when)
    mid = message_id(event_id, notice.address, notice.kind.value, identity.host)
    msg["Message-ID"] = mid
    if notice.audience == Audience.SENDER:
        ref = original_message_id(in_reply_to)
        if ref:
            msg["In-Reply-To"] = ref
            msg["References"] = ref
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg[NOTIFICATION_HEADER] = identity.mark_key.sign(notice.kind.value, notice.audience.value, event_id,
                                                      notice.address)
    msg.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    if rendered.html is not None:
        msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    msg["Content-Language"] = rendered.language  # after set_content, which clears Content-*
    return mid, msg.as_bytes()
