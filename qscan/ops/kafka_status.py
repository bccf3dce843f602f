"""Kafka-fed consumers in `qscan status`: stored positions per partition and lag.

With ``consumers.source = "kafka"`` a consumer keeps one position per partition in its
own sink (ingest/kafka_source.py): SQL consumers (summaries, notify) as
``NAME@kafka.TOPIC.PARTITION`` rows of ``consumer_positions``, the archive as one
checkpoint file per partition in the archive maildir. A position is the partition's
next offset to read, so the lag is the partition's end offset minus it.

Everything here only reads: positions straight from the SQL store and the checkpoint
files (no sink is built, nothing is created), end offsets from the broker with a
short timeout, in a thread that is abandoned if the broker does not answer in time
(a status check never hangs on a dead broker).
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

from ingest.kafka_log import KafkaLogSettings
from qscan.config import Config


def sql_positions(url: str, name: str, topic: str) -> dict[int, int]:
    """``{partition: position}`` stored by a SQL consumer (summaries, notify), read the way
    ``qscan verify`` reads them (compliance.positions)."""
    from compliance.db import make_engine
    from compliance.positions import coverage

    engine = make_engine(url)
    try:
        return coverage(engine, name).kafka_for(topic)
    finally:
        engine.dispose()


def archive_positions(archive_dir: Path, topic: str) -> dict[int, int]:
    """``{partition: position}`` from the archive's per-partition checkpoint files."""
    from archive.consumer import POSITION_FILE, _safe_key

    prefix = f"{POSITION_FILE}.{_safe_key(f'kafka.{topic}.')}"
    out: dict[int, int] = {}
    if not archive_dir.is_dir():
        return out
    for path in archive_dir.glob(prefix + "*"):
        suffix = path.name[len(prefix):]
        if suffix.isdigit():
            try:
                out[int(suffix)] = int(path.read_text("ascii").strip())
            except (OSError, ValueError):
                continue
    return out


def stored_positions(cfg: Config, name: str, topic: str) -> dict[int, int]:
    from qscan.wiring.pipeline import SINKS

    if SINKS[name].store == "maildir":
        return archive_positions(Path(cfg.archive_maildir), topic)
    return sql_positions(cfg.sql_url, name, topic)


def end_offsets(k: KafkaLogSettings, timeout: float,
                client_id: str) -> tuple[dict[int, int] | None, str | None]:
    """``({partition: end offset}, None)``, or ``(None, why)`` when the broker did not answer."""
    result: dict[str, Any] = {}

    def work() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from kafka import TopicPartition

            from ingest.kafka_log import make_consumer
        ms = max(1000, int(timeout * 1000))
        try:
            consumer = make_consumer(bootstrap_servers=k.bootstrap_servers, client_id=client_id,
                                     group_id=None, enable_auto_commit=False, request_timeout_ms=ms,
                                     bootstrap_timeout_ms=ms, reconnect_backoff_max_ms=ms,
                                     fetch_max_wait_ms=100, max_partition_fetch_bytes=1024,
                                     fetch_max_bytes=65536)
            try:
                parts = consumer.partitions_for_topic(k.topic)
                if not parts:
                    result["error"] = f"topic {k.topic} does not exist (qscan kafka init)"
                    return
                tps = [TopicPartition(k.topic, p) for p in sorted(parts)]
                offsets = {tp: int(off) for tp, off in consumer.end_offsets(tps, timeout_ms=ms).items()}
                # ListOffsets(latest) is the log end offset on Kafka; some Kafka-protocol brokers
                # (Tansu) answer the last batch's base offset + 1 instead. A fetch from there
                # carries the high watermark (and at most one small batch): take the larger.
                consumer.assign(tps)
                for tp in tps:
                    consumer.seek(tp, max(0, offsets.get(tp, 0) - 1))
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and any(consumer.highwater(tp) is None for tp in tps):
                    consumer.poll(timeout_ms=100, max_records=1)
                result["offsets"] = {tp.partition: max(offsets.get(tp, 0), consumer.highwater(tp) or 0)
                                     for tp in tps}
            finally:
                consumer.close(autocommit=False)
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=work, name="status-kafka", daemon=True)
    thread.start()
    thread.join(timeout * 2 + 1)
    if thread.is_alive():
        return None, f"no answer from {', '.join(k.bootstrap_servers)} within {timeout * 2 + 1:g}s"
    if "offsets" in result:
        return result["offsets"], None
    return None, str(result.get("error", "unknown error"))


def kafka_consumers_info(cfg: Config, timeout: float) -> dict[str, Any]:
    """Each enabled Kafka-fed consumer's per-partition positions and, with the broker, lag."""
    k = cfg.log.kafka
    if k is None:
        return {}
    offsets, error = end_offsets(k, timeout, f"qscan-status-{cfg.hostname}")
    out: dict[str, Any] = {"broker": {"bootstrap_servers": list(k.bootstrap_servers), "topic": k.topic,
                                      "reachable": offsets is not None, "error": error},
                           "consumers": {}}
    for name in cfg.consumers.enabled:
        info: dict[str, Any] = {"error": None}
        try:
            stored = stored_positions(cfg, name, k.topic)
        except Exception as exc:  # the SQL store down must not break the status command
            stored = {}
            info["error"] = f"{type(exc).__name__}: {exc}"
        partitions = sorted(set(offsets) if offsets is not None else set(range(k.partitions)) | set(stored))
        parts: dict[int, dict[str, Any]] = {}
        for p in partitions:
            pos = stored.get(p)
            end = offsets.get(p) if offsets is not None else None
            parts[p] = {"position": pos or 0, "stored": pos is not None, "end": end,
                        "lag": max(0, end - (pos or 0)) if end is not None else None}
        info["partitions"] = parts
        info["started"] = bool(stored)
        info["lag"] = sum(x["lag"] for x in parts.values()) if offsets is not None else None
        out["consumers"][name] = info
    return out


def render_lines(info: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for the human table: one per consumer, plus the broker when it is unreachable."""
    rows: list[tuple[str, str, str]] = []
    broker = info.get("broker") or {}
    if broker and not broker["reachable"]:
        rows.append(("kafka", "UNREACHABLE", f"{', '.join(broker['bootstrap_servers'])}: {broker['error']}; "
                                             "lag unknown"))
    for name, c in (info.get("consumers") or {}).items():
        positions = " ".join(f"{p}:{x['position'] if x['stored'] else '-'}"
                             for p, x in c["partitions"].items())
        if c["error"]:
            state, detail = "ERROR", c["error"]
        elif not c["started"]:
            state, detail = "never ran", f"partitions {positions}"
        else:
            state, detail = "ok", f"partitions {positions}"
        lag = f", lag {c['lag']} events" if c["lag"] is not None else ", lag unknown (broker down)"
        rows.append((f"{name} (kafka)", state, detail + ("" if c["error"] else lag)))
    return rows
