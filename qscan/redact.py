"""Passwords out of anything qscan prints: ``scheme://user:PASSWORD@host`` becomes ``user:***@``.

``qscan config check`` prints the effective configuration, and error messages
name the SQL store; neither may show a database password (``[sql] url`` is the
usual place one is written). Works on text that is not a valid URL too (a
malformed port, an unknown driver), because those are exactly the URLs that
end up in error messages.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
# scheme://user:password@ : the password runs to the last "@" of the word (masking too much
# is safe, too little is not: an unencoded "/" or "@" in a password must not leak)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)(?P<pw>\S*)@")


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}@", text)


def mask_values(value: Any) -> Any:
    """A copy of a JSON-like structure with every string passed through ``mask_url``."""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, dict):
        return {k: mask_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_values(v) for v in value]
    return value
