"""`qscan config check` runs the daemon's start-up checks (qscan/ops/preflight.py), as a user runs them.

Every broken config here used to pass `config check` and then stop the daemon (some with a
traceback), or start a daemon that temp-failed every message. Each is run as a subprocess the way
a postmaster does: `qscan config check`, `qscan daemon` and `qscan run` must all refuse it with the
same lines (FILE:LINE: key 'x.y': message), exit 2, and never show a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from qscan.config import ConfigError, load_config, parse_config
from qscan.testing.standin import write_standin

# Lines of the config every case writes (kept fixed so the expected line numbers are real).
TEMPLATE = """\
data_dir = "{root}"
[daemon]
socket = "{sock}"
qmail_queue = "{qq}"
workers = 1
[scanners]
enabled = {enabled}
[internal]
{internal_rules}
[dlp]
{dlp_rules}
[cmdline]
{cmdline}
[summary_log]
target = "file"
"""
# 1-based line numbers of the keys above
L_QMAIL_QUEUE, L_ENABLED, L_INTERNAL_RULES, L_DLP, L_DLP_RULES, L_CMDLINE = 4, 7, 9, 10, 11, 12

POLICY_BAD = """\
[[rule]]
id = "exe"
action = "quarantine"
filename_regex = ['(']

[[rule]]
id = "zip"
action = "explode"
filename = ["*.zip"]
"""

DLP_BAD = """\
[detectors.employee]
type = "regex"
pattern = 'EMP-[0-9'

[[rule]]
id = "emp"
detectors = ["employee"]
action = "shred"
"""

DLP_GOOD = """\
[detectors.employee]
type = "regex"
pattern = 'EMP-[0-9]{6}'

[[rule]]
id = "emp"
detectors = ["employee"]
action = "monitor"
"""


@dataclass
class Site:
    root: Path
    sock_dir: Path
    qq: Path

    def config(self, *, enabled: str = '["size", "internal"]', qq: str | None = None,
               internal_rules: str | None = None, dlp_rules: str | None = None,
               cmdline: str | None = None) -> Path:
        path = self.root / "qscan.toml"
        path.write_text(TEMPLATE.format(
            root=self.root, sock=self.sock_dir / "q.sock", qq=qq if qq is not None else self.qq,
            enabled=enabled,
            internal_rules=f'rules = "{internal_rules}"' if internal_rules else "# rules unset",
            dlp_rules=f'rules = "{dlp_rules}"' if dlp_rules else "# rules unset",
            cmdline=cmdline or "# defaults",
        ))
        return path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    sock_dir = Path(tempfile.mkdtemp(prefix="qs"))  # unix socket paths must stay short
    qq = write_standin(tmp_path / "bin" / "qmail-queue", tmp_path / "queued")
    (tmp_path / "rulesdir").mkdir()
    (tmp_path / "policy-bad.toml").write_text(POLICY_BAD)
    (tmp_path / "dlp-bad.toml").write_text(DLP_BAD)
    (tmp_path / "dlp-good.toml").write_text(DLP_GOOD)
    try:
        yield Site(tmp_path, sock_dir, qq)
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def qscan(config: Path, *args: str, timeout: float = 30) -> tuple[int, str]:
    """Run ``python -m qscan -c CONFIG ARGS`` as a user does; (exit code, stdout + stderr).

    A command that is still running after ``timeout`` (a daemon that started, a supervisor
    restarting a crashing daemon) is stopped and reported as exit code -1."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "qscan", "-c", str(config), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return -1, out.decode("utf-8", "replace")


def problem_lines(output: str, root: Path) -> list[str]:
    """The lines that name a place (FILE:LINE: ...), without the leading 'qscan: '."""
    lines = [line.removeprefix("qscan: ") for line in output.splitlines()]
    return [line for line in lines if line.startswith(str(root))]


