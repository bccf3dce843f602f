"""Building the internal scanner from ``[internal]``: shared by the daemon's wiring and `qscan policy`."""

from __future__ import annotations

from pathlib import Path

from qscan.config import Config, ConfigError
from scanners.internal.policy import PolicyError, load_rules
from scanners.internal.scanner import InternalScanner


def internal_scanner(cfg: Config, rules_path: Path | None = None) -> InternalScanner:
    """The scanner with its settings; ``rules_path`` overrides ``internal.rules``. Raises PolicyError."""
    rules = load_rules(rules_path if rules_path is not None else cfg.internal.rules)
    return InternalScanner(cfg.internal, rules)


def make_internal_scanner(cfg: Config) -> InternalScanner:
    """The SCANNERS factory: a bad rules file stops the daemon at start-up, naming the problems."""
    try:
        return internal_scanner(cfg)
    except PolicyError as exc:  # shown like a config error: `qscan: <file>: rule #N (...): ...`
        raise ConfigError(f"internal.rules does not load:\n{exc}") from exc
