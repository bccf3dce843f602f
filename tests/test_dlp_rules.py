"""DLP rules: the file format and its errors, scope (direction, domains), thresholds, actions,
encrypted mail, and the inline scanner's results."""

from __future__ import annotations

import random
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.verdict import decide
from scanners.dlp.engine import DlpEngine, MessageFacts
from scanners.dlp.extract import ExtractLimits
from scanners.dlp.rules import DlpRulesError, load_rules, parse_rules
from scanners.dlp.scanner import DlpScanner
from scanners.result import Disposition, Verdict
from tests.dlp_docs import PGP_MIME, SMIME, mail
from tests.dlp_samples import card, iban, iban_print, spaced
from tests.internal_corpus import context

RNG = random.Random(99)
CARDS = [spaced(card(RNG, "4", 16)) for _ in range(5)]
IBAN = iban_print(iban(RNG, "DE"))

RULES = """
[detectors.payment_card]
type = "payment_card"
window = 60

[detectors.falcon]
type = "keywords"
keywords = ["Project Falcon"]
context = ["confidential"]
confidence = "low"

[detectors.employee]
type = "regex"
pattern = 'EMP-[0-9]{6}'
confidence = "high"

[[rule]]
id = "cards-outbound"
description = "card numbers leaving the company"
detectors = ["payment_card"]
direction = "outbound"
min_confidence = "medium"
min_count = 3
action = "quarantine"
allow_encrypted = true

[[rule]]
id = "cards-any"
detectors = ["payment_card"]
min_confidence = "high"
action = "monitor"

[[rule]]
id = "iban-partner"
detectors = ["iban"]
recipient_domain = ["*.partner.example", "partner.example"]
except_recipient_domain = ["example.com"]
action = "notify"

[[rule]]
id = "falcon"
detectors = ["falcon"]
min_confidence = "medium"
sender_domain = ["example.com"]
action = "reject"
reply = "Project Falcon material may not be mailed"

[[rule]]
id = "employees"
detectors = ["employee", "us.ssn"]
min_count = 2
action = "notify"
notify = false
"""


@pytest.fixture(scope="module")
def engine() -> DlpEngine:
    return DlpEngine(parse_rules(RULES, "dlp.toml"))


def fired(engine: DlpEngine, raw: bytes, outbound: bool = False, sender: str = "alice@example.com",
          recipients: tuple[str, ...] = ("bob@partner.example",)) -> dict[str, str]:
    ev = engine.evaluate(context(raw).message, MessageFacts(sender, list(recipients), outbound))
    return {h.rule.id: h.action for h in ev.hits}


# -- scope and thresholds ----------------------------------------------------------------------
def test_direction_outbound_is_relayclient(engine: DlpEngine) -> None:
    raw = mail(body="Cards: " + ", ".join(CARDS[:3]))
    assert fired(engine, raw, outbound=True) == {"cards-outbound": "quarantine", "cards-any": "monitor"}
    assert fired(engine, raw, outbound=False) == {"cards-any": "monitor"}


def test_min_count_counts_distinct_values(engine: DlpEngine) -> None:
    two = mail(body=f"card {CARDS[0]}, card {CARDS[1]}, again card {CARDS[0]}")
    assert "cards-outbound" not in fired(engine, two, outbound=True)
    three = mail(body=f"card {CARDS[0]}, card {CARDS[1]}", subject=f"card {CARDS[2]}")
    assert "cards-outbound" in fired(engine, three, outbound=True)  # the Subject counts too


def test_min_confidence(engine: DlpEngine) -> None:
    bare = mail(body="refs " + " ".join(c.replace(" ", "") for c in CARDS[:3]))  # bare digits: low
    assert fired(engine, bare, outbound=True) == {}
    formatted = mail(body="refs " + ", ".join(CARDS[:3]))  # medium, no context word: not cards-any
    assert fired(engine, formatted, outbound=True) == {"cards-outbound": "quarantine"}


def test_recipient_domains_and_internal_exception(engine: DlpEngine) -> None:
    raw = mail(body=f"IBAN {IBAN}")
    assert fired(engine, raw, recipients=("bob@partner.example",)) == {"iban-partner": "notify"}
    assert fired(engine, raw, recipients=("x@eu.partner.example",)) == {"iban-partner": "notify"}
    assert fired(engine, raw, recipients=("x@other.example",)) == {}
    # every recipient internal: the rule does not apply
    assert fired(engine, raw, recipients=("x@example.com",)) == {}