def refused_alike(site: Site, config: Path, expected: list[str]) -> None:
    """config check, daemon and run all exit 2 with the same problem lines, no traceback."""
    code, check = qscan(config, "config", "check")
    assert code == 2, check
    assert "Traceback" not in check, check
    for text in expected:
        assert text in check, f"{text!r} not in:\n{check}"
    lines = problem_lines(check, site.root)
    assert lines, check
    for command in (["daemon"], ["run", "--no-upgrade"]):
        code, out = qscan(config, *command)
        assert code == 2, f"{command}: exit {code}:\n{out}"
        assert "Traceback" not in out, out
        assert problem_lines(out, site.root) == lines, out  # the same checks, the same words
        assert not (site.sock_dir / "q.sock").exists()  # refused before listening


def test_missing_internal_rules_file(site: Site) -> None:
    cfg = site.config(internal_rules="nope.toml")
    refused_alike(site, cfg, [f"{cfg}:{L_INTERNAL_RULES}: key 'internal.rules': ",
                              f"{site.root / 'nope.toml'}", "no such file"])


def test_internal_rules_path_is_a_directory(site: Site) -> None:
    cfg = site.config(internal_rules="rulesdir")
    refused_alike(site, cfg, [f"{cfg}:{L_INTERNAL_RULES}: key 'internal.rules': ", "is a directory"])


def test_bad_regex_and_bad_action_in_policy_rules_named_by_file_line_and_rule(site: Site) -> None:
    cfg = site.config(internal_rules="policy-bad.toml")
    rules = site.root / "policy-bad.toml"
    refused_alike(site, cfg, [
        f"{cfg}:{L_INTERNAL_RULES}: key 'internal.rules': ",
        f"{rules}:4: rule #1 (exe): key 'filename_regex': bad regex",
        f"{rules}:8: rule #2 (zip): key 'action': Input should be 'quarantine'",
    ])


def test_bad_regex_and_bad_action_in_dlp_rules(site: Site) -> None:
    cfg = site.config(enabled='["size", "internal", "dlp"]', dlp_rules="dlp-bad.toml")
    rules = site.root / "dlp-bad.toml"
    refused_alike(site, cfg, [
        f"{cfg}:{L_DLP_RULES}: key 'dlp.rules': ",
        f"{rules}:8: rule #1 (emp): key 'action': Input should be 'monitor'",
    ])


def test_dlp_enabled_without_rules(site: Site) -> None:
    cfg = site.config(enabled='["size", "internal", "dlp"]')
    refused_alike(site, cfg, [f"{cfg}:{L_DLP}: key 'dlp.rules': ", "scanners.enabled", "docs/dlp.md"])


def test_unknown_scanner_name_suggests_the_right_one(site: Site) -> None:
    cfg = site.config(enabled='["size", "clamav", "internal"]')
    refused_alike(site, cfg, [f"{cfg}:{L_ENABLED}: key 'scanners.enabled[1]': ",
                              "unknown scanner 'clamav' (did you mean 'clamd'?"])


@pytest.mark.parametrize("kind", ["missing", "not-executable", "directory"])
def test_qmail_queue_must_be_an_executable_file(site: Site, kind: str) -> None:
    qq = site.root / "bin" / "qmail-queue-x"
    if kind == "not-executable":
        qq.write_text("#!/bin/sh\nexit 0\n")
        qq.chmod(0o644)
    elif kind == "directory":
        qq.mkdir()
    cfg = site.config(qq=str(qq))
    refused_alike(site, cfg, [f"{cfg}:{L_QMAIL_QUEUE}: key 'daemon.qmail_queue': {qq}"])


def test_cmdline_enabled_without_argv(site: Site) -> None:
    cfg = site.config(enabled='["size", "cmdline", "internal"]')
    refused_alike(site, cfg, [f"{cfg}:{L_CMDLINE}: key 'cmdline.argv': "])


def test_every_problem_is_listed_not_just_the_first(site: Site) -> None:
    cfg = site.config(enabled='["size", "internal", "dlp"]', internal_rules="policy-bad.toml",
                      qq=str(site.root / "nowhere" / "qmail-queue"))
    code, out = qscan(cfg, "config", "check")
    assert code == 2 and "Traceback" not in out, out
    lines = problem_lines(out, site.root)
    assert any(f":{L_QMAIL_QUEUE}: key 'daemon.qmail_queue'" in x for x in lines), out
    assert any(f":{L_INTERNAL_RULES}: key 'internal.rules'" in x for x in lines), out
    assert any(":4: rule #1 (exe)" in x for x in lines) and any(":8: rule #2 (zip)" in x for x in lines)
    assert any(f":{L_DLP}: key 'dlp.rules'" in x for x in lines), out


