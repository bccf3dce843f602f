"""Config sections of the external scanners: each is the scanner's own settings class, handed over as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from qscan.config import Config, ConfigError, parse_config
from qscan.wiring.pipeline import make_scanners
from scanners.clamd import ClamdScanner
from scanners.cmdline import CmdlineScanner
from scanners.rspamd import RspamdScanner
from scanners.spamd import SpamdScanner


def test_wiring_builds_every_external_scanner(tmp_path: Path) -> None:
    cfg = parse_config(
        '[scanners]\nenabled = ["size", "clamd", "cmdline", "cymru", "spamd", "rspamd"]\n'
        '[clamd]\nsocket = ""\nport = 3311\nredundant = true\n'
        '[spamd]\nsocket = "/run/spamd.sock"\nsubject_prefix = "[SPAM]"\nreject_score = 20\n'
        '[rspamd]\npassword = "s3cret"\nreject_action = "quarantine"\n'
        '[cmdline]\nname = "sophos"\nargv = ["/opt/sophos/savscan", "{path}"]\nexit_codes = { "0" = "clean", "3" = "virus" }\n'
        '[cymru]\nnameservers = ["127.0.0.1"]\nthreshold = 40\n',
        tmp_path / "q.toml",
    )
    _size, clamd, cmd, cymru, spamd, rspamd = make_scanners(cfg)
    assert isinstance(clamd, ClamdScanner) and str(clamd.endpoint) == "127.0.0.1:3311"
    assert clamd.opt is cfg.clamd  # passed straight through: no copy to drift from the section
    assert isinstance(cmd, CmdlineScanner) and cmd.name == "sophos" and cmd.opt.exit_codes == {0: "clean", 3: "virus"}
    assert cymru.opt.threshold == 40  # type: ignore[attr-defined]
    assert isinstance(spamd, SpamdScanner) and spamd.opt.socket == "/run/spamd.sock"
    assert (spamd.opt.subject_prefix, spamd.opt.reject_score) == ("[SPAM]", 20)
    assert isinstance(rspamd, RspamdScanner) and rspamd.opt.password == "s3cret"
    assert "s3cret" not in str(cfg.effective())  # secrets are never printed by `config check`


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[clamd]\nsocket = "relative.sock"\n', "q.toml:2: key 'clamd.socket': Value error, must be an absolute path"),
        ("[spamd]\nfailure_policy = 'maybe'\n", "q.toml:2: key 'spamd.failure_policy': Input should be"),
        ("[cmdline]\nvirus_regex = '('\n", "q.toml:2: key 'cmdline.virus_regex': Value error, invalid regular"),
        ("[cymru]\nthreshold = 101\n", "q.toml:2: key 'cymru.threshold': Input should be less than or equal to 100"),
    ],
)
def test_errors_name_the_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path / "q.toml")
    assert expected in str(exc.value)


def test_cmdline_enabled_without_a_command_is_refused() -> None:
    cfg = Config.model_validate({"scanners": {"enabled": ["cmdline"]}})
    with pytest.raises(ValueError, match=r"cmdline\.argv is empty"):
        make_scanners(cfg)
