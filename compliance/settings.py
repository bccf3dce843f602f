"""The compliance store's settings: [sql], [quarantine], [retention] and [anchor].

Light on purpose (no SQLAlchemy here): qscan's Config composes these classes, and loading a
config must not pull the whole store in. compliance/retention.py applies the retention rules,
compliance/quarantine.py and `qscan quarantine` read [quarantine], compliance/db.py opens [sql].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from ingest.event import QUARANTINE_FOLDERS, Category
from scanners.direction import DIRECTIONS, Direction
from scanners.settings import SECTION, Check, setting


class RetentionError(ValueError):
    """A rule that cannot be applied."""


@dataclass(frozen=True, slots=True)
class SqlSettings:
    __pydantic_config__ = SECTION
    url: str | None = setting(
        None, "SQLAlchemy URL (default: sqlite:///DATA_DIR/qscan.db)",
        example="postgresql+psycopg://qscan@db.example.com/qscan")


def _folder_days(value: dict[str, int]) -> dict[str, int]:
    for folder, days in value.items():
        if folder not in QUARANTINE_FOLDERS:
            raise ValueError(f"unknown folder {folder!r} ({', '.join(QUARANTINE_FOLDERS)})")
        if days < 1:
            raise ValueError(f"{folder}: days must be at least 1")
    return value


def _folders(value: tuple[str, ...]) -> tuple[str, ...]:
    for folder in value:
        if folder not in QUARANTINE_FOLDERS:
            raise ValueError(f"unknown folder {folder!r} ({', '.join(QUARANTINE_FOLDERS)})")
    return value


@dataclass(frozen=True, slots=True)
class QuarantineSettings:
    """`qscan quarantine` (docs/quarantine.md): expiry ages and the qmail-queue releases use."""

    __pydantic_config__ = SECTION
    expire_days: int = setting(
        14, "`qscan quarantine expire` deletes entries older than this many days", ge=1)
    folder_days: Annotated[dict[str, int], Check(_folder_days)] = setting(
        {}, "per-folder ages overriding expire_days, e.g. { spam = 7, viruses = 30 }")
    qmail_queue: Path | None = setting(
        None, "the qmail-queue releases go through (default: daemon.qmail_queue)",
        example="/var/qmail/bin/qmail-queue")
    four_eyes: Annotated[tuple[str, ...], Check(_folders)] = setting(
        ("dlp", "viruses"), "folders whose releases a second, different operator must approve "
        "(`qscan quarantine approve`); [] turns four-eyes off")
    release_officers: tuple[str, ...] = setting(
        (), "logins that may release from a four_eyes folder in one step with --force (recorded "
        "as forced)", example=["secofficer"])


@dataclass(frozen=True, slots=True)
class AnchorSettings:
    """Chain heads written outside the database (docs/compliance.md, "Anchors")."""

    __pydantic_config__ = SECTION
    interval_minutes: float = setting(
        15.0, "`qscan run` writes the chain heads this often and at shutdown (0: at shutdown "
        "only); `qscan anchor write` writes them once", ge=0)
    witness_file: Path | None = setting(
        None, "append-only file (JSON lines) every anchor also goes to; put it beyond the "
        "database admins' reach", example="/mnt/worm/qscan-anchors.jsonl")
    signing_key: Path | None = setting(
        None, "Ed25519 private key anchors are signed with (`qscan anchor keygen`); only the "
        "anchoring host holds it", example="/etc/qscan/anchor.key")
    public_key: Path | None = setting(
        None, "Ed25519 public key `qscan verify` checks anchor signatures with",
        example="/etc/qscan/anchor.pub")


def _forever(value: object) -> object:
    """'forever' in the config file: no end (None)."""
    return None if value == "forever" else value


Days = Annotated[int | None, Check(_forever, before=True)]


@dataclass(frozen=True)
class RetentionRule:
    """One retention rule ([[retention.rules]], compliance/retention.py): all conditions given
    must hold."""

    __pydantic_config__ = SECTION
    name: str = setting(about="shown in tombstones and reports", example="spam", min_length=1)
    days: Days = setting(about="keep stored copies this many days, or 'forever'", example=30, ge=1)
    domain: str | None = setting(None, "sender's or any recipient's domain ('*' allowed)",
                                 example="example.com")
    address: str | None = setting(None, "sender or any recipient ('*' allowed)", example="sales@example.com")
    direction: Direction | None = setting(None, "direction of the mail", example="outbound")
    verdict: Literal["clean", "virus", "policy", "spam", "dlp", "malformed"] | None = setting(
        None, "verdict of the mail", example="spam")

    def __post_init__(self) -> None:
        if self.days is not None and self.days < 1:
            raise RetentionError(f"rule {self.name!r}: days must be at least 1 (or 'forever')")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise RetentionError(f"rule {self.name!r}: unknown direction {self.direction!r}")
        if self.verdict is not None and self.verdict not in {c.value for c in Category}:
            raise RetentionError(f"rule {self.name!r}: unknown verdict {self.verdict!r}")


@dataclass(frozen=True)
class RetentionPolicy:
    """How long stored copies are kept (docs/compliance.md)."""

    __pydantic_config__ = SECTION
    rules: tuple[RetentionRule, ...] = setting((), "tried in order; the first match decides")
    default_days: Days = setting(
        None, "days to keep copies no rule matches ('forever', the default: never delete)",
        example="forever", ge=1)

    def __post_init__(self) -> None:
        if self.default_days is not None and self.default_days < 1:
            raise RetentionError("default days must be at least 1 (or 'forever')")
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise RetentionError("retention rule names must be unique")
