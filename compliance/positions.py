"""What a consumer's stored positions cover, whichever log it reads.

A SQL consumer (summaries, notify) stores its position in ``consumer_positions``
under a name that says what it is:

- ``NAME``: fed from the journal; the position is a journal sequence number
  (everything up to and including it is applied);
- ``NAME@kafka.TOPIC.P``: fed from partition P of a Kafka topic; the position is
  the partition's next offset to read (everything below it is applied);
- ``NAME@kafka.TOPIC.P#at`` / ``#id``: the consumer's anchor (qscan/wiring/kafka_anchor.py),
  not a position.

``qscan verify`` and ``qscan status`` (its Kafka lag) both read positions through :func:`coverage`,
so neither looks for one spelling and misses the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from compliance.models import ConsumerPosition

_KAFKA = re.compile(r"^(?P<name>[^@]+)@kafka\.(?P<topic>.+)\.(?P<partition>\d+)$")


@dataclass(frozen=True)
class Coverage:
    """A consumer's stored positions: ``journal`` (a sequence number) and/or Kafka
    offsets ``{topic: {partition: next offset}}``."""

    name: str
    journal: int | None = None
    kafka: dict[str, dict[int, int]] = field(default_factory=dict)

    def kafka_for(self, topic: str) -> dict[int, int]:
        return self.kafka.get(topic, {})

    @property
    def started(self) -> bool:
        return self.journal is not None or any(self.kafka.values())

    def source(self, preferred: str, topic: str | None) -> str | None:
        """Which log the positions are for: ``preferred`` ('journal' or 'kafka') when
        something is stored for it, else the other one when that has positions, else None."""
        have = {"journal": self.journal is not None,
                "kafka": topic is not None and bool(self.kafka_for(topic))}
        if have.get(preferred):
            return preferred
        other = "kafka" if preferred == "journal" else "journal"
        return other if have[other] else None


def parse(rows: list[tuple[str, int]], name: str) -> Coverage:
    """``Coverage`` of consumer ``name`` from ``(position name, value)`` rows."""
    journal: int | None = None
    kafka: dict[str, dict[int, int]] = {}
    for key, value in rows:
        if key == name:
            journal = int(value)
            continue
        m = _KAFKA.match(key)
        if m is None or m["name"] != name:
            continue  # another consumer, or an anchor (#at / #id)
        kafka.setdefault(m["topic"], {})[int(m["partition"])] = int(value)
    return Coverage(name, journal, kafka)


def coverage(engine: Engine, name: str) -> Coverage:
    """Every position consumer ``name`` stored in the SQL store (read-only)."""
    with engine.connect() as conn:
        rows = [(str(k), int(v)) for k, v in conn.execute(
            select(ConsumerPosition.name, ConsumerPosition.position)
            .where((ConsumerPosition.name == name) | ConsumerPosition.name.like(f"{name}@kafka.%")))]
    return parse(rows, name)