def test_sender_domain_keywords_context_and_reject_text(engine: DlpEngine) -> None:
    plain = mail(body="About Project Falcon.")  # low, rule wants medium
    assert fired(engine, plain) == {}
    secret = mail(body="Confidential: Project Falcon roadmap attached.")
    assert fired(engine, secret) == {"falcon": "reject"}
    assert fired(engine, secret, sender="eve@elsewhere.test") == {}
    results = DlpScanner(engine).scan(context(secret))
    [r] = results
    assert (r.verdict, r.disposition, r.name) == (Verdict.DLP, Disposition.REJECT, "falcon")
    assert r.reply == "DProject Falcon material may not be mailed (#5.7.1)"
    d = decide(results)
    assert (d.category, d.action, d.reason, d.reply) == ("dlp", "reject", "falcon", r.reply)


def test_several_detectors_share_one_count(engine: DlpEngine) -> None:
    one_each = mail(body="EMP-123456 and SSN 536-22-8712")
    ev = engine.evaluate(context(one_each).message, MessageFacts("a@example.com", ["b@x.example"], False))
    [hit] = ev.hits
    assert hit.rule.id == "employees" and hit.count == 2 and not hit.notify
    assert {r["detector"] for r in hit.records()} == {"employee", "us.ssn"}
    only_one = mail(body="EMP-123456 and EMP-123456")
    assert fired(engine, only_one) == {}


# -- actions and results -----------------------------------------------------------------------
def test_actions_become_results(engine: DlpEngine) -> None:
    raw = mail(body="Card numbers: " + ", ".join(CARDS[:3]) + f"\nIBAN {IBAN}")
    results = DlpScanner(engine).scan(context(raw, relay=True, recipients=["bob@partner.example"]))
    by_name = {r.name: r for r in results}
    assert set(by_name) == {"cards-outbound", "cards-any", "iban-partner"}
    assert (by_name["cards-outbound"].verdict, by_name["cards-outbound"].disposition) == (
        Verdict.DLP, Disposition.QUARANTINE)
    for name in ("cards-any", "iban-partner"):  # monitor and notify: recorded, mail untouched
        assert (by_name[name].verdict, by_name[name].disposition) == (Verdict.CLEAN, Disposition.NONE)
    decision = decide(results)
    assert (decision.category, decision.action) == ("dlp", "quarantine")
    records = [d for r in results for d in r.dlp]
    notify = {d["rule"]: d["notify"] for d in records}
    assert notify == {"cards-outbound": True, "cards-any": False, "iban-partner": True}
    card_record = next(d for d in records if d["rule"] == "cards-outbound")
    assert card_record["count"] == 3 and card_record["confidence"] == "high"
    for c in CARDS[:3]:
        assert c not in str(records) and c.replace(" ", "") not in str(records)
        assert f"{c[:4]} **** **** {c[-4:]}" in card_record["evidence"]


def test_nothing_fires_nothing_extracted_when_no_rule_applies() -> None:
    policy = parse_rules('[[rule]]\nid = "o"\ndetectors = ["iban"]\ndirection = "outbound"\n'
                         '[encrypted]\ndirection = "outbound"\n')
    ev = DlpEngine(policy).evaluate(context(mail(body=IBAN)).message, MessageFacts("a@b.c", ["d@e.f"], False))
    assert not ev.inspected and ev.hits == [] and ev.action is None


@pytest.mark.parametrize("raw", [SMIME, PGP_MIME], ids=["smime", "pgp"])
def test_encrypted_mail_allowed_and_recorded(raw: bytes) -> None:
    policy = parse_rules('[[rule]]\nid = "cards"\ndetectors = ["payment_card"]\naction = "reject"\n')
    scanner = DlpScanner(DlpEngine(policy))
    results = scanner.scan(context(raw, relay=True))
    [r] = results
    assert (r.name, r.verdict, r.disposition) == ("encrypted-mail", Verdict.CLEAN, Disposition.NONE)
    [rec] = r.dlp
    assert rec["rule"] == "encrypted-mail" and rec["action"] == "allow" and rec["encrypted"] is True
    assert decide(results).action == "deliver"
    # inbound encrypted mail is not what [encrypted] is about by default
    assert scanner.scan(context(raw, relay=False)) == []
    strict = parse_rules('[encrypted]\naction = "quarantine"\ndirection = "any"\n')
    [q] = DlpScanner(DlpEngine(strict)).scan(context(raw))
    assert (q.verdict, q.disposition) == (Verdict.DLP, Disposition.QUARANTINE)


