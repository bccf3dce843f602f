"""qmail-queue exit codes, as read by qmail-smtpd and qmail-inject.

Stdlib-free on purpose (imported by ``qscan-queue``).
"""

QUEUED = 0
ADDRESS_TOO_LONG = 11
PERM_REJECT = 31
OUT_OF_MEMORY = 51
TIMEOUT = 52
WRITE_ERROR = 53
READ_ERROR = 54
CONFIG_UNREADABLE = 55
HOME_DIR = 61
TEMP_REJECT = 71
CUSTOM_ERROR = 82  # text on fd 6: 'D...' permanent, 'Z...' temporary
INTERNAL_BUG = 81
ENVELOPE_FORMAT = 91

CUSTOM_ERROR_FD = 6


def is_permanent(code: int) -> bool:
    """qmail-smtpd treats 11-40 as permanent and everything else non-zero as temporary."""
    return 11 <= code <= 40
