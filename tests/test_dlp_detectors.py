"""DLP detectors on generated samples: what must be found, what must not, how sure, how masked."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanners.dlp.detectors import (
    TEST_CARD_NUMBERS,
    CardDetector,
    Confidence,
    IbanDetector,
    card_brand,
    is_card_number,
    keyword_detector,
    mask_card,
    mask_iban,
    mask_value,
    national_id_detector,
    regex_detector,
)
from scanners.dlp.rules import _build
from tests.dlp_samples import (
    CARD_SHAPES,
    IBAN_LAYOUTS,
    ID_SAMPLES,
    broken_luhn,
    card,
    iban,
    iban_print,
    national_id,
    nino_near_misses,
    spaced,
)

RNG_SEED = 20261202


def found(detector: object, text: str) -> list[tuple[str, str, str]]:
    return [(h.masked, h.confidence.label, h.label) for h in detector.find(text)]  # type: ignore[attr-defined]


# -- payment cards ------------------------------------------------------------------------------
@pytest.mark.parametrize(("brand", "prefix", "length"), CARD_SHAPES)
def test_generated_cards_are_found_with_brand_and_graded(brand: str, prefix: str, length: int) -> None:
    rng = random.Random(f"{RNG_SEED}{prefix}{length}")
    det = CardDetector()
    for _ in range(20):
        number = card(rng, prefix, length)
        assert card_brand(number) == brand and is_card_number(number)
        masked = mask_card(number)
        assert found(det, f"ref {number} ok") == [(masked, "low", brand)]  # bare digits: low
        assert found(det, f"ref {spaced(number)} ok") == [(masked, "medium", brand)]
        assert found(det, f"ref {spaced(number, '-')} ok") == [(masked, "medium", brand)]
        assert found(det, f"Card number: {spaced(number)}") == [(masked, "high", brand)]
        assert found(det, f"my Visa is {number}") == [(masked, "high", brand)]


@pytest.mark.parametrize(("brand", "prefix", "length"), CARD_SHAPES)
def test_near_miss_cards_are_not_found(brand: str, prefix: str, length: int) -> None:
    rng = random.Random(f"neg{RNG_SEED}{prefix}{length}")
    det = CardDetector()
    for _ in range(20):
        number = card(rng, prefix, length)
        # Luhn broken
        assert found(det, f"card {spaced(broken_luhn(number))}") == []
        # an issuer prefix nobody uses (9..., 1...), Luhn made valid again
        for head in ("9", "1"):
            other = card(rng, head, length)
            assert card_brand(other) is None and found(det, f"card {spaced(other)}") == []
        # a length the brand never issues, Luhn valid
        wrong = card(rng, prefix, 12 if brand == "maestro" else {13: 14, 14: 13, 15: 16, 16: 15, 19: 20}[length])
        assert found(det, f"card number {wrong}") == []
        # part of a longer number, a decimal, an identifier
        assert found(det, f"id 7{number}3") == []
        assert found(det, f"total {number}.50") == []
        assert found(det, f"x{number}") == []


def test_published_test_numbers_only_when_allowed() -> None:
    text = "card numbers " + ", ".join(spaced(n) for n in sorted(TEST_CARD_NUMBERS))
    assert found(CardDetector(), text) == []
    allowed = found(CardDetector(allow_test_numbers=True), text)
    assert len(allowed) >= len(TEST_CARD_NUMBERS) - 3  # a few published ones fail our issuer table
    assert "4111 **** **** 1111" in [masked for masked, _, _ in allowed]


def test_context_window_is_bounded() -> None:
    number = card(random.Random(1), "4", 16)
    near = "card: " + " " * 40 + spaced(number)
    far = "card: " + "x " * 40 + spaced(number)
    assert found(CardDetector(), near)[0][1] == "high"
    assert found(CardDetector(), far)[0][1] == "medium"
    assert found(CardDetector(), "discard " + spaced(number))[0][1] == "medium"  # whole words only


# -- IBAN --------------------------------------------------------------------------------------
@pytest.mark.parametrize("country", sorted(IBAN_LAYOUTS))
def test_generated_ibans_found_and_near_misses_not(country: str) -> None:
    rng = random.Random(f"{RNG_SEED}{country}")
    det = IbanDetector()
    for _ in range(20):
        value = iban(rng, country)
        masked = mask_iban(value)
        assert found(det, f"pay to {iban_print(value)} today") == [(masked, "medium", country)]
        assert found(det, f"pay to {value} today") == [(masked, "medium", country)]
        assert found(det, f"IBAN: {iban_print(value)}") == [(masked, "high", country)]
        # something after it on the line does not hide it
        assert found(det, f"IBAN {iban_print(value)} 1234")[0][0] == masked
        # wrong check digits, a character changed, a character missing
        bad_check = value[:2] + f"{(int(value[2:4]) + 1) % 97 + 2:02d}"[-2:] + value[4:]
        changed = value[:-1] + ("1" if value[-1] != "1" else "2")
        for wrong in (bad_check, changed, value[:-1]):
            assert found(det, f"IBAN: {iban_print(wrong)}") == [], wrong


def test_iban_country_filter_and_ignore() -> None:
    rng = random.Random(7)
    de, fr = iban(rng, "DE"), iban(rng, "FR")
    text = f"IBAN {iban_print(de)} and IBAN {iban_print(fr)}"
    assert [h.label for h in IbanDetector(countries=frozenset({"FR"})).find(text)] == ["FR"]
    assert [h.label for h in IbanDetector(ignore=frozenset({de})).find(text)] == ["FR"]


# -- national identifiers ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(ID_SAMPLES))
def test_generated_national_ids(kind: str) -> None:
    rng = random.Random(f"{RNG_SEED}{kind}")
    _, _, fmt, ctx = ID_SAMPLES[kind]
    det = _build(kind, None)
    for _ in range(15):
        good, bad = national_id(rng, kind)
        [(masked, conf, label)] = found(det, f"Her {ctx} is {fmt(good)}.")
        assert conf == "high" and label == kind and masked == mask_value(fmt(good))
        formatted = found(det, f"reference {fmt(good)} attached")
        shared = kind == "gb.nhs"  # 3-3-4 digits is how phone numbers are written too: low
        assert [c for _, c, _ in formatted] == (["low"] if fmt(good) == good or shared else ["medium"])
        for b in bad:
            assert found(det, f"Her {ctx} is {fmt(b)}.") == [], (kind, b)


def test_ssn_rules_and_test_values() -> None:
    det = _build("us.ssn", None)
    for bad in ("000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567", "123-45-0000"):
        assert found(det, f"SSN {bad}") == [], bad
    assert found(det, "SSN 123-45-6789") == []  # the textbook example
    assert found(det, "SSN 078-05-1120") == []  # the Woolworth wallet card, in stdnum's blacklist
    assert found(det, "SSN 536-22-8712") == [("***-**-**12", "high", "us.ssn")]
    allowed = national_id_detector("ssn", "us.ssn", allow_test_numbers=True)
    assert found(allowed, "SSN 123-45-6789") == [("***-**-**89", "high", "us.ssn")]


def test_require_context_and_unknown_kinds() -> None:
    det = national_id_detector("pesel", "pl.pesel", require_context=True)
    good, _ = national_id(random.Random(3), "pl.pesel")
    assert found(det, f"order {good}") == []
    assert found(det, f"PESEL {good}") != []
    with pytest.raises(ValueError, match="not a built-in"):
        national_id_detector("x", "no.such")
    with pytest.raises(ValueError, match="no module"):
        national_id_detector("x", "zz.nothing", pattern=r"\d{5}")
    # any python-stdnum module with a candidate pattern
    isin = national_id_detector("isin", "isin", pattern=r"[A-Z]{2}[A-Z0-9]{9}\d", context=["ISIN"])
    assert found(isin, "ISIN US0378331005") == [("*********005", "high", "isin")]
    assert found(isin, "ISIN US0378331006") == []


# -- custom: regex and keywords ----------------------------------------------------------------
def test_regex_detector_confidence_and_context() -> None:
    det = regex_detector("employee", r"EMP-\d{6}", confidence="low", context=["payroll", "salary"], window=30)
    assert found(det, "see EMP-123456") == [("***-****56", "low", "regex")]
    assert found(det, "salary for EMP-123456") == [("***-****56", "medium", "regex")]
    assert found(det, "salary" + "." * 40 + "EMP-123456")[0][1] == "low"  # outside the window
    strict = regex_detector("employee", r"EMP-\d{6}", require_context=True, context=["payroll"])
    assert found(strict, "EMP-123456") == [] and found(strict, "payroll EMP-123456") != []
    with pytest.raises(ValueError):
        regex_detector("bad", r"(a)\1")  # backreferences: RE2 refuses, no catastrophic backtracking


def test_keyword_detector_whole_words_phrases_and_evidence() -> None:
    det = keyword_detector("falcon", ["Project Falcon", "falcon roadmap"], context=["confidential"])
    assert found(det, "the project  falcon\nplan") == [(mask_value("project  falcon"), "medium", "keywords")]
    assert found(det, "CONFIDENTIAL: Project Falcon")[0][1] == "high"
    assert found(det, "Project Falconry club") == []
    clear = keyword_detector("codes", ["Bluebird"], evidence="clear", case_sensitive=True)
    assert found(clear, "Bluebird and bluebird") == [("Bluebird", "medium", "keywords")]
    with pytest.raises(ValueError):
        keyword_detector("empty", ["  "])


# -- masks -------------------------------------------------------------------------------------
def test_masks() -> None:
    assert mask_card("4539148803436467") == "4539 **** **** 6467"
    assert mask_card("371449635398431") == "3714 ****** *8431"
    assert mask_iban("DE89370400440532013000") == "DE89 **** **** **** **30 00"
    assert mask_value("123-45-6789") == "***-**-**89"
    assert mask_value("ab") == "**"


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


@settings(max_examples=300, deadline=None)
@given(shape=st.sampled_from(CARD_SHAPES), seed=st.integers(0, 2**32))
def test_card_mask_shows_first_and_last_four_only(shape: tuple[str, str, int], seed: int) -> None:
    number = card(random.Random(seed), shape[1], shape[2])
    masked = mask_card(number)
    assert _digits(masked) == number[:4] + number[-4:]
    assert masked.count("*") == len(number) - 8


@settings(max_examples=300, deadline=None)
@given(value=st.text(min_size=1, max_size=40))
def test_mask_value_reveals_at_most_a_quarter(value: str) -> None:
    masked = mask_value(value)
    alnum = sum(c.isalnum() for c in value)
    shown = sum(c.isalnum() for c in masked)
    assert len(masked) == len(value) and shown <= min(4, alnum // 4)


_DETECTORS = [CardDetector(), IbanDetector(), *(_build(k, None) for k in ID_SAMPLES),
              regex_detector("r", r"[0-9]{6,}"), keyword_detector("k", ["secret plan", "falcon"])]
_alphabet = st.sampled_from([*list("0123456789 -./ \n\tabcXYZ"), "card ", "IBAN ", "DE", "SSN ", "é", "\xa0"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(_alphabet, max_size=120).map("".join), seed=st.integers(0, 2**32))
def test_detectors_never_crash_and_never_leak(text: str, seed: int) -> None:
    rng = random.Random(seed)
    number = card(rng, "4", 16)
    text = text + " " + spaced(number) + " " + text  # at least one real value among the noise
    for det in _DETECTORS:
        for hit in det.find(text):
            assert isinstance(hit.confidence, Confidence)
            digits = _digits(hit.masked)
            if hit.detector == "payment_card":
                assert len(digits) == 8  # first four, last four
            elif hit.detector == "iban":
                assert len(digits) <= 6  # check digits and at most four at the end
            else:
                assert len(digits) <= 4
            assert number not in _digits(hit.masked)


def test_csv_cells_and_decimals() -> None:
    number = card(random.Random(11), "4", 16)
    assert found(CardDetector(), f"name,card\nAnna,{number}\n")[0][1] == "high"  # "card" header, 11 chars back
    assert found(CardDetector(), f"id;x\n7;{number}\n")[0][1] == "low"
    assert found(CardDetector(), f"total 3,{number}") == []  # a decimal written with a comma


def test_card_word_in_unrelated_phrases_is_not_context() -> None:
    number = card(random.Random(12), "4", 16)
    for phrase in ("Thanks for the card you sent!", "new business cards", "a gift card", "student visa"):
        assert found(CardDetector(), f"{phrase} ref {number}")[0][1] == "low", phrase
    assert found(CardDetector(), f"business cards are printed; card {number}")[0][1] == "high"


# -- UK National Insurance numbers (HMRC rules, no python-stdnum module) -----------------------
def test_nino_generated_positives_and_near_misses() -> None:
    rng = random.Random(f"{RNG_SEED}nino")
    det = _build("gb.nino", None)
    for _ in range(40):
        good, _ = national_id(rng, "gb.nino")
        spaced_form = f"{good[:2]} {good[2:4]} {good[4:6]} {good[6:8]} {good[8]}"
        assert found(det, f"National Insurance number: {spaced_form}") == [
            (mask_value(spaced_form), "high", "gb.nino")]
        assert found(det, f"ref {good} attached")[0][1] == "medium"  # with its suffix letter
        assert found(det, f"ref {spaced_form[:-2]} attached")[0][1] == "medium"  # spaced, no suffix
        assert found(det, f"ref {good[:8]} attached")[0][1] == "low"  # AB123456: could be any code
        assert found(det, f"NI number {good[:8]}")[0][1] == "high"
        for bad in nino_near_misses(good):
            assert found(det, f"National Insurance number: {bad}") == [], bad
        assert found(det, f"NINO {good.lower()}") == []  # printed in capitals
        assert found(det, f"NINO X{good}") == [] and found(det, f"NINO {good}7") == []
    assert found(det, "NI number AB 12 34 56 C") == []  # the documentation example
    assert [h.label for h in national_id_detector("n", "gb.nino", allow_test_numbers=True)
            .find("NI number AB 12 34 56 C")] == ["gb.nino"]


def _nino_rules(prefix: str, suffix: str) -> bool:
    """HMRC's rules written out again, independently of scanners.dlp.nino."""
    return (prefix[0] not in "DFIQUV" and prefix[1] not in "DFIOQUV"
            and prefix not in {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"} and suffix in ("", "A", "B", "C", "D"))


@settings(max_examples=400, deadline=None)
@given(prefix=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
       digits=st.text("0123456789", min_size=6, max_size=6),
       suffix=st.sampled_from(["", "A", "B", "C", "D", "E", "M", "Z"]), spaced=st.booleans(),
       before=st.sampled_from(["NINO ", "ref: ", "", "x\n"]), after=st.sampled_from([".", " ok", "", "\n"]))
def test_nino_found_exactly_when_hmrc_rules_allow(prefix: str, digits: str, suffix: str, spaced: bool,
                                                  before: str, after: str) -> None:
    from scanners.dlp import nino

    value = (f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]}" + (f" {suffix}" if suffix else "")
             if spaced else prefix + digits + suffix)
    expected = _nino_rules(prefix, suffix) and (prefix + digits + suffix) not in nino.EXAMPLES
    assert nino.is_valid(value) == _nino_rules(prefix, suffix)
    hits = list(_build("gb.nino", None).find(before + value + after))
    assert len(hits) == (1 if expected else 0), (value, hits)
    for hit in hits:
        assert digits not in hit.masked.replace(" ", "")  # at most the last quarter shows
        assert hit.confidence.label == ("high" if before == "NINO " else
                                        "medium" if spaced or suffix else "low")
