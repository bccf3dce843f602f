"""``qscan anchor``: the chain heads written outside the database (compliance/anchor.py).

`qscan run` writes them by itself (qscan.ops.anchors says when and where); these
commands make the signing key and write one anchor by hand or from cron.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from qscan.cli.output import output_options

if TYPE_CHECKING:
    from qscan.config import Config


def _config(ctx: click.Context) -> Config:
    loader: Callable[[], Config] = ctx.obj["config"]
    return loader()


@click.group()
def anchor() -> None:
    """Write the hash chains' heads where the database admins cannot rewrite them.

    \\b
    Examples:
      qscan anchor keygen --private /etc/qscan/anchor.key --public /root/anchor.pub
      qscan anchor write              # once (qscan run does it every anchor.interval_minutes)
      qscan verify --anchor-key anchor.pub --anchor /mnt/worm/qscan-anchors.jsonl
    """


@anchor.command("keygen")
@click.option("--private", "private", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="where the signing key goes (0600; anchor.signing_key on the anchoring host)")
@click.option("--public", "public", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="where the public key goes (anchor.public_key / verify --anchor-key)")
def keygen(private: Path, public: Path) -> None:
    """Make an Ed25519 key pair for signing anchors (refuses to overwrite a key)."""
    from compliance.anchor import generate_keys

    try:
        kid = generate_keys(private, public)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc.filename} exists: not overwritten") from exc
    except OSError as exc:
        raise click.ClickException(f"{exc.filename}: {exc.strerror}") from exc
    click.echo(f"anchor key {kid}: private {private}, public {public}. Keep the private key "
               "on the anchoring host only, readable by qscan; give verifiers the public one")


@anchor.command("write")
@output_options("text")
@click.pass_context
def write(ctx: click.Context, as_json: bool) -> None:
    """Take the chain heads now and write them everywhere configured (journal and so Kafka,
    witness file, summary log)."""
    from compliance.anchor import AnchorError
    from ingest.journal import Journal
    from qscan.ops.anchors import AnchorWriter

    cfg = _config(ctx)
    try:
        with Journal(cfg.journal_path) as journal:
            record = AnchorWriter(cfg, journal).write()
    except AnchorError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(record, indent=2, sort_keys=True))
        return
    heads = [f"sql {h}#{x['seq']}" for h, x in sorted(record["sql"].items())]
    heads += [f"journal {h}#{x['seq']}" for h, x in sorted(record["journal"].items())]
    click.echo(f"anchored {', '.join(heads) or 'nothing yet'}"
               + (f" (signed, key {record['key']})" if "sig" in record else ""))