def test_a_sound_config_passes_check_and_the_daemon_starts(site: Site) -> None:
    cfg = site.config(enabled='["size", "internal", "dlp"]', dlp_rules="dlp-good.toml")
    code, out = qscan(cfg, "config", "check")
    assert code == 0, out
    assert f"{cfg}: OK" in out
    code, out = qscan(cfg, "daemon", timeout=8)  # still serving when stopped
    assert code == -1 and "Traceback" not in out, out
    assert "listening on" in out


# -- the scanner-name enum, at parse time -------------------------------------------------------
def test_scanner_names_are_the_wired_scanners() -> None:
    from qscan.config import SCANNER_NAMES
    from qscan.wiring.pipeline import SCANNERS

    assert set(SCANNER_NAMES) == set(SCANNERS)


def test_each_scanners_settings_are_the_config_section_of_its_name() -> None:
    """The registry's settings half: a scanner with settings has the Config section named after
    it, of the model the registry names; the names come from the registry alone."""
    from qscan.config import SCANNER_NAMES, SCANNER_SETTINGS, Config

    assert tuple(SCANNER_SETTINGS) == SCANNER_NAMES
    for name, model in SCANNER_SETTINGS.items():
        if model is not None:
            assert Config.model_fields[name].annotation is model, name
            assert isinstance(getattr(Config(), name), model)


def test_registry_attributes_name_keys_the_sections_have() -> None:
    """What preflight and `qscan status` know of a scanner comes from its registry entry, and
    each attribute names something its settings have: a rules file, the key it needs, the
    host/port a ping goes to, or a scanner that can be asked for its version."""
    from qscan.config import SCANNER_SETTINGS, Config, section_fields
    from qscan.wiring.pipeline import SCANNERS

    for name, entry in SCANNERS.items():
        keys = set(section_fields(SCANNER_SETTINGS[name])) if SCANNER_SETTINGS[name] else set()
        if entry.rules:
            assert "rules" in keys, name
        if entry.needs:
            assert entry.needs in keys, name
        if entry.probe == "ping":
            assert {"host", "port", "timeout"} <= keys, name
        if entry.probe == "version":
            assert hasattr(entry.build(Config()), "refresh_version"), name


def test_every_section_is_a_packages_settings_class() -> None:
    """Each setting is defined once: every Config section but the composition ones is the frozen
    settings class of the package that uses it, not a model of qscan/config.py's own."""
    import dataclasses

    from qscan.config import Config, _submodel, section_fields

    composition = {"Config", "ScannersConfig", "LogConfig", "ConsumersConfig"}
    seen = []
    for name, field in section_fields(Config).items():
        model = _submodel(field)
        if model is None:
            continue
        seen.append(model)
        if model.__name__ in composition:
            continue
        assert model.__module__ != "qscan.config", name
        assert dataclasses.is_dataclass(model) and model.__dataclass_params__.frozen, name  # type: ignore[attr-defined]
    assert len(seen) >= 20


def test_consumer_names_are_the_wired_sinks() -> None:
    from pydantic import ValidationError

    from qscan.config import CONSUMER_NAMES, Config
    from qscan.wiring.pipeline import SINKS, make_sink

    assert set(CONSUMER_NAMES) == set(SINKS)
    with pytest.raises(ValidationError, match="'archive', 'summaries', 'notify' or 'index'"):
        Config.model_validate({"consumers": {"enabled": ["archives"]}})
    with pytest.raises(ValueError, match="unknown consumer 'archives'"):
        make_sink(Config(), "archives")


@pytest.mark.parametrize(("name", "hint"), [("clamav", "did you mean 'clamd'?"), ("Internal", "did you mean "
                                            "'internal'?"), ("rspam", "did you mean 'rspamd'?"),
                                            ("zzz", "known: ")])
