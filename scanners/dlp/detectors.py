"""DLP detectors: find candidates in text, validate them, grade confidence, mask the evidence.

A compliance team trusts a detector that is rarely wrong, so the built-in ones
validate what they find instead of matching shapes: payment cards by the Luhn
checksum *and* the issuer's prefix and length (well-known test numbers left out
unless asked for), IBANs by their country's layout and mod-97 (python-stdnum),
national identifiers by python-stdnum's own rules for each country (the UK NINO,
which python-stdnum lacks, by HMRC's allocation rules: ``scanners.dlp.nino``).

Confidence is graded the same way for every detector:

* ``low``    - a valid value standing alone, written as a bare run of digits
  (could be an order number that happens to pass the checksum);
* ``medium`` - a valid value written the way people write that kind of number
  (``4539 1488 0343 6467``, ``123-45-6789``, an IBAN);
* ``high``   - a valid value with a context word nearby ("card", "IBAN", "SSN", ...)
  within the detector's window of characters.

Custom detectors (a regex, or a keyword dictionary) start at the confidence
their definition gives and go one level up with a context word.

Only masked evidence ever leaves this module: a full value is kept in a local
variable while it is validated, and distinct values are counted by a keyed hash
whose key lives in this process alone.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import re2
from stdnum import iban as stdnum_iban
from stdnum import luhn

from scanners.dlp import nino
from scanners.internal.safe_regex import Pattern, compile_regex

_KEY = os.urandom(16)  # per process: distinct-value keys cannot be reversed or compared across runs


class Confidence(IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Confidence:
        return cls[text.upper()]

    def raised(self) -> Confidence:
        return Confidence(min(self.value + 1, Confidence.HIGH.value))


@dataclass(frozen=True, slots=True)
class Hit:
    """One validated value in one text segment; ``masked`` is all that is kept of it."""

    detector: str
    masked: str
    key: str  # keyed hash of the normalised value: counts distinct values without keeping them
    confidence: Confidence
    label: str = ""  # card brand, IBAN country, identifier kind


class Detector(Protocol):
    name: str
    # True: every value it finds contains a digit, so text without one is skipped unread
    # (the engine checks once per segment: most of a long text attachment is words)
    needs_digits: bool

    def find(self, text: str) -> Iterator[Hit]:
        """Validated values in ``text``, in order."""


def value_key(kind: str, value: str) -> str:
    return hashlib.blake2b(f"{kind}\0{value}".encode(), key=_KEY, digest_size=12).hexdigest()


# -- masks (pure) -----------------------------------------------------------------------------
def _groups(text: str, sizes: Sequence[int]) -> str:
    out, at = [], 0
    for size in sizes:
        if at >= len(text):
            break
        out.append(text[at : at + size])
        at += size
    if at < len(text):
        out.append(text[at:])
    return " ".join(out)


def card_groups(length: int) -> tuple[int, ...]:
    """How a card number is printed: 4-6-5 (Amex), 4-6-4 (Diners), else fours."""
    if length == 15:
        return (4, 6, 5)
    if length == 14:
        return (4, 6, 4)
    return (4,) * ((length + 3) // 4)


def mask_card(digits: str) -> str:
    """``4111 **** **** 1111``: the first four and last four digits, the rest starred."""
    n = len(digits)
    keep = 4 if n >= 12 else 0
    starred = digits[:keep] + "*" * (n - 2 * keep) + digits[n - keep :] if keep else "*" * n
    return _groups(starred, card_groups(n))


def mask_iban(compact: str) -> str:
    """``DE89 **** **** **** **30 00``: country, check digits and the last four characters."""
    n = len(compact)
    starred = compact[:4] + "*" * max(0, n - 8) + compact[max(4, n - 4) :]
    return _groups(starred, (4,) * ((n + 3) // 4))


def mask_value(value: str) -> str:
    """Any other value: separators kept, every letter and digit starred but the last quarter
    (at most four): ``***-**-**89``."""
    alnum = sum(1 for c in value if c.isalnum())
    reveal = min(4, alnum // 4)
    out, seen = [], 0
    for c in value:
        if c.isalnum():
            seen += 1
            out.append(c if seen > alnum - reveal else "*")
        else:
            out.append(c)
    return "".join(out)


# -- context -----------------------------------------------------------------------------------
def _phrases(words: Sequence[str]) -> re.Pattern[str] | None:
    words = sorted({w.strip() for w in words if w.strip()}, key=len, reverse=True)
    # literal words only (escaped): the alternation cannot backtrack catastrophically
    return (re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
            if words else None)


class Context:
    """Words that raise confidence when they appear within ``window`` characters of a match.

    ``words`` count as whole words in any case. ``strict`` are regexes for short or common
    words that are context only in one written form (``CC`` but not "cc" or "Cc:", ``PAN``
    but not "Pan-European", ``exp`` only before an expiry date); they are matched as
    written (case-sensitive unless the regex says otherwise) and may start inside the window
    and run on past it. ``exclude`` lists phrases in which a context word does not count
    ("business card", "gift card": the word "card" there says nothing about the number next
    to it); address header lines quoted in a body (``Cc: Visa Team <...>``) never count."""

    def __init__(self, words: Sequence[str], window: int, exclude: Sequence[str] = (),
                 strict: Sequence[str] = ()) -> None:
        self.window = window
        self.rx = _phrases(words)
        self.strict = re.compile("|".join(f"(?:{p})" for p in strict)) if strict else None
        self.exclude = _phrases(exclude)

    def _found(self, text: str, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        if self.rx is not None:
            for m in self.rx.finditer(text, lo, hi):
                yield m.span()
        if self.strict is not None:
            for m in self.strict.finditer(text, lo, min(len(text), hi + 24)):
                if m.start() < hi:
                    yield m.span()

    def near(self, text: str, start: int, end: int) -> bool:
        if self.rx is None and self.strict is None:
            return False
        lo, hi = max(0, start - self.window), min(len(text), end + self.window)
        margin = 40  # an excluded phrase may begin before the window ("thanks for the | card")
        spans: list[tuple[int, int]] | None = None
        for a, b in self._found(text, lo, hi):
            if spans is None:
                around_lo, around_hi = max(0, lo - margin), min(len(text), hi + margin)
                spans = [m.span() for m in _ADDRESS_HEADER.finditer(text, around_lo, around_hi)]
                if self.exclude is not None:
                    spans += [m.span() for m in self.exclude.finditer(text, around_lo, around_hi)]
            if not any(x <= a and b <= y for x, y in spans):
                return True
        return False


# An address header line quoted in a body ("Cc: Visa Team <visa@example.com>", "> To: ..."):
# the names and addresses in it say nothing about a number nearby.
_ADDRESS_HEADER = re.compile(r"(?im)^[ \t>]*(?:to|cc|bcc|from|reply-to|sender|an|von|de|à|para)[ \t]*:[^\n]*")


def _grade(formatted: bool, context: bool) -> Confidence:
    if context:
        return Confidence.HIGH
    return Confidence.MEDIUM if formatted else Confidence.LOW


# -- payment cards ----------------------------------------------------------------------------
# (brand, ((low prefix, high prefix), ...), lengths): the issuer identification ranges.
CARD_BRANDS: tuple[tuple[str, tuple[tuple[str, str], ...], frozenset[int]], ...] = (
    ("visa", (("4", "4"),), frozenset({13, 16, 19})),
    ("mastercard", (("51", "55"), ("2221", "2720")), frozenset({16})),
    ("amex", (("34", "34"), ("37", "37")), frozenset({15})),
    ("discover", (("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")),
     frozenset(range(16, 20))),
    ("jcb", (("3528", "3589"),), frozenset(range(16, 20))),
    ("diners", (("300", "305"), ("3095", "3095"), ("36", "36"), ("38", "39")), frozenset(range(14, 20))),
    ("mir", (("2200", "2204"),), frozenset(range(16, 20))),
    ("unionpay", (("62", "62"), ("81", "81")), frozenset(range(16, 20))),
    ("maestro", (("5018", "5018"), ("5020", "5020"), ("5038", "5038"), ("5893", "5893"),
                 ("6304", "6304"), ("6759", "6759"), ("6761", "6763")), frozenset(range(13, 20))),
)

# Numbers published by card schemes and payment processors for testing: in mail they are
# developers talking, not leaked cards (``allow_test_numbers`` counts them anyway).
TEST_CARD_NUMBERS = frozenset({
    "4111111111111111", "4012888888881881", "4222222222222", "4242424242424242",
    "4000056655665556", "4000000000000002", "4000000000000077", "4000000000009995",
    "4917610000000000", "4988438843884305", "4444333322221111", "4005519200000004",
    "4009348888881881", "4012000033330026", "4012000077777777", "4217651111111119",
    "4500600000000061", "4035501000000008", "4131840000000003", "4263982640269299",
    "4917484589897107", "4001919257537193", "4007702835532454",
    "5555555555554444", "5105105105105100", "5200828282828210", "5454545454545454",
    "5425233430109903", "2223003122003222", "2222400070000005", "5555341244441115",
    "2223000048400011", "5577000055770004", "5136333333333335",
    "378282246310005", "371449635398431", "378734493671000", "340000000000009",
    "370000000000002", "374245455400126",
    "6011111111111117", "6011000990139424", "6011000000000004", "6011601160116611",
    "6445644564456445", "3530111333300000", "3566002020360505", "3566111111111113",
    "30569309025904", "38520000023237", "36227206271667", "36006666333344", "30000000000004",
    "6200000000000005", "6250941006528599", "6759649826438453", "6799990100000000019",
})

_CARD_RX = re.compile(
    r"(?<![\w./-])(?<!\d,)"  # a CSV cell may start after a comma; a decimal's digits may not
    r"(?:\d{13,19}(?![.,]\d)"  # bare digits then ",5" or ".5": a decimal number, not a card
    # grouped as cards are printed: a comma after it ends a CSV cell ("4556 7375 8689 9855,08/28")
    r"|\d{4}(?P<s1>[ -])\d{4}(?P=s1)\d{4}(?P=s1)\d{1,4}(?:(?P=s1)\d{1,3})?(?!\.\d)"
    r"|\d{4}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5}(?!\.\d))"
    r"(?![\w/-])"
)
CARD_CONTEXT = (
    "card", "cards", "credit card", "credit cards", "debit card", "card numbers",
    "mastercard", "master card", "amex",
    "american express", "diners", "diners club", "jcb", "maestro", "unionpay", "cvv", "cvc", "cvv2",
    "expiry date", "expiration date", "exp date", "valid thru", "cardholder", "card number",
    "kreditkarte", "karte", "kartennummer", "carte", "carte bancaire", "numéro de carte", "tarjeta",
    "carta di credito", "creditcard",
)
# Short or everyday words that are card context in one written form only (Context.strict):
# "CC"/"CC#" in capitals but not "cc" (the verb) or a "Cc:" line; "PAN" in capitals but not
# "Pan-European" or a frying pan; "Visa"/"VISA" but not "visa" (the travel document, mostly
# written in lower case; "Visa application" and the like are in CARD_NOT_CONTEXT); "exp",
# "expires", "expiry", "expiration" only right before a card's expiry date (MM/YY or MM/YYYY;
# "expires 2026-12-31" is not one). "Discover" is left out: a sentence starts with it as often
# as it names the brand ("Discover card" still counts through "card").
_EXP_DATE = r"[.:]?[ \t]*(?:date[ \t]*[.:]?[ \t]*)?(?:0?[1-9]|1[0-2])[ \t]?/[ \t]?(?:\d{2}|20\d{2})(?![\d/])"
CARD_STRICT_CONTEXT = (
    r"(?<![\w'-])CC(?![\w'-])",
    r"(?<![\w'-])PAN(?![\w'-])",
    r"(?<![\w'-])(?:Visa|VISA)(?![\w'-])",
    r"(?<![\w'-])(?i:exp|expires|expiry|expiration|expiring)" + _EXP_DATE,
)
# "card" in these says nothing about a number nearby
CARD_NOT_CONTEXT = (
    "business card", "business cards", "gift card", "gift cards", "greeting card", "greeting cards",
    "birthday card", "christmas card", "thank you card", "thank-you card", "thanks for the card",
    "postcard", "post card", "sim card", "sd card", "memory card", "graphics card", "network card",
    "sound card", "report card", "wild card", "wildcard", "id card", "key card", "keycard",
    "loyalty card", "library card", "score card", "scorecard", "place card", "flash card", "flashcard",
    "card game", "card games", "card table", "visa application", "visa applications", "visa appointment",
    "visa interview", "visa fee", "visa fees", "visa status", "visa renewal", "visa extension",
    "visa waiver", "visa on arrival", "visa sponsorship", "visa number", "visa reference", "student visa",
    "work visa", "travel visa", "tourist visa", "business visa", "transit visa", "entry visa",
    "schengen visa", "visa requirements",
)


def card_context(window: int) -> Context:
    """The built-in card context: CARD_CONTEXT, CARD_STRICT_CONTEXT, less CARD_NOT_CONTEXT."""
    return Context(CARD_CONTEXT, window, CARD_NOT_CONTEXT, CARD_STRICT_CONTEXT)


def card_brand(digits: str) -> str | None:
    """The scheme whose issuer range and length fit ``digits``, or None."""
    for brand, ranges, lengths in CARD_BRANDS:
        if len(digits) not in lengths:
            continue
        for low, high in ranges:
            head = digits[: len(low)]
            if low <= head <= high:
                return brand
    return None


def is_card_number(digits: str, allow_test_numbers: bool = False) -> bool:
    return (
        digits.isdigit() and 13 <= len(digits) <= 19 and card_brand(digits) is not None
        and luhn.is_valid(digits) and (allow_test_numbers or digits not in TEST_CARD_NUMBERS)
    )


@dataclass
class CardDetector:
    name: str = "payment_card"
    needs_digits = True
    allow_test_numbers: bool = False
    context: Context = field(default_factory=lambda: card_context(50))
    ignore: frozenset[str] = frozenset()

    def find(self, text: str) -> Iterator[Hit]:
        for m in _CARD_RX.finditer(text):
            raw = m.group()
            digits = raw.replace(" ", "").replace("-", "")
            if digits in self.ignore or not is_card_number(digits, self.allow_test_numbers):
                continue
            brand = card_brand(digits) or ""
            conf = _grade(raw != digits, self.context.near(text, m.start(), m.end()))
            yield Hit(self.name, mask_card(digits), value_key("card", digits), conf, brand)


# -- IBAN ---------------------------------------------------------------------------------------
_IBAN_RX = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?!\w)")
IBAN_CONTEXT = (
    "iban", "bic", "swift", "bank", "account", "bank account", "bank details", "wire", "transfer",
    "konto", "kontonummer", "bankverbindung", "überweisung", "rib", "virement", "compte",
    "cuenta", "conto", "rekening", "bankrekening",
)


def iban_candidates(raw: str) -> Iterator[str]:
    """The match, then shorter readings that drop trailing space-separated groups
    (``DE89 3704 0044 0532 0130 00 1234`` ends in something else)."""
    yield raw
    tokens = raw.split(" ")
    for n in range(len(tokens) - 1, 1, -1):
        yield " ".join(tokens[:n])


def valid_iban(candidate: str) -> str | None:
    """The compact IBAN if ``candidate`` has its country's layout and a good mod-97."""
    compact = stdnum_iban.compact(candidate)
    return compact if stdnum_iban.is_valid(compact) else None


