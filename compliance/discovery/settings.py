"""[discovery]: the index consumer's settings (composed into qscan's Config; light: no SQL here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scanners.dlp.extract import ExtractLimits
from scanners.settings import SECTION, setting

_EXTRACT = ExtractLimits()
_DEFAULTS = ExtractLimits(max_text=1_000_000, max_time=5.0)


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """Discovery search (docs/discovery.md): where the index lives and what one message may cost."""

    __pydantic_config__ = SECTION
    path: Path | None = setting(
        None, "the SQLite FTS5 index file when [sql] is SQLite (default: DATA_DIR/discovery.db)",
        example="/var/lib/qscan/discovery.db")
    pg_config: str = setting(
        "simple", "PostgreSQL text search configuration (simple: no stemming, the same hits "
        "as SQLite; english, german, ...: stemmed)", pattern=r"^[a-z_][a-z0-9_]*$")
    max_part_size: int = setting(
        _DEFAULTS.max_part_size, "attachments bigger than this are indexed by name only", ge=1024)
    max_text: int = setting(_DEFAULTS.max_text, "characters of text indexed per message", ge=1000)
    max_time: float = setting(_DEFAULTS.max_time, "seconds of text extraction per message", gt=0)
    max_pdf_pages: int = setting(_DEFAULTS.max_pdf_pages, "pages of one PDF read", ge=1)
    max_members: int = setting(_EXTRACT.unpack.max_members, "archive members read per message", ge=1)
    max_total_bytes: int = setting(
        _EXTRACT.unpack.max_total_bytes, "bytes unpacked from archives per message", ge=1024)
    workers: int = setting(
        2, "processes extracting text in parallel for the index consumer (1: in the consumer "
        "itself); a message that crashes one is indexed by its headers", ge=1, le=64)
    page_size: int = setting(50, "hits per page of `qscan discover search`", ge=1, le=10_000)

    @property
    def limits(self) -> ExtractLimits:
        return ExtractLimits.of(self)
