"""A rate-limited warning when the journal is over ``journal.disk_budget_mb``.

`qscan status` and `qscan journal status` report the budget as an exit code; the relay
and `qscan run`'s supervisor also say it in their logs, where an operator watching the
service sees it, at most once per ``interval`` seconds (a journal that grows past its
budget means a reader - the relay while Kafka is down, a stopped consumer - holds
pruning back: mail keeps flowing, the disk fills).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from qscan.config import Config

log = logging.getLogger("qscan.journal")

DEFAULT_INTERVAL = 300.0


class BudgetWarning:
    """Call it as often as convenient; it looks at most every ``check_every`` seconds and
    warns at most every ``interval`` seconds while the journal stays over budget."""

    def __init__(self, path: Path, budget_mb: float, *, interval: float = DEFAULT_INTERVAL,
                 check_every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.budget_bytes = budget_mb * 1e6
        self.interval = interval
        self.check_every = check_every
        self.clock = clock
        self._next_check = 0.0
        self._next_warning = 0.0
        self.warnings = 0

    def __call__(self) -> None:
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + self.check_every
        from qscan.ops.status import journal_info

        try:
            info = journal_info(self.path, self.budget_bytes)
        except FileNotFoundError:
            return
        except Exception:  # a status look must never stop the relay or the supervisor
            log.debug("journal budget check failed", exc_info=True)
            return
        if not info["over_budget"] or now < self._next_warning:
            return
        self._next_warning = now + self.interval
        self.warnings += 1
        behind = sorted(info["positions"].items(), key=lambda kv: -kv[1]["lag"])
        worst = ", ".join(f"{name} {p['lag']} events behind" for name, p in behind[:3]) or "no readers"
        log.warning("journal %s is %.0f MB, over its disk budget of %.0f MB (journal.disk_budget_mb): "
                    "pruning is held back by the slowest reader (%s); see `qscan journal status`",
                    info["path"], info["bytes"] / 1e6, self.budget_bytes / 1e6, worst)


def budget_warning(cfg: Config, *, interval: float = DEFAULT_INTERVAL) -> BudgetWarning:
    return BudgetWarning(Path(cfg.journal_path), cfg.journal.disk_budget_mb, interval=interval)