@dataclass
class IbanDetector:
    name: str = "iban"
    needs_digits = True
    countries: frozenset[str] = frozenset()  # empty: every country python-stdnum knows
    context: Context = field(default_factory=lambda: Context(IBAN_CONTEXT, 60))
    ignore: frozenset[str] = frozenset()  # e.g. the company's own accounts, printed in every invoice

    def find(self, text: str) -> Iterator[Hit]:
        for m in _IBAN_RX.finditer(text):
            for candidate in iban_candidates(m.group()):
                compact = valid_iban(candidate)
                if compact is None:
                    continue
                if compact in self.ignore or (self.countries and compact[:2] not in self.countries):
                    break
                near = self.context.near(text, m.start(), m.start() + len(candidate))
                # the layout and mod-97 are strong on their own: medium without context
                conf = Confidence.HIGH if near else Confidence.MEDIUM
                yield Hit(self.name, mask_iban(compact), value_key("iban", compact), conf, compact[:2])
                break


# -- national identifiers (python-stdnum) -------------------------------------------------------
@dataclass(frozen=True)
class IdKind:
    module: str  # python-stdnum module, e.g. 'us.ssn' ('in_.aadhaar')
    pattern: str  # candidates in text (Python re, anchored by word boundaries below)
    context: tuple[str, ...]
    test_values: frozenset[str] = frozenset()  # compact forms excluded unless allow_test_numbers
    # written the way something common is written too (UK NHS numbers and phone numbers are both
    # 3-3-4 digits): the format alone does not lift confidence to medium, only a context word does
    shared_format: bool = False
    # identifiers python-stdnum lacks: the validator, and what counts as written "formatted"
    validator: Callable[[str], bool] | None = None
    formatted: Callable[[str], bool] | None = None


