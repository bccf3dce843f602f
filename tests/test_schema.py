"""The checked-in JSON Schema is the one the models generate (regenerate: `make schema`)."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.event import json_schema

ROOT = Path(__file__).resolve().parent.parent


def test_checked_in_schema_is_current() -> None:
    on_disk = json.loads((ROOT / "schemas" / "events.v1.json").read_text())
    assert on_disk == json.loads(json.dumps(json_schema())), "run `make schema` and commit the result"


def test_schema_names_every_event_type() -> None:
    schema = json_schema()
    assert {"MessageScanned", "QueueFailed"} <= set(schema["$defs"])
    props = schema["$defs"]["MessageScanned"]["properties"]
    for field in ("event_id", "envelope", "client", "headers", "parts", "findings", "action",
                  "raw_message", "schema_version", "sha256"):
        assert field in props


def test_typed_decode_matches_untyped_and_refuses_a_disagreeing_body() -> None:
    import pytest
    from pydantic import ValidationError

    from ingest.event import from_json, to_json
    from tests.factories import make_event, make_queue_failed

    ev = make_event()
    body = to_json(ev, with_raw=False)
    raw = ev.raw_message
    assert from_json(body, raw, type_="message.scanned") == from_json(body, raw)
    failed = make_queue_failed(ev)
    assert from_json(to_json(failed), type_="message.queue_failed") == failed
    with pytest.raises(ValidationError):  # the log says queue_failed, the body says scanned
        from_json(body, type_="message.queue_failed")