def test_rule_allow_encrypted_with_readable_findings() -> None:
    """A PGP block beside readable text: the rule's findings are recorded as allowed."""
    policy = parse_rules('[[rule]]\nid = "cards"\ndetectors = ["payment_card"]\naction = "reject"\n'
                         'allow_encrypted = true\nmin_confidence = "low"\n[encrypted]\nrecord = false\n')
    raw = mail(body=f"card {CARDS[0]}\n-----BEGIN PGP MESSAGE-----\nhQEMA\n-----END PGP MESSAGE-----\n")
    results = DlpScanner(DlpEngine(policy)).scan(context(raw, relay=True))
    r = next(r for r in results if r.name == "cards")
    enc = next(r for r in results if r.name == "encrypted-mail")
    assert enc.dlp == () and enc.disposition == Disposition.NONE  # [encrypted] record = false
    assert r.dlp[0]["action"] == "allow" and r.dlp[0]["encrypted"] is True
    assert r.disposition == Disposition.NONE and "[encrypted mail: allowed]" in r.detail


def test_limits_are_reported_and_errors_do_not_escape() -> None:
    policy = parse_rules('[[rule]]\nid = "c"\ndetectors = ["payment_card"]\n')
    raw = mail(body="x" * 3000)
    results = DlpScanner(DlpEngine(policy, limits=ExtractLimits(max_text=1000))).scan(context(raw))
    assert [r.name for r in results] == ["dlp-limits"] and "1000 characters" in (results[0].detail or "")

    class Broken(DlpEngine):
        def evaluate(self, *a: object, **k: object):  # type: ignore[no-untyped-def, override]
            raise RuntimeError(CARDS[0])  # the message must not reach the log or the result

    for action, disposition in (("quarantine", Disposition.QUARANTINE), ("tempfail", Disposition.TEMPFAIL),
                                ("deliver", Disposition.NONE)):
        [err] = DlpScanner(Broken(policy), action).scan(context(raw))
        assert err.name == "dlp-error" and err.disposition == disposition and CARDS[0] not in str(err)
    with pytest.raises(ValueError):
        DlpScanner(DlpEngine(policy), "drop")


# -- the file format ---------------------------------------------------------------------------
def test_example_in_module_docstring_and_builtin_names_load() -> None:
    import scanners.dlp.rules as mod

    example = (mod.__doc__ or "").split("::", 1)[1].split("Built-in", 1)[0]
    policy = parse_rules("\n".join(line[4:] for line in example.splitlines()))
    assert [r.id for r in policy.rules] == ["cards-outbound"]
    policy = parse_rules('[[rule]]\nid = "all"\ndetectors = ["payment_card", "iban", "us.ssn", "de.idnr", '
                         '"gb.nhs", "in.aadhaar"]\n')
    assert set(policy.detectors) == {"payment_card", "iban", "us.ssn", "de.idnr", "gb.nhs", "in.aadhaar"}


@pytest.mark.parametrize(("text", "expected"), [
    ("[[rule]]\nid = 'a'\ndetectors = ['nope']\n", "dlp.toml: rule #1 (a): detector 'nope': unknown detector"),
    ("[[rule]]\nid = 'a'\ndetectors = ['iban']\naction = 'drop'\n", "dlp.toml: rule #1 (a): key 'action'"),
    ("[[rule]]\nid = 'a'\ndetectors = ['iban']\nmin_count = 0\n", "key 'min_count': Input should be greater"),
    ("[[rule]]\nid = 'a'\ndetectors = ['iban']\ncolour = 1\n", "dlp.toml: rule #1 (a): key 'colour': unknown key"),
    ("[[rule]]\nid = 'a'\ndetectors = ['iban']\n[[rule]]\nid = 'a'\ndetectors = ['iban']\n",
     "rule #2 (a): duplicate rule id"),
    ("[detectors.x]\ntype = 'regex'\npattern = '(a)\\1'\n", "dlp.toml: detector 'x': bad regex"),
    ("[detectors.x]\ntype = 'magic'\n", "key 'detectors.x'"),
    ("[[rule]\n", "dlp.toml: TOML syntax error"),
    ("[detectors.x]\ntype = 'national_id'\nid = 'zz.none'\npattern = '[0-9]+'\n", "python-stdnum has no module"),
    ("[[rule]]\nid = 'bad id!'\ndetectors = ['iban']\n", "key 'id'"),
])
def test_errors_name_file_rule_and_key(text: str, expected: str) -> None:
    with pytest.raises(DlpRulesError) as info:
        parse_rules(text, "dlp.toml")
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_load_rules_names_the_file(tmp_path: object) -> None:
    from pathlib import Path

    missing = Path(str(tmp_path)) / "none.toml"
    with pytest.raises(DlpRulesError, match=r"none\.toml: cannot read"):
        load_rules(missing)


