"""Events are facts: frozen once built, every change a new event (``model_copy(update=...)``)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from ingest.event import (
    EVENT_TYPES,
    ClientInfo,
    EnvelopeInfo,
    ExportedItem,
    Finding,
    HeaderSummary,
    MessageScanned,
    Part,
    Timings,
    from_json,
    to_json,
)
from ingest.found_parts import merge_found_parts
from scanners.base import PartInfo
from tests.factories import make_event

# Every model that is part of an event (the event types and what they are made of).
MODELS: list[type[BaseModel]] = [*EVENT_TYPES.values(), EnvelopeInfo, ClientInfo, HeaderSummary, Part,
                                 Finding, Timings, ExportedItem]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_event_model_is_frozen(model: type[BaseModel]) -> None:
    assert model.model_config.get("frozen") is True


def test_an_event_and_what_it_holds_refuse_assignment() -> None:
    ev = make_event()
    targets: list[tuple[Any, str, Any]] = [
        (ev, "action", "tempfail"), (ev, "raw_message", b""), (ev.client, "relay", True),
        (ev.headers, "subject", "x"), (ev.envelope, "sender", "x@example.org"),
        (ev.parts[0], "detected_type", "x"), (ev.timings, "total_ms", 1.0),
    ]
    for obj, name, value in targets:
        with pytest.raises(ValidationError, match="frozen"):
            setattr(obj, name, value)
    changed = ev.model_copy(update={"action": "tempfail"})
    assert changed.action == "tempfail" and ev.action == "deliver"


def test_decoding_with_the_raw_message_builds_the_event_with_it() -> None:
    ev = make_event()
    body = to_json(ev, with_raw=False)
    typed = from_json(body, ev.raw_message, type_="message.scanned")
    assert isinstance(typed, MessageScanned) and typed.raw_message == ev.raw_message
    assert typed == ev == from_json(body, ev.raw_message)
    bare = from_json(body, type_="message.scanned")
    assert isinstance(bare, MessageScanned) and bare.raw_message == b""


def test_found_parts_leave_the_parts_they_refine_alone() -> None:
    parts = [Part(path="1", content_type="application/octet-stream", size=4, sha256="0" * 64)]
    found = [PartInfo("1", "application/octet-stream", "application/zip", None, 4, "0" * 64),
             PartInfo("1!a.exe", "application/x-msdownload", "application/x-dosexec", "a.exe", 2, "1" * 64)]
    merged = merge_found_parts(parts, found)
    assert [(p.path, p.detected_type) for p in merged] == [
        ("1", "application/zip"), ("1!a.exe", "application/x-dosexec")]
    assert len(parts) == 1 and parts[0].detected_type is None