NATIONAL_IDS: dict[str, IdKind] = {
    "us.ssn": IdKind("us.ssn", r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|\d{9}",
                     ("ssn", "ssns", "social security", "social security number", "soc sec", "ss#"),
                     frozenset({"123456789", *(f"98765432{i}" for i in range(10))})),
    "ca.sin": IdKind("ca.sin", r"\d{3}[ -]\d{3}[ -]\d{3}|\d{9}",
                     ("sin", "social insurance", "social insurance number", "nas")),
    "de.idnr": IdKind("de.idnr", r"\d{2} \d{3} \d{3} \d{3}|\d{11}",
                      ("steuer-id", "steuerid", "steuer-identifikationsnummer", "steueridentifikationsnummer",
                       "identifikationsnummer", "idnr", "tax id", "steuerliche identifikationsnummer")),
    "fr.nir": IdKind("fr.nir", r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2A|2B) ?\d{3} ?\d{3} ?\d{2}",
                     ("nir", "sécurité sociale", "securite sociale", "insee", "numéro de sécurité sociale",
                      "numéro de sécu")),
    "nl.bsn": IdKind("nl.bsn", r"\d{4}\.\d{2}\.\d{3}|\d{9}",
                     ("bsn", "burgerservicenummer", "sofinummer", "sofi-nummer")),
    "es.dni": IdKind("es.dni", r"\d{8}-?[A-Z]", ("dni", "nif", "documento nacional de identidad")),
    "it.codicefiscale": IdKind("it.codicefiscale", r"[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]",
                               ("codice fiscale", "cf", "c.f.")),
    "pl.pesel": IdKind("pl.pesel", r"\d{11}", ("pesel",)),
    "se.personnummer": IdKind("se.personnummer", r"(?:\d{2})?\d{6}[-+]\d{4}", ("personnummer",)),
    "dk.cpr": IdKind("dk.cpr", r"\d{6}-\d{4}", ("cpr", "cpr-nummer", "personnummer")),
    "be.nn": IdKind("be.nn", r"\d{2}\.\d{2}\.\d{2}-\d{3}\.\d{2}|\d{11}",
                    ("rijksregisternummer", "numéro national", "national number", "niss")),
    "ch.ssn": IdKind("ch.ssn", r"756\.\d{4}\.\d{4}\.\d{2}|756\d{10}",
                     ("ahv", "avs", "ahv-nummer", "sozialversicherungsnummer")),
    "fi.hetu": IdKind("fi.hetu", r"\d{6}[-+A]\d{3}[0-9A-Z]", ("henkilötunnus", "hetu")),
    "no.fodselsnummer": IdKind("no.fodselsnummer", r"\d{6} ?\d{5}", ("fødselsnummer", "fodselsnummer")),
    "gb.nhs": IdKind("gb.nhs", r"\d{3} \d{3} \d{4}|\d{10}", ("nhs", "nhs number"), shared_format=True),
    "gb.nino": IdKind("gb.nino", nino.PATTERN,
                      ("national insurance", "national insurance number", "national insurance no",
                       "ni number", "ni no", "nino", "nino number", "insurance number"),
                      nino.EXAMPLES, validator=nino.is_valid, formatted=nino.strongly_formatted),
    "in.aadhaar": IdKind("in_.aadhaar", r"\d{4} \d{4} \d{4}|\d{12}", ("aadhaar", "uidai")),
    "br.cpf": IdKind("br.cpf", r"\d{3}\.\d{3}\.\d{3}-\d{2}|\d{11}", ("cpf",)),
}


