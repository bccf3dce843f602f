"""Journal reads are bounded by bytes as well as by count."""

from __future__ import annotations

from pathlib import Path

from ingest.journal import Journal


def fill(j: Journal, sizes: list[int]) -> None:
    j.append_many(
        (f"id-{i}", "message.scanned", b"{}", b"x" * size) for i, size in enumerate(sizes)
    )


def test_read_stops_at_max_bytes_but_always_returns_one(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db") as j:
        fill(j, [600, 600, 600, 600])
        assert [e.seq for e in j.read(0, 10, max_bytes=1000)] == [1, 2]  # 1,204 bytes >= 1,000
        assert [e.seq for e in j.read(0, 10, max_bytes=10)] == [1]  # one big entry still comes
        assert [e.seq for e in j.read(2, 10, max_bytes=10**6)] == [3, 4]
        assert [e.seq for e in j.read(0, 3, max_bytes=10**6)] == [1, 2, 3]  # the count still binds
        # without the raw messages only the event bodies count
        assert len(j.read(0, 10, with_raw=False, max_bytes=1000)) == 4
