"""The internal scanner's named checks: what each is called, what it means, what it does by default.

Every check produces :class:`CheckHit` facts. A fact does nothing by itself: the
policy engine turns it into an action, either through a rule in the site's rules
file that names it (``finding = ["double-extension"]``) or through the built-in
rule each enabled check carries, whose action is configurable per check.
This module holds only constants so the config loader can validate names
without importing libmagic or libarchive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The categories a check's built-in rule files the message under (event `category`).
MALFORMED: Final = "malformed"
POLICY: Final = "policy"

# name -> (category, default action, description)
CHECKS: Final[dict[str, tuple[str, str, str]]] = {
    # MIME format checks (raw header blocks)
    "broken-continuation": (
        MALFORMED, "quarantine",
        "MIME header continuation line without a header, or a parameter line that lost its indentation",
    ),
    "header-control-chars": (MALFORMED, "quarantine", "bare CR or NUL inside a MIME header"),
    "header-comment": (
        MALFORMED, "quarantine", "comment hidden inside a standard header name or MIME token",
    ),
    "repeated-mime-header": (
        MALFORMED, "record", "a MIME header repeated within one part (later ones are renamed)",
    ),
    "boundary-too-long": (MALFORMED, "quarantine", "MIME boundary longer than 250 characters"),
    "boundary-reused": (MALFORMED, "quarantine", "the same MIME boundary defined twice"),
    "broken-part-header": (MALFORMED, "quarantine", "a line inside a MIME part's header block is no header"),
    # attachment checks (names and content)
    "filename-too-long": (MALFORMED, "quarantine", "attachment filename longer than 256 characters"),
    "filename-mismatch": (MALFORMED, "quarantine", "different filenames declared for the same part"),
    "executable-disguised": (
        POLICY, "quarantine", "executable content declared or named as a harmless type",
    ),
    "executable-media-type": (
        POLICY, "quarantine", "audio/image/video part named with an executable extension",
    ),
    "double-extension": (
        POLICY, "quarantine", "double-barrelled filename hiding an executable extension",
    ),
    "clsid-extension": (POLICY, "quarantine", "CLSID filename extension"),
    "password-protected-archive": (POLICY, "record", "password-protected (encrypted) archive"),
    "archive-unreadable": (MALFORMED, "quarantine", "an archive that could not be unpacked"),
    "unscannable": (
        MALFORMED, "quarantine",
        "a container nothing could look inside: a disk image (UDF, VHD, DMG, FAT/NTFS), "
        "an archive with no file in it, a member too big to keep that ends with a zip",
    ),
    # unpacking limits
    "unpack-depth": (MALFORMED, "quarantine", "archives nested deeper than the limit"),
    "unpack-members": (MALFORMED, "quarantine", "more archive members than the limit"),
    "unpack-bytes": (MALFORMED, "quarantine", "more expanded bytes than the limit"),
    "unpack-ratio": (MALFORMED, "quarantine", "expansion ratio over the limit (zip bomb)"),
    "unpack-time": (MALFORMED, "quarantine", "inspecting and unpacking took longer than the limit"),
}

INTERNAL_ERROR: Final = "internal-error"

# Final extensions that make a double-barrelled name dangerous (config: internal.dangerous_extensions).
DEFAULT_DANGEROUS_EXTENSIONS: tuple[str, ...] = (
    "ade", "adp", "app", "application", "bas", "bat", "chm", "cmd", "com", "cpl", "crt", "dll",
    "exe", "gadget", "hlp", "hta", "inf", "ins", "isp", "iso", "img", "jar", "js", "jse", "lnk",
    "mde", "msc", "msi", "msp", "mst", "ocx", "pif", "ps1", "psm1", "reg", "scf", "scr", "sct",
    "shb", "shs", "sys", "url", "vb", "vbe", "vbs", "vhd", "vhdx", "ws", "wsc", "wsf", "wsh",
)

# What a check's built-in rule may do: a policy action, `record` (finding only) or `off`.
CHECK_ACTIONS: Final = ("quarantine", "reject", "tempfail", "drop", "tag", "record", "off")


@dataclass(frozen=True, slots=True)
class CheckHit:
    """One check that fired, where (a part path like ``2/1/a.zip!/b.exe``) and on what."""

    check: str
    path: str
    detail: str

    def describe(self) -> str:
        return f"{self.path}: {self.detail}" if self.path else self.detail
