"""The one direction rule (scanners.direction), as events, SQL rows, metrics and hunts read it."""

from __future__ import annotations

import json

import pytest

from ingest.event import ClientInfo
from scanners.direction import DIRECTIONS, direction, leaves_site


@pytest.mark.parametrize(("relay", "ip", "outbound", "local", "expected"), [
    (True, "192.0.2.1", None, False, "outbound"),  # an event before client.outbound: relay decides
    (False, "192.0.2.1", None, False, "inbound"),
    (False, None, None, False, "local"),  # no client IP: injected here
    (False, None, True, True, "outbound"),  # injected here to a recipient outside the site
    (False, None, False, True, "local"),  # injected here, nothing leaves
    (True, "192.0.2.1", True, False, "outbound"),
    (False, "192.0.2.1", False, False, "inbound"),
])
def test_rule(relay: bool, ip: str | None, outbound: bool | None, local: bool, expected: str) -> None:
    assert direction(relay, ip, outbound, local) == expected
    assert expected in DIRECTIONS
    assert leaves_site(relay, outbound) == (expected == "outbound")


def test_events_old_and_new_read_the_same_rule() -> None:
    old = ClientInfo.model_validate(json.loads('{"ip": "192.0.2.1", "relay": true}'))
    assert old.outbound is None and old.direction == "outbound"
    assert ClientInfo.model_validate({"ip": None}).direction == "local"
    injected_out = ClientInfo(ip=None, local=True, outbound=True, peer_uid=1000)
    assert injected_out.direction == "outbound"
    assert ClientInfo(ip=None, local=True, outbound=False).direction == "local"
    assert ClientInfo(ip="198.51.100.7", outbound=False).direction == "inbound"


def test_summary_row_takes_the_event_direction() -> None:
    from compliance.summaries import message_row
    from tests.factories import make_event

    ev = make_event()
    ev = ev.model_copy(update={"client": ClientInfo(ip=None, local=True, outbound=True)})
    assert message_row(1, ev)["direction"] == "outbound"
