"""The operations tools' settings: [metrics] (qscan/ops/metrics.py, docs/operations.md).

Apart from metrics.py so that loading a config does not import the Prometheus client."""

from __future__ import annotations

from dataclasses import dataclass

from scanners.settings import SECTION, setting


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """Prometheus endpoints (qscan/ops/metrics.py, docs/operations.md): one per process, loopback."""

    __pydantic_config__ = SECTION
    enabled: bool = setting(False, "serve /metrics from the daemon, relay and consumers")
    address: str = setting("127.0.0.1", "listen address (keep it on loopback)")
    port: int = setting(
        9467, "daemon port; relay +1, consume archive +2, summaries +3, notify +4", ge=1, le=65530)
