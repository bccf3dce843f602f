"""Config sections -> the external scanners (clamd, spamd, rspamd, cmdline, cymru).

Each section is the scanner's own settings class (scanners/clamd.py ...), handed over as it is.
``qscan/wiring/pipeline.py``'s SCANNERS registers these factories.
"""

from __future__ import annotations

from qscan.config import Config
from scanners.clamd import ClamdScanner
from scanners.cmdline import CmdlineScanner
from scanners.cymru import CymruScanner
from scanners.rspamd import RspamdScanner
from scanners.spamd import SpamdScanner


def clamd(cfg: Config) -> ClamdScanner:
    return ClamdScanner(cfg.clamd)


def spamd(cfg: Config) -> SpamdScanner:
    return SpamdScanner(cfg.spamd)


def rspamd(cfg: Config) -> RspamdScanner:
    return RspamdScanner(cfg.rspamd)


def cmdline(cfg: Config) -> CmdlineScanner:
    return CmdlineScanner(cfg.cmdline)


def cymru(cfg: Config) -> CymruScanner:
    return CymruScanner(cfg.cymru)
