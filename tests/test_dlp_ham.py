"""A ham corpus where high-confidence rules must not fire, and a seeded sensitive corpus where they must.

The ham (bench/dlp_corpus.py) is business mail full of order numbers, phone numbers, meeting ids,
timestamps, ISBNs and amounts, as text, CSV, XLSX, DOCX and PDF, with the short card context
words ("Cc:", "expires", "Pan-European", "visa application") beside checksum-passing order numbers
in a tenth of it, plus the bench corpus's plain, HTML and attachment mail and the demo corpus. bench/dlp.py reports the same counts.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from bench.dlp_corpus import ham, order_number_passing_luhn, sensitive
from qscan.testing.corpus import default_corpus_dir
from scanners.dlp.detectors import CardDetector
from scanners.dlp.engine import DlpEngine, MessageFacts
from scanners.dlp.extract import extract_raw
from scanners.dlp.rules import builtin_detector_names, parse_rules

ALL = ", ".join(f'"{d}"' for d in builtin_detector_names())
HIGH = parse_rules(f'[[rule]]\nid = "high"\ndetectors = [{ALL}]\nmin_confidence = "high"\naction = "reject"\n')
CARDS_MEDIUM = parse_rules('[[rule]]\nid = "cards"\ndetectors = ["payment_card", "iban"]\naction = "quarantine"\n')
FACTS = MessageFacts("alice@example.com", ["orders@partner.example"], True)


def fire(engine: DlpEngine, raw: bytes) -> list[str]:
    ex = extract_raw(raw)
    assert not any("not parsed" in n for n in ex.notes)
    from email import policy
    from email.parser import BytesParser

    ev = engine.evaluate(BytesParser(policy=policy.default).parsebytes(raw), FACTS)
    return [f"{h.rule.id}: {h.describe()}" for h in ev.hits]


def demo_ham() -> list[tuple[str, bytes]]:
    """The demo corpus less the messages its manifest names as DLP samples ("(DLP: ...")."""
    import json

    root = default_corpus_dir()
    manifest = json.loads((root / "manifest.json").read_text())
    dlp_samples = {e["file"] for e in manifest if "(DLP:" in str(e.get("description", ""))}
    return [(p.name, p.read_bytes()) for p in sorted(root.glob("*.eml")) if p.name not in dlp_samples]


def test_context_traps_are_in_the_ham_and_stay_low() -> None:
    """Cc: lines, "cc me", "expires <date>", "Pan-European", "visa application" beside order
    numbers that pass the card checks: found (low), never lifted by those words."""
    traps = [raw for kind, raw in ham(600) if b"Pan-European" in raw]
    assert len(traps) == 60
    det = CardDetector()
    for raw in traps[:20]:
        text = raw.decode()
        levels = [h.confidence.label for h in det.find(text)]
        assert len(levels) >= 8 and set(levels) == {"low"}, levels
    rng = random.Random(5)
    number = order_number_passing_luhn(rng)
    for line in ("Cc: Visa Desk <vd@partner.example>", "> CC: PAN Ops <pan@partner.example>",
                 "cc: anna@example.com", "Please cc me on", "the success of", "expires on 2026-12-31,",
                 "Pan-European hub", "pan-european", "visa application", "the visa fee for",
                 "exp(x) growth,", "Expires 12/31/2026:"):
        for text in (f"{line} order {number}", f"order {number}\n{line}"):
            assert [h.confidence.label for h in det.find(text)] == ["low"], text
    for line in ("Visa", "VISA card", "CC#", "PAN:", "exp 09/28", "Exp. date 9/2028", "expires 09/28"):
        assert [h.confidence.label for h in det.find(f"{line} {number}")] == ["high"], line


def test_high_confidence_rules_do_not_fire_on_ham() -> None:
    corpus = ham(600)
    assert Counter(k.split("+")[0] for k, _ in corpus)["business"] == 300
    demo = sorted(default_corpus_dir().glob("*.eml"))
    # the demo's one DLP positive (card numbers sent out, quarantined by qscan/demo/dlp.toml) is not ham
    demo = [p for p in demo if p.name != "26-outbound-card-numbers.eml"]
    corpus += [(p.name, p.read_bytes()) for p in demo]
    high, cards = DlpEngine(HIGH), DlpEngine(CARDS_MEDIUM)
    false_positives = {kind: hits for kind, raw in corpus if (hits := fire(high, raw))}
    assert false_positives == {}
    # cards and IBANs at medium (formatted values) stay quiet on it too
    medium = {kind: hits for kind, raw in corpus if (hits := fire(cards, raw))}
    assert medium == {}


def test_the_same_rules_catch_every_sensitive_message() -> None:
    high = DlpEngine(HIGH)
    missed = [kind for kind, raw in sensitive(60) if not fire(high, raw)]
    assert missed == []


@pytest.mark.integration
def test_bench_script_writes_its_figures(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "dlp.json"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "bench" / "dlp.py"), "--ham", "30", "--sensitive", "10",
                    "--rounds", "1", "--json", str(out)], check=True, capture_output=True, timeout=300)
    figures = json.loads(out.read_text())
    assert set(figures["cost_per_message"]) == {"ham_no_attachments", "ham_with_attachments",
                                                "sensitive_in_body", "sensitive_in_attachments"}
    assert figures["false_positives_on_ham"]["high_confidence_rules"]["fired"] == 0
    assert figures["recall_on_sensitive_high_confidence"] == {"messages": 10, "caught": 10}
