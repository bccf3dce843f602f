"""Who runs this command: the one answer every command that records an actor uses.

The login is the account of the process's *real* uid, or sudo's caller when root runs
the command through sudo (``SUDO_USER``, trusted only when the effective uid is 0: sudo
sets it, and only root could have forged it). ``$USER`` and ``$LOGNAME`` are never
consulted: anyone can set them, and an actor recorded on a hold, an export, a tombstone
or a four-eyes release must not be whatever the caller typed.
"""

from __future__ import annotations

import os
import pwd


def login() -> str:
    """The login running this process (see the module's account)."""
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user:
        return sudo_user
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without an account: the number, never a name from the env
        return str(os.getuid())


def actor(host: str) -> str:
    """``login@host``, as holds, exports, tombstones and releases record it."""
    return f"{login()}@{host}"