_key = st.sampled_from(["id", "detectors", "action", "direction", "min_count", "min_confidence", "notify",
                        "sender_domain", "recipient_domain", "reply", "allow_encrypted", "bogus"])
_value = st.one_of(st.text(max_size=20), st.integers(-5, 5), st.booleans(),
                   st.lists(st.sampled_from(["payment_card", "iban", "us.ssn", "x", "*.example", "[", ""]),
                            max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=st.lists(st.dictionaries(_key, _value, max_size=8), max_size=4),
       detectors=st.dictionaries(st.sampled_from(["payment_card", "x", "k"]),
                                 st.dictionaries(st.sampled_from(["type", "pattern", "keywords", "window",
                                                                  "confidence", "id"]),
                                                 _value, max_size=4), max_size=2))
def test_rules_parser_accepts_or_explains_any_structure(rules: list[dict[str, object]],
                                                         detectors: dict[str, object]) -> None:
    import tomli_w

    text = tomli_w.dumps({"rule": rules, "detectors": detectors})
    try:
        policy = parse_rules(text, "gen.toml")
    except DlpRulesError as exc:
        assert exc.problems and all(p.startswith("gen.toml") for p in exc.problems)
        return
    for rule in policy.rules:
        assert rule.min_count >= 1 and rule.action in ("monitor", "notify", "quarantine", "reject")
        assert all(name in policy.detectors for name in rule.detectors)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_rules_parser_never_raises_anything_else(text: str) -> None:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        pass
    try:
        parse_rules(text, "fuzz.toml")
    except DlpRulesError:
        pass


def test_the_documented_example_loads_and_works() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "dlp.md").read_text()
    example = doc.split("# /etc/qscan/dlp.toml\n", 1)[1].split("```", 1)[0]
    policy = parse_rules(example, "docs/dlp.md")
    assert [r.id for r in policy.rules] == ["cards-outbound", "ibans-to-partners", "national-ids", "falcon"]
    engine = DlpEngine(policy)
    pps = parse_rules(example + '[[rule]]\nid = "pps"\ndetectors = ["irish-pps"]\n', "x")
    raw = mail(body="PPSN 6433435F, and 6433435F again")
    assert fired(DlpEngine(pps), raw) == {"pps": "monitor"}
    assert fired(engine, mail(body="CONFIDENTIAL: Project Falcon")) == {"falcon": "reject"}


