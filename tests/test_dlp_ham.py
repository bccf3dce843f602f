"""A ham corpus where high-confidence rules must not fire, and a seeded sensitive corpus where they must.

The ham (bench/dlp_corpus.py) is business mail full of order numbers, phone numbers, meeting ids,
timestamps, ISBNs and amounts, as text, CSV, XLSX, DOCX and PDF, plus the bench corpus's plain,
HTML and attachment mail and the demo corpus. bench/dlp.py reports the same counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.dlp_corpus import ham, sensitive
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


def test_high_confidence_rules_do_not_fire_on_ham() -> None:
    corpus = ham(600)
    assert Counter(k.split("+")[0] for k, _ in corpus)["business"] == 300
    demo = sorted((Path(__file__).resolve().parent.parent / "demo" / "corpus").glob("*.eml"))
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
