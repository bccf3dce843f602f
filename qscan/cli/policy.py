"""``qscan policy``: lint the rules file, explain a message's verdict, import Qmail-Scanner's rules.

None of these send anything: ``explain`` runs the internal scanner on a file the
way a worker would, and prints every part, every finding and the rule that
decided.
"""

from __future__ import annotations

import json
import sys
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from qscan.cli.output import output_options

if TYPE_CHECKING:
    from qscan.config import Config



def _config_or_defaults(ctx: click.Context) -> Config:
    """The configured values; built-in defaults when no config file exists at all."""
    path = (ctx.find_root().obj or {}).get("config_path")
    if path and not Path(path).exists():
        from qscan.config import Config

        click.echo(f"(no config file at {path}: using built-in defaults)", err=True)
        return Config()
    loader = ctx.find_root().obj["config"]
    cfg: Config = loader()
    return cfg


@click.group()
def policy() -> None:
    """Policy rules of the internal scanner: check, explain, import."""


@policy.command("check")
@click.argument("rules", required=False, type=click.Path(dir_okay=False))
@click.pass_context
def check(ctx: click.Context, rules: str | None) -> None:
    """Lint a rules file (default: internal.rules): syntax, bad regexes, unreachable rules.

    Exit status 1 when there is any error.
    """
    from scanners.internal.policy import lint

    if rules is None:
        configured = _config_or_defaults(ctx).internal.rules
        if configured is None:
            raise click.ClickException("no rules file given and internal.rules is not set")
        rules = str(configured)
    try:
        text = Path(rules).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {rules}: {exc}") from exc
    problems = lint(text, rules)
    for p in problems:
        click.echo(str(p))
    errors = [p for p in problems if p.level == "error"]
    if errors:
        click.echo(f"{rules}: {len(errors)} error(s)", err=True)
        sys.exit(1)
    count = text.count("[[rule]]")
    click.echo(f"{rules}: OK ({count} rule{'s' if count != 1 else ''})")


def _envelope_defaults(msg: Any) -> tuple[str, list[str]]:
    sender = parseaddr(str(msg.get("From", "") or ""))[1] if msg is not None else ""
    rcpts: list[str] = []
    if msg is not None:
        values = [str(v) for name in ("To", "Cc") for v in (msg.get_all(name) or [])]
        rcpts = [a for _n, a in getaddresses(values) if a]
    return sender, rcpts


@policy.command("explain")
@click.argument("message", type=click.Path(exists=True, dir_okay=False))
@click.option("--sender", help="envelope sender (default: the From address)")
@click.option("--recipient", "recipients", multiple=True,
              help="envelope recipient (repeatable; default: To/Cc)")
@click.option("--client-ip", help="client IP (default: none, as if injected locally)")
@click.option("--relay", is_flag=True, help="as if RELAYCLIENT were set (outbound)")
@click.option("--rules", type=click.Path(exists=True, dir_okay=False),
              help="rules file instead of internal.rules")