def stdnum_validator(module: str) -> Callable[[str], bool]:
    """``is_valid`` of a python-stdnum module ('us.ssn'); ValueError when there is none."""
    if not re.fullmatch(r"[a-z_]+(?:\.[a-z_]+)?", module):
        raise ValueError(f"not a python-stdnum module name: {module!r}")
    try:
        mod: Any = importlib.import_module(f"stdnum.{module}")
    except ImportError as exc:
        raise ValueError(f"python-stdnum has no module {module!r}") from exc
    fn = getattr(mod, "is_valid", None)
    if not callable(fn):
        raise ValueError(f"python-stdnum module {module!r} has no is_valid()")

    def valid(value: str) -> bool:
        try:
            return bool(fn(value))
        except Exception:  # a validator must never take the scan down
            return False

    return valid


def id_validator(kind: str) -> Callable[[str], bool]:
    """The validator of a built-in identifier (NATIONAL_IDS) or of a python-stdnum module."""
    known = NATIONAL_IDS.get(kind)
    if known is not None and known.validator is not None:
        return known.validator
    return stdnum_validator(known.module if known else kind)


@dataclass
class NationalIdDetector:
    name: str
    kind: str  # key of NATIONAL_IDS, or a python-stdnum module with a custom pattern
    pattern: re.Pattern[str]
    validate: Callable[[str], bool]
    context: Context
    require_context: bool = False
    allow_test_numbers: bool = False
    test_values: frozenset[str] = frozenset()
    ignore: frozenset[str] = frozenset()
    shared_format: bool = False
    formatted: Callable[[str], bool] | None = None  # None: any separator or letter counts
    needs_digits = True  # every built-in identifier has digits; custom patterns are checked below

    def find(self, text: str) -> Iterator[Hit]:
        for m in self.pattern.finditer(text):
            raw = m.group()
            if not self.validate(raw):
                continue
            compact = "".join(c for c in raw if c.isalnum()).upper()
            if compact in self.ignore or (not self.allow_test_numbers and compact in self.test_values):
                continue
            near = self.context.near(text, m.start(), m.end())
            if self.require_context and not near:
                continue
            if self.formatted is not None:
                formatted = self.formatted(raw)
            else:
                formatted = (compact != raw or not compact.isdigit()) and not self.shared_format
            yield Hit(self.name, mask_value(raw), value_key(self.kind, compact), _grade(formatted, near),
                      self.kind)


