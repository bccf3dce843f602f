"""Generated DLP samples: valid and near-miss payment cards, IBANs and national identifiers.

Every value is made here from a seeded RNG and checked with the same validators a bank or
python-stdnum would use, so the tests never depend on a list of real people's numbers.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from stdnum import luhn
from stdnum.iso7064 import mod_97_10

from scanners.dlp.detectors import TEST_CARD_NUMBERS, id_validator

# (brand, prefix, length): one issuer range per line, unambiguous prefixes only
CARD_SHAPES: list[tuple[str, str, int]] = [
    ("visa", "4", 16), ("visa", "4", 13), ("visa", "4", 19), ("mastercard", "51", 16),
    ("mastercard", "55", 16), ("mastercard", "2221", 16), ("mastercard", "2720", 16),
    ("amex", "34", 15), ("amex", "37", 15), ("discover", "6011", 16), ("discover", "65", 16),
    ("jcb", "3530", 16), ("diners", "36", 14), ("mir", "2200", 16), ("unionpay", "6200", 16),
    ("maestro", "6759", 16),
]


def card(rng: random.Random, prefix: str, length: int) -> str:
    """A Luhn-valid number with this prefix and length (never a published test number)."""
    while True:
        body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
        number = body + luhn.calc_check_digit(body)
        if number not in TEST_CARD_NUMBERS:
            return number


def spaced(number: str, sep: str = " ") -> str:
    if len(number) == 15:
        sizes = (4, 6, 5)
    elif len(number) == 14:
        sizes = (4, 6, 4)
    else:
        sizes = (4,) * ((len(number) + 3) // 4)
    out, at = [], 0
    for size in sizes:
        if at < len(number):
            out.append(number[at:at + size])
        at += size
    return sep.join(out)


def broken_luhn(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


# IBAN layouts: country -> BBAN character classes (d digit, a upper letter, c either)
IBAN_LAYOUTS = {"DE": "d" * 18, "FR": "d" * 10 + "c" * 11 + "d" * 2, "GB": "aaaa" + "d" * 14,
                "NL": "aaaa" + "d" * 10, "ES": "d" * 20, "IT": "a" + "d" * 10 + "c" * 12,
                "CH": "d" * 5 + "c" * 12, "BE": "d" * 12}


def iban(rng: random.Random, country: str) -> str:
    """A valid compact IBAN: the country's BBAN layout and its mod-97 check digits."""
    pools = {"d": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}
    while True:
        bban = "".join(rng.choice(pools[k]) for k in IBAN_LAYOUTS[country])
        check = mod_97_10.calc_check_digits(bban + country)
        value = country + check + bban
        from stdnum import iban as stdnum_iban

        if stdnum_iban.is_valid(value):  # some countries add a national check (FR, IT, ES, BE)
            return value


def iban_print(compact: str) -> str:
    return " ".join(compact[i:i + 4] for i in range(0, len(compact), 4))


# National identifiers: (kind, random prefix, alphabet of the last character, formatter, context)
def _digits(n: int) -> Callable[[random.Random], str]:
    return lambda rng: "".join(rng.choice(string.digits) for _ in range(n))


ID_SAMPLES: dict[str, tuple[Callable[[random.Random], str], str, Callable[[str], str], str]] = {
    "us.ssn": (lambda r: f"{r.randint(1, 665):03d}{r.randint(1, 99):02d}{r.randint(1, 999):03d}",
               string.digits, lambda c: f"{c[:3]}-{c[3:5]}-{c[5:]}", "SSN"),
    "ca.sin": (lambda r: str(r.randint(1, 7)) + _digits(7)(r), string.digits,
               lambda c: f"{c[:3]}-{c[3:6]}-{c[6:]}", "social insurance number"),
    "de.idnr": (lambda r: str(r.randint(1, 9)) + _digits(9)(r), string.digits,
                lambda c: f"{c[:2]} {c[2:5]} {c[5:8]} {c[8:]}", "Steuer-ID"),
    "nl.bsn": (lambda r: str(r.randint(1, 9)) + _digits(7)(r), string.digits,
               lambda c: f"{c[:4]}.{c[4:6]}.{c[6:]}", "BSN"),
    "es.dni": (_digits(8), string.ascii_uppercase, lambda c: f"{c[:8]}-{c[8:]}", "DNI"),
    "pl.pesel": (lambda r: f"{r.randint(50, 99):02d}{r.randint(1, 12):02d}{r.randint(1, 28):02d}"
                 + _digits(4)(r), string.digits, lambda c: c, "PESEL"),
    "ch.ssn": (lambda r: "756" + _digits(9)(r), string.digits,
               lambda c: f"{c[:3]}.{c[3:7]}.{c[7:11]}.{c[11:]}", "AHV-Nummer"),
    "gb.nhs": (lambda r: str(r.randint(4, 9)) + _digits(8)(r), string.digits,
               lambda c: f"{c[:3]} {c[3:6]} {c[6:]}", "NHS number"),
    "gb.nino": (lambda r: "".join(r.choice(string.ascii_uppercase) for _ in range(2)) + _digits(6)(r),
                "ABCD", lambda c: f"{c[:2]} {c[2:4]} {c[4:6]} {c[6:8]} {c[8:]}", "National Insurance number"),
    "in.aadhaar": (lambda r: str(r.randint(2, 9)) + _digits(10)(r), string.digits,
                   lambda c: f"{c[:4]} {c[4:8]} {c[8:]}", "Aadhaar"),
    "br.cpf": (lambda r: str(r.randint(1, 9)) + _digits(9)(r), string.digits,
               lambda c: f"{c[:3]}.{c[3:6]}.{c[6:9]}-{c[9:]}", "CPF"),
}


def national_id(rng: random.Random, kind: str) -> tuple[str, list[str]]:
    """(a valid compact value, compact near misses: the same value with a wrong last character;
    none for identifiers without a check character, such as the US SSN)."""
    from scanners.dlp.detectors import NATIONAL_IDS

    prefix, last, _fmt, _ctx = ID_SAMPLES[kind]
    valid = id_validator(kind)
    for _ in range(5000):
        head = prefix(rng)
        good = [head + c for c in last if valid(head + c)]
        if good and good[0] not in NATIONAL_IDS[kind].test_values:
            return good[0], [head + c for c in last if not valid(head + c)]
    raise AssertionError(f"could not generate a {kind}")


# UK NINO near misses, one per HMRC rule: (compact value, the rule it breaks)
NINO_BAD_PREFIXES = [*(f"{c}A" for c in "DFIQUV"), *(f"A{c}" for c in "DFIOQUV"),
                     "BG", "GB", "KN", "NK", "NT", "TN", "ZZ"]


def nino_near_misses(valid: str) -> list[str]:
    """The digits of a valid NINO behind every disallowed prefix, and with a suffix past D."""
    digits = valid[2:8]
    return [p + digits + valid[8:] for p in NINO_BAD_PREFIXES] + [valid[:8] + "E", valid[:8] + "Z"]
