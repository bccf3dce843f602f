"""Progress bars are for a person watching: drawn only when stderr is a terminal and ``-q`` is not
given, so cron mail, journald and pipes never get bar frames; and only from the first step of real
work on, so a command that fails before it starts leaves its error, not an empty ``0/?`` bar."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


def progress_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    quiet = bool(ctx is not None and (ctx.find_root().obj or {}).get("quiet"))
    return not quiet and sys.stderr.isatty()


def progress_bar(console: Console | None = None, *, disable: bool | None = None) -> Progress:
    """``description  ━━━━━━━  done/total  time left`` on stderr, shown from the first update on.

    Use it as a context manager (``with progress_bar() as bar``), like rich's ``Progress``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class LazyProgress(Progress):
        def __enter__(self) -> LazyProgress:  # started by the first update, not on entry
            return self

        def _begin(self) -> None:
            if not self.live.is_started and not self.disable:
                self.start()

        def update(self, *args: Any, **kwargs: Any) -> None:
            self._begin()
            super().update(*args, **kwargs)

        def advance(self, *args: Any, **kwargs: Any) -> None:
            self._begin()
            super().advance(*args, **kwargs)

    return LazyProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console or Console(stderr=True), transient=False,
                        disable=not progress_wanted() if disable is None else disable)