def national_id_detector(name: str, kind: str, *, pattern: str | None = None,
                         context: Sequence[str] | None = None, window: int = 50,
                         require_context: bool = False, allow_test_numbers: bool = False,
                         ignore: Sequence[str] = ()) -> NationalIdDetector:
    """A detector for a known identifier (NATIONAL_IDS), or any python-stdnum module given a
    candidate ``pattern``. Raises ValueError for unknown kinds or bad patterns."""
    known = NATIONAL_IDS.get(kind)
    body = pattern or (known.pattern if known else None)
    if body is None:
        raise ValueError(f"{kind!r} is not a built-in identifier ({', '.join(NATIONAL_IDS)}); "
                         "give a 'pattern' to use another python-stdnum module")
    try:
        rx = re.compile(rf"(?<![\w.-])(?:{body})(?![\w]|[.-]\w)")
    except re.error as exc:
        raise ValueError(f"bad pattern {body!r}: {exc}") from None
    words = tuple(context) if context is not None else (known.context if known else ())
    detector = NationalIdDetector(
        name=name, kind=kind, pattern=rx,
        validate=id_validator(kind),
        context=Context(words, window), require_context=require_context,
        allow_test_numbers=allow_test_numbers, test_values=known.test_values if known else frozenset(),
        ignore=frozenset("".join(c for c in v if c.isalnum()).upper() for v in ignore),
        shared_format=known.shared_format if known and pattern is None else False,
        formatted=known.formatted if known and pattern is None else None,
    )
    if pattern is not None:  # a site's own pattern may match letters only: read every text
        detector.needs_digits = False
    return detector


