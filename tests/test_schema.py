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
