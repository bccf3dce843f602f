"""One message: its summary, envelope, headers, parts, findings and history; the raw download.

What SQL knows comes from ``compliance.audit.details`` (as ``qscan audit show``), holds from
``compliance.holds.covering``, releases and requests from ``compliance.quarantine`` (as
``qscan quarantine show``); the headers and the raw download from the checked stored copy or
the journal (``qscan.wiring.compliance.stored_message``, as exports read messages). Mail text
is never markup here: headers are shown as escaped text with their control characters made
visible, and the raw download is an attachment (``application/octet-stream``, ``nosniff``).

A ``user``-role account opens only messages its scope covers; any other id answers 404, the
same as an id that does not exist (no probing for which ids are real). A raw download is for
``web.raw_roles`` only and is a ``message.raw_read`` event on the log before a byte is sent.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from archive.envelope_block import line_ending
from compliance import audit as store
from compliance import holds, quarantine
from ingest.event import MessageRawRead, utc
from ingest.ids import uuid7
from qscan.web.console import Refused, Visit, page

_EVENT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_HEADER_BYTES = 256 * 1024  # shown; a longer header section is cut (and says so)


@dataclass(frozen=True)
class Header:
    name: str
    lines: list[str]  # the value's physical lines, folding kept


@dataclass(frozen=True)
class Happening:
    """One line of a message's history."""

    time: datetime | None
    what: str
    who: str
    detail: str


def header_fields(message: bytes) -> tuple[list[Header], bool]:
    """The header section as (name, value lines), for display only; and whether it was cut."""
    eol_bytes = line_ending(message)
    eol = eol_bytes.decode()
    head = message.split(eol_bytes * 2, 1)[0]
    cut = len(head) > MAX_HEADER_BYTES
    text = head[:MAX_HEADER_BYTES].decode("utf-8", "replace")
    out: list[Header] = []
    for line in text.split(eol):
        if line[:1] in (" ", "\t") and out:
            out[-1].lines.append(line)
        else:
            name, sep, value = line.partition(":")
            out.append(Header(name if sep else "", [value.removeprefix(" ") if sep else line]))
    return out, cut


def history(info: dict[str, Any]) -> list[Happening]:
    """What happened to the message after it was scanned, oldest first."""
    m = info["message"]
    out = [Happening(m["received_at"], "scanned", m["host"],
                     f"{m['action']} ({m['category']}, {m['reason']})")]
    for qf in info["queue_failures"]:
        out.append(Happening(qf["time"], "qmail-queue failed", qf.get("host", ""),
                             f"exit {qf['exit_code']}"))
    if info["quarantine"]:
        q = info["quarantine"]
        out.append(Happening(q["updated_at"], f"quarantine: {q['state']}", "", f"folder {q['folder']}"))
    for r in info["requests"]:
        out.append(Happening(r["time"], "release requested", r["actor"], r["reason"]))
        if r.get("denial_event_id"):
            out.append(Happening(r["denied_at"], f"release {r['state']}", r["denied_by"] or "",
                                 r["denial_reason"] or ""))
    for r in info["releases"]:
        rcpts = ", ".join(json.loads(r["recipients"]))
        extra = f", requested by {r['requested_by']}" if r.get("requested_by") else ""
        out.append(Happening(r["time"], "released" + (" (forced)" if r["forced"] else ""), r["actor"],
                             f"to {rcpts}: {r['reason']}{extra}"))
    for h in info["holds"]:
        out.append(Happening(h["created_at"], f"legal hold {h['matter']!r}", h["created_by"], h["reason"]))
        if h["released_at"]:
            out.append(Happening(h["released_at"], f"hold {h['matter']!r} released", h["released_by"] or "",
                                 h["release_reason"] or ""))
    for e in info["exports"]:
        out.append(Happening(e["finished_at"], f"exported for {e['matter']!r}", "",
                             f"document {e['doc_id']}"))
    if info["deletion"]:
        d = info["deletion"]
        out.append(Happening(d["time"], "stored copy deleted", d["actor"],
                             f"{d['reason']}{' (rule ' + d['rule'] + ')' if d['rule'] else ''}"))
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(out, key=lambda h: utc(h.time) if h.time else epoch)


def _event_id(visit: Visit) -> str:
    event_id = str(visit.request.path_params["event_id"]).lower()
    if not _EVENT_ID.match(event_id):
        raise Refused(404, "There is no such message, or it is not yours to see.")
    return event_id


def _gather(visit: Visit, event_id: str, *, with_copy: bool = True) -> dict[str, Any]:
    from qscan.wiring.compliance import stored_message

    account = visit.account
    assert account is not None
    engine = visit.console.engine
    if not store.visible(engine, event_id, account.scope):
        raise Refused(404, "There is no such message, or it is not yours to see.")
    info = store.details(engine, event_id)
    info["holds"] = [{"matter": h.matter, "hold_id": h.hold_id, "created_at": h.created_at,
                      "created_by": h.created_by, "reason": h.reason, "released_at": h.released_at,
                      "released_by": h.released_by, "release_reason": h.release_reason}
                     for h in holds.covering(engine, event_id, include_released=True)]
    info["releases"] = quarantine.releases(engine, event_id)
    info["requests"] = quarantine.requests(engine, event_id)
    info["raw"], info["source"] = stored_message(visit.cfg, info) if with_copy else (None, "")
    return info


def _may_read_raw(visit: Visit) -> bool:
    return visit.account is not None and visit.account.role in visit.cfg.web.raw_roles


@page()
async def show(visit: Visit) -> Response:
    info = await visit.run(_gather, visit, _event_id(visit))
    raw: bytes | None = info.pop("raw")
    headers, cut = header_fields(raw) if raw is not None else ([], False)
    m = info["message"]
    parts = [{**p, "depth": p["path"].count("/") + p["path"].count("!"),
              "member": "!" in p["path"]} for p in info["parts"]]
    return visit.render("message.html", info=info, m=m, headers=headers, headers_cut=cut, parts=parts,
                        history=history(info), source=info["source"], have_raw=raw is not None,
                        may_read_raw=_may_read_raw(visit))


@page()
async def download(visit: Visit) -> Response:
    account = visit.account
    assert account is not None
    event_id = _event_id(visit)
    if not _may_read_raw(visit):
        raise Refused(403, "Your role may not read raw mail (web.raw_roles).")
    info = await visit.run(_gather, visit, event_id)
    raw: bytes | None = info["raw"]
    if raw is None:
        raise Refused(404, f"This message's stored copy cannot be read ({info['source']}).")
    console = visit.console
    event = MessageRawRead(event_id=str(uuid7()), time=datetime.now(UTC), host=visit.cfg.hostname,
                           ref_event_id=event_id, actor=visit.actor, role=account.role,
                           remote=visit.remote, source=info["source"],
                           sha256=hashlib.sha256(raw).hexdigest())
    await visit.run(console.append, event)  # recorded before a byte is handed out
    return Response(raw, media_type="application/octet-stream", headers={
        "content-disposition": f'attachment; filename="{event_id}.eml"'})


ROUTES = [
    Route("/message/{event_id}", show, name="message"),
    Route("/message/{event_id}/raw", download, methods=["POST"], name="message_raw"),
]