def test_cli_check_and_test(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from click.testing import CliRunner

    from qscan.cli import cli

    root = Path(str(tmp_path))
    cfg = root / "qscan.toml"
    cfg.write_text(f'data_dir = "{root}"\n[dlp]\nrules = "dlp.toml"\n')
    (root / "dlp.toml").write_text(RULES)
    msg = root / "m.eml"
    msg.write_bytes(mail(body="Card numbers: " + ", ".join(CARDS[:3])))
    runner = CliRunner()
    out = runner.invoke(cli, ["-c", str(cfg), "dlp", "check"])
    assert out.exit_code == 0, out.output
    assert "cards-outbound: payment_card >= 3 at medium+, outbound -> quarantine + notify (encrypted: allow)" \
        in out.output
    assert "employees: employee, us.ssn >= 2 at medium+, any direction -> notify\n" in out.output
    assert f"{root / 'dlp.toml'}: OK, 5 rules" in out.output
    out = runner.invoke(cli, ["-c", str(cfg), "dlp", "test", str(msg), "--outbound"])
    assert out.exit_code == 0 and "action: quarantine" in out.output
    assert f"payment_card: {CARDS[0][:4]} **** **** {CARDS[0][-4:]} (high) in 1" in out.output
    out = runner.invoke(cli, ["-c", str(cfg), "dlp", "test", str(msg), "--json"])
    data = json.loads(out.output)
    assert data["action"] == "monitor" and data["inspected"]
    for c in CARDS:
        assert c not in out.output and c.replace(" ", "") not in out.output
    (root / "bad.toml").write_text("[[rule]]\nid = 'x'\ndetectors = ['nope']\n")
    out = runner.invoke(cli, ["-c", str(cfg), "dlp", "check", str(root / "bad.toml")])
    assert out.exit_code == 1 and "rule #1 (x): detector 'nope'" in out.output


@pytest.mark.parametrize("kind", ["payment_card", "iban", "national_id", "regex"])
@pytest.mark.parametrize("value", ["clear", "masked"])
def test_evidence_is_only_for_keyword_dictionaries(kind: str, value: str) -> None:
    extra = {"national_id": 'id = "us.ssn"\n', "regex": 'pattern = "EMP-[0-9]{6}"\n'}.get(kind, "")
    text = (f'[[rule]]\nid = "r"\ndetectors = ["mine"]\n\n# the site\'s own\n[detectors.mine]\n'
            f'type = "{kind}"\n{extra}evidence = "{value}"\n')
    line = text.splitlines().index(f'evidence = "{value}"') + 1
    with pytest.raises(DlpRulesError) as info:
        parse_rules(text, "dlp.toml")
    assert info.value.problems == [
        f"dlp.toml:{line}: key 'detectors.mine.evidence': only a keyword dictionary (type = \"keywords\") "
        f"may set evidence; what a {kind} detector finds is always masked (full values never go to "
        "events, logs or SQL)"]


def test_clear_evidence_is_an_explicit_keyword_opt_in() -> None:
    base = '[[rule]]\nid = "r"\ndetectors = ["codes"]\n[detectors.codes]\ntype = "keywords"\nkeywords = ["Bluebird"]\n'
    msg = mail(body="Project Bluebird starts Monday.")
    facts = MessageFacts("a@example.com", ["b@partner.example"], True)
    from email import message_from_bytes, policy

    def evidence(text: str) -> str:
        ev = DlpEngine(parse_rules(text)).evaluate(message_from_bytes(msg, policy=policy.default), facts)
        return str(ev.records()[0]["evidence"])

    assert evidence(base) == "******rd"  # masked unless asked
    assert evidence(base + 'evidence = "clear"\n') == "Bluebird"


@pytest.mark.parametrize(("order", "ok"), [(["size", "internal", "dlp"], True), (["dlp"], True),
                                           (["size", "dlp", "internal"], False), (["dlp", "size"], False)])
def test_config_check_wants_dlp_last(tmp_path: object, order: list[str], ok: bool) -> None:
    from pathlib import Path

    from click.testing import CliRunner

    from qscan.cli import cli

    cfg = Path(str(tmp_path)) / "qscan.toml"
    listed = ", ".join(f'"{s}"' for s in order)
    cfg.write_text(f'data_dir = "{tmp_path}"\n\n[scanners]\nenabled = [{listed}]\n')
    out = CliRunner().invoke(cli, ["-c", str(cfg), "config", "check"])
    if ok:
        assert "must be the last" not in out.output
        return
    fixed = ", ".join(f'"{s}"' for s in [*(s for s in order if s != "dlp"), "dlp"])
    assert out.exit_code != 0
    assert (f"{cfg}:4: key 'scanners.enabled': Value error, \"dlp\" must be the last scanner (it runs on "
            f"what the others decoded): write enabled = [{fixed}]") in out.output


def test_dlp_check_names_clear_evidence_and_refuses_it_elsewhere(tmp_path: object) -> None:
    from pathlib import Path

    from click.testing import CliRunner

    from qscan.cli import cli

    rules = Path(str(tmp_path)) / "dlp.toml"
    cfg = Path(str(tmp_path)) / "qscan.toml"
    cfg.write_text(f'data_dir = "{tmp_path}"\n')
    rules.write_text('[[rule]]\nid = "r"\ndetectors = ["codes"]\n[detectors.codes]\ntype = "keywords"\n'
                     'keywords = ["Bluebird"]\nevidence = "clear"\n')
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "check", str(rules)])
    assert out.exit_code == 0, out.output
    assert "note: detector 'codes' records its dictionary words in clear" in out.output
    rules.write_text('[[rule]]\nid = "r"\ndetectors = ["payment_card"]\n[detectors.payment_card]\n'
                     'type = "payment_card"\nevidence = "clear"\n')
    out = CliRunner().invoke(cli, ["-c", str(cfg), "dlp", "check", str(rules)])
    assert out.exit_code == 1
    assert f"{rules}:6: key 'detectors.payment_card.evidence': only a keyword dictionary" in out.output