def test_unknown_scanner_is_a_parse_error_with_a_suggestion(tmp_path: Path, name: str, hint: str) -> None:
    text = f'[scanners]\n\nenabled = ["size", "{name}"]\n'
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path / "q.toml")
    msg = str(exc.value)
    assert "q.toml:3: key 'scanners.enabled[1]': " in msg and f"unknown scanner {name!r}" in msg
    assert hint in msg


def test_a_scanner_listed_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'clamd' is listed twice"):
        parse_config('[scanners]\nenabled = ["clamd", "internal", "clamd"]\n', tmp_path / "q.toml")


# -- the consumers `qscan run` starts --------------------------------------------------------------
def test_notify_problems_stop_check_and_run_not_the_daemon_alone(site: Site) -> None:
    cfg = site.config()
    cfg.write_text(cfg.read_text() + '[consumers]\nenabled = ["archive", "notify"]\n[notify]\n'
                   f'transport = "qmail-inject"\nqmail_inject = "{site.root}/no-inject"\n'
                   'template_dir = "no-templates"\n')
    code, check = qscan(cfg, "config", "check")
    assert code == 2 and "Traceback" not in check, check
    assert f"{cfg}:20: key 'notify.qmail_inject': {site.root}/no-inject does not exist" in check
    assert f"{cfg}:21: key 'notify.template_dir': {site.root}/no-templates is not a directory" in check
    code, out = qscan(cfg, "run", "--no-upgrade")
    assert code == 2 and problem_lines(out, site.root) == problem_lines(check, site.root), out
    code, out = qscan(cfg, "daemon", timeout=8)  # the daemon itself sends no notices
    assert code == -1 and "listening on" in out, out


# -- a rules file's problems, in process -----------------------------------------------------------
def problems_of(tmp_path: Path, enabled: str, section: str, rules_text: str) -> list[str]:
    from qscan.ops.preflight import run

    (tmp_path / "r.toml").write_text(rules_text)
    qq = write_standin(tmp_path / "qq", tmp_path / "rec")
    (tmp_path / "q.toml").write_text(f'[daemon]\nqmail_queue = "{qq}"\n[scanners]\nenabled = {enabled}\n'
                                     f'[{section}]\nrules = "r.toml"\n')
    cfg = load_config(tmp_path / "q.toml")
    return [str(p) for p in run(cfg)[1]]


def test_a_toml_syntax_error_in_a_rules_file_names_its_line(tmp_path: Path) -> None:
    found = problems_of(tmp_path, '["internal"]', "internal", '[[rule]]\nid = "a"\naction = \n')
    assert found[0].startswith(f"{tmp_path / 'q.toml'}:6: key 'internal.rules': the rules file ")
    assert found[1].startswith(f"{tmp_path / 'r.toml'}:3: TOML syntax error")


def test_an_unknown_dlp_detector_is_named_at_its_rule(tmp_path: Path) -> None:
    rules = ('[[rule]]\nid = "ok"\ndetectors = ["payment_card"]\naction = "monitor"\n\n'
             '[[rule]]\nid = "typo"\ndetectors = ["payment_crad"]\naction = "monitor"\n')
    found = problems_of(tmp_path, '["dlp"]', "dlp", rules)
    assert len(found) == 2, found
    assert found[1].startswith(f"{tmp_path / 'r.toml'}:6: rule #2 (typo): detector 'payment_crad': "
                               "unknown detector")


def test_a_bad_detector_used_by_two_rules_is_named_once(tmp_path: Path) -> None:
    rules = ('[detectors.emp]\ntype = "regex"\npattern = "EMP-[0-9"\n\n'
             '[[rule]]\nid = "a"\ndetectors = ["emp"]\naction = "monitor"\n\n'
             '[[rule]]\nid = "b"\ndetectors = ["emp"]\naction = "notify"\n')
    found = problems_of(tmp_path, '["dlp"]', "dlp", rules)
    assert len(found) == 2, found
    assert found[1].startswith(f"{tmp_path / 'r.toml'}:1: rule #1 (a): detector 'emp': bad regex")
