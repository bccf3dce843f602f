"""Man pages generated from the click tree: ``make man`` (``python -m qscan.cli.manpages man``).

One page per command and group, ``qscan(1)`` for the root and ``qscan-db-upgrade(1)`` for
``qscan db upgrade``, built from the same help text ``--help`` prints, so the two cannot drift. The
pages are committed under ``man/`` (a test checks they match the CLI) and the wheel installs them
as ``share/man/man1/`` (``/usr/local/share/man/man1`` for a system-wide pip install), which the
systemd units name in ``Documentation=man:qscan(1)``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from qscan import __version__


def roff(text: str) -> str:
    """Plain text as roff body text: backslashes kept, no line read as a request."""
    out = []
    for line in text.replace("\\", "\\e").split("\n"):
        line = line.replace("-", "\\-")
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


def paragraphs(help_text: str) -> list[str]:
    """click's help layout as roff: blank-line paragraphs; a ``\\b`` paragraph kept as typed."""
    out: list[str] = []
    for para in inspect.cleandoc(help_text).split("\f")[0].split("\n\n"):
        if not para.strip():
            continue
        if para.startswith("\b\n") or para == "\b":
            out.append(".PP\n.nf\n" + roff(para[2:].rstrip()) + "\n.fi")
        else:
            out.append(".PP\n" + roff(" ".join(line.strip() for line in para.strip().splitlines())))
    return out


def walk(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            if not sub.hidden:
                yield from walk(sub, (*path, name))


def page_name(path: tuple[str, ...]) -> str:
    return "-".join(("qscan", *path))


def context(root: click.Command, path: tuple[str, ...]) -> click.Context:
    """The context ``qscan PATH --help`` runs in (the root's settings, e.g. ``-h``, inherited)."""
    ctx = click.Context(root, info_name="qscan", **root.context_settings)
    for name in path:
        assert isinstance(ctx.command, click.Group)
        sub = ctx.command.commands[name]
        ctx = click.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
    return ctx


def render(root: click.Command, path: tuple[str, ...]) -> str:
    name = page_name(path)
    ctx = context(root, path)
    cmd = ctx.command
    lines = [f'.TH {roff(name.upper())} 1 "" "qscan {__version__}" "qscan manual"',
             ".SH NAME", f"{roff(name)} \\- {roff(cmd.get_short_help_str(limit=200))}",
             ".SH SYNOPSIS", f".B {roff(' '.join(('qscan', *path)))}",
             roff(" ".join(cmd.collect_usage_pieces(ctx))), ".SH DESCRIPTION"]
    lines += paragraphs(cmd.help or "")
    options = [rec for p in cmd.params if (rec := p.get_help_record(ctx)) is not None]
    if cmd.add_help_option and ctx.help_option_names:
        # named from this context, not cmd.get_help_option(): click caches that on the command,
        # with the names of whichever context asked first (a test invoking it bare has no -h)
        options.append((", ".join(ctx.help_option_names), "Show this message and exit."))
    if options:
        lines.append(".SH OPTIONS")
        for opts, help_text in options:
            lines += [".TP", f".B {roff(opts)}", roff(click.unstyle(help_text)) or "\\&"]
    if isinstance(cmd, click.Group):
        lines.append(".SH COMMANDS")
        for sub_name in sorted(cmd.commands):
            sub = cmd.commands[sub_name]
            if not sub.hidden:
                see_page = f"See \\fB{roff(page_name((*path, sub_name)))}\\fR(1)."
                short = roff(sub.get_short_help_str(limit=200))
                lines += [".TP", f".B {roff(sub_name)}", f"{short} {see_page}"]
    see = [page_name(path[:i]) for i in range(len(path))]  # the groups above this command
    lines += [".SH SEE ALSO", "".join(f"\\fB{roff(s)}\\fR(1), " for s in see)
              + roff("docs/cli.md and docs/operations.md in the qscan source")]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    from qscan.cli import cli

    return {f"{page_name(path)}.1": render(cli, path) for path, _ in walk(cli)}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "man")
    out.mkdir(parents=True, exist_ok=True)
    wanted = pages()
    for stale in set(p.name for p in out.glob("*.1")) - set(wanted):
        (out / stale).unlink()
    for name, text in wanted.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"{len(wanted)} man pages in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
