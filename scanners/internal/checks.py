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
    "banned-extension": (
        POLICY, "quarantine", "a file named with a banned (executable or script) extension, at any depth",
    ),
    "executable-content": (
        POLICY, "quarantine", "a PE, ELF or Mach-O executable, whatever its name, at any depth",
    ),
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

# Extensions banned at any depth (check banned-extension) and the last extensions that make a
# double-barrelled name dangerous (config: internal.dangerous_extensions; docs/policy.md lists
# them with the reason for each group): programs, scripts and installers Windows, macOS or
# Android run on a click, and shortcuts and add-ins that load code.
DEFAULT_DANGEROUS_EXTENSIONS: tuple[str, ...] = (
    "ade", "adp", "apk", "app", "application", "appref-ms", "appx", "appxbundle", "bas", "bat",
    "chm", "cmd", "com", "cpl", "crt", "diagcab", "dll", "exe", "gadget", "hlp", "hta", "inf",
    "ins", "isp", "jar", "jnlp", "js", "jse", "lnk", "mde", "msc", "msh", "msh1", "msh1xml",
    "msh2", "msh2xml", "mshxml", "msi", "msix", "msixbundle", "msp", "mst", "ocx", "pif", "ps1",
    "ps1xml", "ps2", "ps2xml", "psc1", "psc2", "psd1", "psm1", "reg", "scf", "scr", "sct",
    "settingcontent-ms", "shb", "shs", "sys", "url", "vb", "vbe", "vbs", "ws", "wsc", "wsf", "wsh",
    "xbap", "xll",
)

# Disk images: containers, not banned by name - qscan opens them and judges every file inside
# (one it cannot look into is a finding of its own) - but as dangerous as a program at the end
# of a double-barrelled name (invoice.pdf.iso).
DISK_IMAGE_EXTENSIONS: tuple[str, ...] = ("dmg", "img", "iso", "vhd", "vhdx")

# Executable formats banned whatever the file is called (check executable-content): the
# names ``filetype.exec_kind`` gives them. Java classes and ``#!`` scripts are left to the
# extension list (a .jar is banned; a shell script in a body is text someone pasted).
EXECUTABLE_FORMATS: tuple[str, ...] = ("pe", "elf", "mach-o")

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