@output_options("text")
@click.pass_context
def explain(ctx: click.Context, message: str, sender: str | None, recipients: tuple[str, ...],
            client_ip: str | None, relay: bool, rules: str | None, as_json: bool) -> None:
    """Show every part, every finding and which rule decides for MESSAGE (an .eml file)."""
    from ingest.found_parts import merge_found_parts
    from ingest.mime import walk_parts
    from ingest.verdict import decide
    from qscan.wiring.internal import internal_scanner
    from scanners.base import ScanContext
    from scanners.internal.policy import PolicyError
    from scanners.mime.parse import parse

    cfg = _config_or_defaults(ctx)
    try:
        scanner = internal_scanner(cfg, Path(rules) if rules else None)
    except PolicyError as exc:
        raise click.ClickException(f"rules do not load:\n{exc}") from exc
    raw = Path(message).read_bytes()
    msg = None
    parts: list[Any] = []
    scan_parts: list[Any] = []
    try:
        msg = parse(raw)
        parts, scan_parts, _defects = walk_parts(msg)
    except Exception as exc:
        click.echo(f"(the MIME parser gave up: {type(exc).__name__}: {exc})", err=True)
    default_sender, default_rcpts = _envelope_defaults(msg)
    env_sender = sender if sender is not None else default_sender
    env_rcpts = list(recipients) or default_rcpts
    scan_ctx = ScanContext(
        raw=raw, message=msg, parts=scan_parts, sender=env_sender, recipients=env_rcpts,
        client_ip=client_ip, relay=relay, size=len(raw), max_size=max(len(raw), cfg.daemon.max_message_size),
    )
    report = scanner.inspect(scan_ctx)
    results = scanner.results(report)
    scan_ctx.found_parts.extend(report.parts)
    parts = merge_found_parts(parts, scan_ctx.found_parts)
    decision = decide(results)
    decided = report.evaluation.decided
    out: dict[str, Any] = {
        "message": message,
        "size": len(raw),
        "envelope": {"sender": env_sender, "recipients": env_rcpts, "client_ip": client_ip,
                     "direction": "outbound" if relay else "inbound"},
        "parts": [p.model_dump(mode="json") for p in parts],
        "findings": [{"check": h.check, "path": h.path, "detail": h.detail} for h in report.hits],
        "tags": [{"rule": m.rule.id, "header": ": ".join(m.rule.tag()), "evidence": m.evidence}
                 for m in report.evaluation.tags],
        "decided_by": None if decided is None else {
            "rule": decided.rule.id, "builtin": decided.rule.builtin, "action": decided.rule.action,
            "category": decided.rule.category, "description": decided.rule.description,
            "evidence": decided.evidence,
        },
        "category": decision.category.value,
        "action": decision.action.value,
        "reason": decision.reason,
        "reply": decision.reply,
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    _print_explanation(out)


def _print_explanation(out: dict[str, Any]) -> None:
    env = out["envelope"]
    click.echo(f"message:   {out['message']} ({out['size']} bytes)")
    rcpts = ", ".join(f"<{r}>" for r in env["recipients"]) or "-"
    click.echo(f"envelope:  from <{env['sender']}> to {rcpts}; "
               f"client {env['client_ip'] or 'local'}, {env['direction']}")
    click.echo("parts:")
    for p in out["parts"]:
        click.echo(f"  {p['path']:<32} {p['content_type']:<28} {p['detected_type'] or '-':<28} "
                   f"{p['size']:>9}  {p['filename'] or ''}")
    click.echo("findings:" + ("" if out["findings"] else " none"))
    for f in out["findings"]:
        click.echo(f"  {f['check']:<28} {f['path']}: {f['detail']}")
    for t in out["tags"]:
        click.echo(f"tag:       rule {t['rule']!r} adds {t['header']!r} ({t['evidence']})")
    d = out["decided_by"]
    if d is None:
        click.echo("decided by: no rule matched")
    else:
        kind = "built-in check rule" if d["builtin"] else "rule"
        click.echo(f"decided by: {kind} {d['rule']!r}: {d['action']}"
                   + (f" ({d['category']})" if d["action"] not in ("allow", "tag") else "")
                   + (f" — {d['description']}" if d["description"] else "")
                   + (f" [{d['evidence']}]" if d["evidence"] else ""))
    click.echo(f"verdict:   category={out['category']} action={out['action']} reason={out['reason']}"
               + (f" reply={out['reply']!r}" if out["reply"] else ""))


@policy.command("import")
@click.argument("events", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="write the rules here (default: stdout)")
def import_(events: str, output: str | None) -> None:
    """Convert Qmail-Scanner's quarantine-events.txt into a qscan rules file."""
    from scanners.internal.policy import lint
    from scanners.internal.qs_import import import_events

    text = Path(events).read_text(encoding="utf-8", errors="replace")
    result = import_events(text)
    for why in result.skipped:
        click.echo(f"{events}: skipped {why}", err=True)
    toml = result.toml(Path(events).name)
    problems = [p for p in lint(toml, output or "<imported>") if p.level == "error"]
    if output:
        Path(output).write_text(toml, encoding="utf-8")
        click.echo(f"{output}: {len(result.rules)} rule(s) imported, {len(result.skipped)} line(s) skipped",
                   err=True)
    else:
        click.echo(toml, nl=False)
    for p in problems:
        click.echo(f"note: {p}", err=True)
