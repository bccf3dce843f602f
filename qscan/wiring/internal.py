"""Building the internal scanner from ``[internal]``: shared by the daemon's wiring and `qscan policy`."""

from __future__ import annotations

from pathlib import Path

from qscan.config import Config, ConfigError
from scanners.internal.policy import PolicyError, load_rules
from scanners.internal.scanner import InternalOptions, InternalScanner
from scanners.internal.unpack import UnpackLimits


def internal_options(cfg: Config, rules_path: Path | None = None) -> InternalOptions:
    """Options for the scanner; ``rules_path`` overrides ``internal.rules``. Raises PolicyError."""
    ic = cfg.internal
    return InternalOptions(
        check_actions=dict(ic.checks),
        ignore_eol=ic.ignore_eol,
        dangerous_extensions=frozenset(ic.dangerous_extensions),
        limits=UnpackLimits(
            max_depth=ic.max_depth, max_members=ic.max_members, max_total_bytes=ic.max_total_bytes,
            max_ratio=ic.max_ratio, max_time=ic.max_time,
        ),
        rules=load_rules(rules_path if rules_path is not None else ic.rules),
        error_action=ic.error_action,
        allow_banned=frozenset(ic.allow_banned),
        allow_banned_by_domain={d: frozenset(v) for d, v in ic.allow_banned_by_domain.items()},
    )


def make_internal_scanner(cfg: Config) -> InternalScanner:
    """The SCANNERS factory: a bad rules file stops the daemon at start-up, naming the problems."""
    try:
        return InternalScanner(internal_options(cfg))
    except PolicyError as exc:  # shown like a config error: `qscan: <file>: rule #N (...): ...`
        raise ConfigError(f"internal.rules does not load:\n{exc}") from exc
