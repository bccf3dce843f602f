"""UK National Insurance numbers (NINO): HMRC's allocation rules, which python-stdnum lacks.

A NINO is two prefix letters, six digits and a suffix letter, printed ``AB 12 34 56 C``
or ``AB123456C``; forms often leave the suffix out. HMRC's rules (the National
Insurance Number Allocation manual, NIM39110):

* the first letter is not D, F, I, Q, U or V; the second is not D, F, I, O, Q, U or V;
* the prefixes BG, GB, KN, NK, NT, TN and ZZ are not allocated (TN was a temporary
  number, ZZ an administrative one);
* the suffix is A, B, C or D (or absent).

There is no check digit, so a NINO is weaker evidence than a card or an IBAN: the
prefix rules throw out about half of all letter pairs, and a bare ``AB123456`` with
no suffix and no spaces looks like many reference codes - the detector grades it
low unless a context word is near (see ``strongly_formatted``).
"""

from __future__ import annotations

import re

FIRST_NOT = frozenset("DFIQUV")
SECOND_NOT = frozenset("DFIOQUV")
NOT_ALLOCATED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
SUFFIXES = frozenset("ABCD")
# candidates in text (uppercase, as printed on letters and payslips); spaces between the groups.
# A lone capital after it that cannot be a suffix ("AB 12 34 56 E") makes it no NINO at all;
# "I" is left alone ("... 56 I think").
PATTERN = r"[A-Z]{2} ?\d{2} ?\d{2} ?\d{2}(?: ?[A-D])?(?! ?[E-HJ-Z](?!\w))"
# HMRC's and payroll software's documentation examples: never a real person's number
EXAMPLES = frozenset({"AB123456", *(f"AB123456{s}" for s in "ABCD")})

_SHAPE = re.compile(r"[A-Z]{2}\d{6}[A-D]?")


def compact(value: str) -> str:
    """``AB 12 34 56 C`` -> ``AB123456C`` (spaces out, upper case)."""
    return "".join(value.split()).upper()


def valid_prefix(prefix: str) -> bool:
    return (len(prefix) == 2 and prefix.isascii() and prefix.isalpha() and prefix.isupper()
            and prefix[0] not in FIRST_NOT and prefix[1] not in SECOND_NOT and prefix not in NOT_ALLOCATED)


def is_valid(value: str) -> bool:
    """True when ``value`` (spaces allowed, suffix optional) follows HMRC's allocation rules."""
    number = compact(value)
    return _SHAPE.fullmatch(number) is not None and valid_prefix(number[:2])


def strongly_formatted(raw: str) -> bool:
    """Written the way a NINO is written (with its suffix, or in its spaced groups): medium
    without context; a bare ``AB123456`` is low."""
    return " " in raw.strip() or len(compact(raw)) == 9