# -- custom: regex and keyword dictionaries ---------------------------------------------------
@dataclass
class PatternDetector:
    """A site's own regex (RE2: linear time on hostile text) or keyword dictionary."""

    name: str
    kind: str  # 'regex' or 'keywords'
    pattern: Pattern
    base: Confidence
    context: Context
    require_context: bool = False
    clear_evidence: bool = False  # keywords: the evidence is the dictionary word itself
    needs_digits = False

    def find(self, text: str) -> Iterator[Hit]:
        for m in self.pattern.finditer(text):  # type: ignore[attr-defined]
            value = m.group()
            if not value or (self.kind == "keywords" and not _whole_word(text, m.start(), m.end())):
                continue
            near = self.context.near(text, m.start(), m.end())
            if self.require_context and not near:
                continue
            conf = self.base.raised() if near else self.base
            normal = value.casefold() if self.kind == "keywords" else value
            evidence = value if self.clear_evidence else mask_value(value)
            yield Hit(self.name, evidence[:100], value_key(self.kind, normal), conf, self.kind)


def _whole_word(text: str, start: int, end: int) -> bool:
    """A keyword must not be part of a longer word ('cat' in 'concatenate')."""
    before = start == 0 or not (text[start - 1].isalnum() and text[start].isalnum())
    after = end >= len(text) or not (text[end].isalnum() and text[end - 1].isalnum())
    return before and after


def regex_detector(name: str, pattern: str, *, ignore_case: bool = True, confidence: str = "medium",
                   context: Sequence[str] = (), window: int = 50,
                   require_context: bool = False) -> PatternDetector:
    return PatternDetector(name, "regex", compile_regex(pattern, ignore_case), Confidence.parse(confidence),
                           Context(context, window), require_context)


def keyword_detector(name: str, keywords: Sequence[str], *, case_sensitive: bool = False,
                     confidence: str = "medium", context: Sequence[str] = (), window: int = 50,
                     require_context: bool = False, evidence: str = "masked") -> PatternDetector:
    """Whole words or phrases; any run of spaces in a phrase matches any whitespace."""
    words = sorted({k.strip() for k in keywords if k.strip()}, key=len, reverse=True)
    if not words:
        raise ValueError("a keyword detector needs at least one keyword")
    # word boundaries are checked in Python (_whole_word): RE2's \b knows ASCII letters only
    body = "|".join(r"\s+".join(re2.escape(part) for part in w.split()) for w in words)
    return PatternDetector(name, "keywords", compile_regex(body, not case_sensitive),
                           Confidence.parse(confidence), Context(context, window), require_context,
                           clear_evidence=evidence == "clear")
