"""Building the DLP engine from ``[dlp]``: shared by the daemon's wiring and `qscan dlp`."""

from __future__ import annotations

from pathlib import Path

from qscan.config import Config, ConfigError
from scanners.dlp.engine import DlpEngine
from scanners.dlp.rules import DlpRulesError, load_rules
from scanners.dlp.scanner import DlpScanner


def dlp_engine(cfg: Config, rules_path: Path | None = None) -> DlpEngine:
    """The engine for ``rules_path`` (default ``dlp.rules``). Raises DlpRulesError, or
    ConfigError when no rules file is given at all."""
    path = rules_path if rules_path is not None else cfg.dlp.rules
    if path is None:
        raise ConfigError("DLP needs a rules file: set dlp.rules (docs/dlp.md)")
    return DlpEngine(load_rules(path), headers=cfg.dlp.headers, limits=cfg.dlp.limits)


def make_dlp_scanner(cfg: Config) -> DlpScanner:
    """The SCANNERS factory: a missing or bad rules file stops the daemon at start-up."""
    try:
        return DlpScanner(dlp_engine(cfg), cfg.dlp.error_action)
    except DlpRulesError as exc:
        raise ConfigError(f"dlp.rules does not load:\n{exc}") from exc
