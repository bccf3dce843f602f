"""Progress bars are for a person watching: drawn only when stderr is a terminal and ``-q`` is not
given, so cron mail, journald and pipes never get bar frames (nor a ``0/?`` bar before an error)."""

from __future__ import annotations

import sys

import click


def progress_wanted() -> bool:
    ctx = click.get_current_context(silent=True)
    quiet = bool(ctx is not None and (ctx.find_root().obj or {}).get("quiet"))
    return not quiet and sys.stderr.isatty()
