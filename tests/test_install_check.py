"""`qscan install --check` on real directories, users and permissions; the systemd units."""

from __future__ import annotations

import configparser
import errno
import grp
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from qscan.cli import cli
from qscan.ops import install_check
from qscan.ops.install_check import (
    QUEUE_UNITS,
    WALK_NAMED,
    Account,
    Finding,
    SmtpIdentity,
    allowed,
    check_client,
    check_private_tree,
    check_qmail_queue_setuid,
    check_smtp_connect,
    check_units,
    connect_as,
    is_static_elf,
    setuid_blockers,
    smtp_identity,
    static_behind_libc,
    unit_settings,
)
from qscan.testing.clients import native_client
from tests.conftest import require

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"


def service_user() -> str:
    """An unprivileged account we can hand directories to: `nobody` as root, else ourselves."""
    return "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def site() -> Iterator[Path]:
    # Not under pytest's tmp_path: its parents are 0700 root, which the service user cannot pass.
    base = Path(tempfile.mkdtemp(prefix="qsinst"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def setup_site(base: Path, user: str) -> Path:
    pw = pwd.getpwnam(user)
    data = base / "data"
    for d in (data, data / "archive", data / "quarantine"):
        d.mkdir()
        d.chmod(0o700)
        if os.geteuid() == 0:
            os.chown(d, pw.pw_uid, pw.pw_gid)
    run = base / "run"
    run.mkdir()
    run.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(run, pw.pw_uid, pw.pw_gid)
    qq = base / "qmail-queue"
    qq.write_text("#!/bin/sh\nexit 0\n")
    qq.chmod(0o755)
    config = base / "qscan.toml"
    config.write_text(f'data_dir = "{data}"\n[daemon]\nsocket = "{run}/qscan.sock"\nsocket_mode = 0o666\n'
                      f'qmail_queue = "{qq}"\n')
    config.chmod(0o644)
    bin_dir = base / "bin"  # where this site installs qscan-queue: on PATH, reachable by qmaild
    bin_dir.mkdir(mode=0o755)
    shutil.copy2(native_client(), bin_dir / "qscan-queue")
    (bin_dir / "qscan-queue").chmod(0o755)
    return config


def check(config: Path, user: str) -> tuple[int, str]:
    path = f"{config.parent / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    result = CliRunner().invoke(cli, ["-c", str(config), "install", "--check", "--user", user], env={"PATH": path})
    return result.exit_code, result.output


def test_a_correct_site_passes(site: Path) -> None:
    user = service_user()
    config = setup_site(site, user)
    code, out = check(config, user)
    assert code == 0, out
    assert "everything is in place" in out
    # the daemon is not running: whether qmail-smtpd can connect is said to be untested
    assert "skip  socket" in out and "not there yet" in out
    assert f"data_dir {site / 'data'}: owner {user}, mode 0700" in out


def test_problems_come_with_the_fix(site: Path) -> None:
    user = service_user()
    config = setup_site(site, user)
    data = site / "data"
    (data / "quarantine").chmod(0o755)  # mail readable by everyone
    (data / "journal.db").write_bytes(b"")
    (data / "journal.db").chmod(0o644)
    if os.geteuid() == 0:
        os.chown(data / "journal.db", pwd.getpwnam(user).pw_uid, -1)
    config.chmod(0o666)  # anyone may rewrite the config
    code, out = check(config, user)
    assert code == 1
    assert f"FIX   quarantine {data / 'quarantine'} is mode 0755" in out
    assert f"-> chmod 0700 {data / 'quarantine'}" in out
    assert f"FIX   journal {data / 'journal.db'} is mode 0644" in out
    assert "writable by others" in out and f"-> chown root: {config} && chmod 0640 {config}" in out
    assert out.splitlines()[-1].startswith("3 problem(s)")


def test_missing_user_and_group(site: Path) -> None:
    config = setup_site(site, service_user())
    code, out = check(config, "qscand-does-not-exist")
    assert code == 1 and "useradd --system" in out
    config.write_text(config.read_text().replace("socket_mode = 0o666\n",
                                                 'socket_group = "no-such-group-qs"\n'))
    code, out = check(config, service_user())
    assert code == 1 and "groupadd --system no-such-group-qs" in out


def test_foreign_owner_and_unreachable_parent(site: Path) -> None:
    require("root (to hand a directory to another user)", os.geteuid() == 0)
    user = service_user()
    config = setup_site(site, user)
    os.chown(site / "data" / "archive", 0, 0)
    code, out = check(config, user)
    assert code == 1
    assert f"-> chown -R {user}: {site / 'data' / 'archive'}" in out
    site.chmod(0o700)  # the service user can no longer pass the site directory
    code, out = check(config, user)
    assert f"cannot search the parent {site}" in out and f"-> chmod o+x {site}" in out
    assert f"config {config}: {user} cannot read it" in out


def test_access_is_judged_like_the_kernel() -> None:
    me = Account("u", 1000, 1000, frozenset({1000, 50}))
    st = os.stat_result((0o100640, 0, 0, 1, 0, 50, 0, 0, 0, 0))  # root:50 0640
    assert allowed(st, me, 4) and not allowed(st, me, 2)
    st = os.stat_result((0o100604, 0, 0, 1, 1000, 60, 0, 0, 0, 0))  # own file, owner bits 6
    assert allowed(st, me, 6)
    st = os.stat_result((0o100064, 0, 0, 1, 1000, 50, 0, 0, 0, 0))  # owner bits 0 win over group
    assert not allowed(st, me, 4)
    assert allowed(st, Account("root", 0, 0, frozenset({0})), 7)


# -- the systemd units ----------------------------------------------------------------
def units() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".timer"))


def test_units_run_as_qscand_and_call_real_commands() -> None:
    services = [p for p in units() if p.suffix == ".service"]
    assert {p.name for p in services} >= {"qscan-daemon.service", "qscan-consume@.service",
                                          "qscan-relay.service", "qscan.service",
                                          "qscan-quarantine-expire.service", "qscan-retention.service"}
    for path in services:
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str  # type: ignore[assignment,method-assign]
        unit.read(path)
        assert unit["Service"]["User"] == "qscand", path.name
        argv = shlex.split(unit["Service"]["ExecStart"].replace("%i", "archive"))
        assert argv[0] == "/usr/local/bin/qscan"
        # every command the units run exists, with these options (click rejects unknown ones)
        sub = argv[1:]
        result = CliRunner().invoke(cli, [*sub[:2], "--help"] if len(sub) > 1 and not sub[1].startswith("-")
                                    else [sub[0], "--help"])
        assert result.exit_code == 0, (path.name, result.output)
        for opt in (a for a in argv[1:] if a.startswith("--")):
            assert opt in result.output, (path.name, opt)
    for timer in (p for p in units() if p.suffix == ".timer"):
        assert (UNITS / (timer.stem + ".service")).exists()


def test_units_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require("systemd-analyze (Debian systemd)", analyze is not None)
    assert analyze is not None
    qscan = Path(sys.executable).parent / "qscan"
    for path in units():  # the same units, pointing at this checkout's qscan
        (tmp_path / path.name).write_text(path.read_text().replace("/usr/local/bin/qscan", str(qscan)))
    r = subprocess.run([analyze, "verify", "--man=no", *[str(p) for p in sorted(tmp_path.iterdir())]],
                       capture_output=True, text=True, env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
                       timeout=120)
    problems = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert not problems, problems


# -- setuid qmail-queue, and units that must not take setuid away --------------------------
def test_shipped_units_let_the_setuid_qmail_queue_work() -> None:
    for name in QUEUE_UNITS:
        settings = unit_settings([(UNITS / name).read_text()])
        assert setuid_blockers(settings) == [], name
        if "RuntimeDirectory" in settings:  # qmaild must pass /run/qscan after every boot
            assert int(settings["RuntimeDirectoryMode"], 8) & 0o001, name
    # units that never run qmail-queue keep the hardening (the check is not vacuous)
    relay = unit_settings([(UNITS / "qscan-relay.service").read_text()])
    assert setuid_blockers(relay) == ["NoNewPrivileges=yes"]
    # the daemon hands every message to qscan-queue, which runs qmail-queue: it is sandboxed
    daemon = unit_settings([(UNITS / "qscan-daemon.service").read_text()])
    assert "qscan-daemon.service" not in QUEUE_UNITS
    assert {"NoNewPrivileges=yes", "RestrictSUIDSGID=yes", "SystemCallFilter=@system-service"} <= set(
        setuid_blockers(daemon))
    assert int(daemon["RuntimeDirectoryMode"], 8) & 0o001 and daemon["ProtectSystem"] == "strict"


def test_the_client_must_be_native_and_runnable_by_the_smtp_user(site: Path) -> None:
    require("root (to judge another user's access)", os.geteuid() == 0)
    bin_dir = site / "bin"
    bin_dir.mkdir(mode=0o755)
    client = bin_dir / "qscan-queue"
    shutil.copy2(native_client(), client)
    client.chmod(0o755)
    (found,) = check_client(client, "nobody")
    assert found.ok and "(native); nobody can run it" in found.what
    client.chmod(0o700)
    (found,) = check_client(client, "nobody")
    assert not found.ok and "nobody cannot run" in found.what and found.fix == f"chmod 0755 {client}"
    client.chmod(0o755)
    bin_dir.chmod(0o700)  # e.g. a venv under /root
    (found,) = check_client(client, "nobody")
    assert not found.ok and f"it cannot pass {bin_dir}" in found.what and "install -m 0755" in found.fix
    bin_dir.chmod(0o755)
    # the Python client: its interpreter must be reachable too
    private = site / "private"
    private.mkdir(mode=0o700)
    (private / "python3").write_text("")
    script = bin_dir / "qscan-queue-py"
    script.write_text(f"#!{private / 'python3'}\n")
    script.chmod(0o755)
    assert any(not f.ok and f"to reach {private / 'python3'}" in f.what for f in check_client(script, "nobody"))
    (found,) = check_client(site / "missing", "nobody")
    assert not found.ok and "not installed" in found.what and "make install" in found.fix


def test_a_static_client_older_than_the_c_library_is_named(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """qscan-queue is linked statically: after a glibc upgrade it must be rebuilt, and the
    install check says so (by the static C library's date against the client's)."""
    client = tmp_path / "qscan-queue"
    shutil.copy2(native_client(), client)
    assert is_static_elf(client)
    assert not is_static_elf(Path("/bin/true")) and not is_static_elf(tmp_path)
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert not is_static_elf(tmp_path / "script")
    libc = tmp_path / "lib" / "libc.a"
    libc.parent.mkdir()
    libc.write_bytes(b"!<arch>\n")
    monkeypatch.setattr(install_check, "LIBC_ARCHIVES", (str(tmp_path / "lib" / "libc.a"),))
    old = client.stat().st_mtime
    os.utime(libc, (old + 3600, old + 3600))  # glibc upgraded after the client was built
    assert static_behind_libc(client) == str(libc)
    (found,) = check_client(client, "root")
    assert not found.ok and "statically linked and older than the C library" in found.what
    assert "make install" in found.fix
    os.utime(libc, (old - 3600, old - 3600))
    assert static_behind_libc(client) is None
    (found,) = check_client(client, "root")
    assert found.ok and "(native)" in found.what


def test_check_units_reads_installed_units_and_drop_ins(tmp_path: Path) -> None:
    from qscan.config import Config

    cfg = Config()
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    shutil.copy(UNITS / "qscan.service", lib / "qscan.service")
    found = check_units(cfg, (etc, lib))
    assert [f.ok for f in found] == [True], found
    # a "hardening" drop-in that implies no_new_privs, and a private runtime directory
    (etc / "qscan.service.d").mkdir()
    (etc / "qscan.service.d" / "harden.conf").write_text(
        "[Service]\nSystemCallFilter=@system-service\nRuntimeDirectoryMode=0750\n")
    bad = [f for f in check_units(cfg, (etc, lib)) if not f.ok]
    assert len(bad) == 2, bad
    assert "SystemCallFilter=@system-service" in bad[0].what and "temp-fail" in bad[0].what
    assert bad[0].fix.startswith("remove SystemCallFilter= from")
    assert "mode 0750" in bad[1].what and "RuntimeDirectoryMode=0711" in bad[1].fix
    # an empty assignment resets a list; the unit in /etc wins over /lib
    (etc / "qscan.service.d" / "zz-undo.conf").write_text(
        "[Service]\nSystemCallFilter=\nRuntimeDirectoryMode=0711\n")
    assert all(f.ok for f in check_units(cfg, (etc, lib)))
    (etc / "qscan.service").write_text(
        (UNITS / "qscan.service").read_text().replace("UMask=0077\n", "UMask=0077\nNoNewPrivileges=true\n"))
    bad = [f for f in check_units(cfg, (etc, lib)) if not f.ok]
    assert len(bad) == 1 and "NoNewPrivileges=true" in bad[0].what and str(etc) in bad[0].what


def test_qmail_queue_must_be_setuid_qmailq(site: Path) -> None:
    owner = pwd.getpwuid(os.geteuid()).pw_name  # plays qmailq: the file below is "qmail's own"
    qq = site / "qmail-queue"
    qq.write_text("#!/bin/sh\nexit 0\n")
    qq.chmod(0o711)
    (found,) = check_qmail_queue_setuid(qq, qmailq=owner)
    assert not found.ok and "must be setuid" in found.what
    assert found.fix == f"chown {owner}:qmail {qq} && chmod 4711 {qq}"
    qq.chmod(0o4711)
    (found,) = check_qmail_queue_setuid(qq, qmailq=owner)
    assert found.ok and "setuid" in found.what and "4711" in found.what
    # a stand-in owned by someone else is not qmail's: reported, not judged
    qq.chmod(0o755)
    (found,) = check_qmail_queue_setuid(qq, qmailq="qmailq-does-not-exist")
    assert found.ok and "not checked" in found.what


def test_socket_directory_must_be_passable_by_the_socket_group(site: Path) -> None:
    require("root (to hand a directory to another user)", os.geteuid() == 0)
    user = service_user()
    config = setup_site(site, user)
    (site / "run").chmod(0o750)  # as RuntimeDirectoryMode=0750 made it: group root cannot pass
    # qmail-smtpd's user is the configured one (here the directory's owner), whatever users the host has
    config.write_text(config.read_text().replace(
        "socket_mode = 0o666\n", f'socket_group = "root"\nsmtp_users = ["{user}"]\n'))
    code, out = check(config, user)
    assert code == 1
    assert f"socket directory {site / 'run'} (mode 0750): group root cannot reach the socket" in out
    assert "cannot reach the socket: SMTP mail would temp-fail" in out
    assert "set RuntimeDirectoryMode=0711 in the unit" in out and f"chmod 0711 {site / 'run'}" in out
    (site / "run").chmod(0o711)
    code, out = check(config, user)
    assert "cannot reach the socket" not in out


def test_quarantine_doc_points_at_the_shipped_expire_units() -> None:
    """One source of truth: docs/quarantine.md describes contrib/systemd's units, never a copy."""
    doc = (ROOT / "docs" / "quarantine.md").read_text()
    assert "[Service]" not in doc and "[Timer]" not in doc
    assert "`contrib/systemd/`" in doc and "qscan-quarantine-expire.timer" in doc
    timer = unit_settings([(UNITS / "qscan-quarantine-expire.timer").read_text().replace("[Timer]", "[Service]")])
    assert timer["OnCalendar"] == "*-*-* 03:30:00" and "daily at 03:30" in doc
    assert timer["RandomizedDelaySec"] == "15min" and "15 minutes of random delay" in doc
    assert timer["Persistent"] == "true" and "`Persistent=true`" in doc


# -- qmail-smtpd reaches the socket as tcpserver runs it: one uid, one group -----------------
LWQ_RUN = """#!/bin/sh
QMAILDUID=`id -u {user}`
NOFILESGID=`id -g {user}`
MAXSMTPD=`cat /var/qmail/control/concurrencyincoming`
LOCAL=`head -1 /var/qmail/control/me`
exec /usr/local/bin/softlimit -m 2000000 \\
    /usr/local/bin/tcpserver -v -R -l "$LOCAL" -x /etc/tcp.smtp.cdb -c "$MAXSMTPD" \\
        -u "$QMAILDUID" -g "$NOFILESGID" 0 smtp /var/qmail/bin/qmail-smtpd 2>&1
"""


def test_the_smtp_identity_comes_from_the_run_script(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    run = tmp_path / "run"
    run.write_text(LWQ_RUN.format(user="nobody"))
    ident = smtp_identity(run)
    assert isinstance(ident, SmtpIdentity)
    assert (ident.user, ident.uid, ident.gid) == ("nobody", nobody.pw_uid, nobody.pw_gid)
    run.write_text("#!/bin/sh\nexec tcpserver -u 0 -g 4242 0 smtp qmail-smtpd\n")
    ident = smtp_identity(run)
    assert isinstance(ident, SmtpIdentity) and (ident.user, ident.uid, ident.gid) == ("root", 0, 4242)
    run.write_text("#!/bin/sh\nexec envuidgid nobody tcpserver -U 0 smtp qmail-smtpd\n")
    ident = smtp_identity(run)
    assert isinstance(ident, SmtpIdentity) and (ident.uid, ident.gid) == (nobody.pw_uid, nobody.pw_gid)
    run.write_text('#!/bin/sh\nexec tcpserver -u "$NOPE" -g 1 0 smtp qmail-smtpd\n')
    bad = smtp_identity(run)
    assert isinstance(bad, Finding) and not bad.ok and "--smtpd-run" in bad.fix
    # no script: the SMTP user and its primary group (qmail's stock scripts: qmaild, nofiles)
    ident = smtp_identity(None, "nobody")
    assert isinstance(ident, SmtpIdentity) and ident.gid == nobody.pw_gid
    assert smtp_identity(None, "qmaild-does-not-exist-qs") is None


@pytest.fixture
def extra_group() -> Iterator[str]:
    """A group of our own with `nobody` as a supplementary member (the old usermod -a -G advice)."""
    require("root (to add a group)", os.geteuid() == 0)
    name = f"qs{os.getpid() % 100000}{secrets.token_hex(2)}"
    subprocess.run(["groupadd", name], check=True, timeout=30)
    try:
        subprocess.run(["gpasswd", "-a", "nobody", name], check=True, capture_output=True, timeout=30)
        yield name
    finally:
        subprocess.run(["groupdel", name], check=True, timeout=30)


def test_smtpd_with_only_its_run_script_group_cannot_use_a_supplementary_group(
        site: Path, extra_group: str) -> None:
    user = service_user()
    config = setup_site(site, user)
    run = site / "qmail-smtpd.run"
    run.write_text(LWQ_RUN.format(user="nobody"))
    sock_path = site / "run" / "qscan.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(sock_path))
        listener.listen(8)
        gid = grp.getgrnam(extra_group).gr_gid
        os.chown(sock_path, 0, gid)
        sock_path.chmod(0o660)
        config.write_text(config.read_text().replace("socket_mode = 0o666\n",
                                                     f'socket_mode = 0o660\nsocket_group = "{extra_group}"\n'))
        # by its group list nobody may write the socket (what the check used to judge) ...
        member = Account.lookup("nobody")
        assert member is not None and allowed(sock_path.stat(), member, 2)
        # ... but tcpserver -g keeps only nobody's primary group, and connect() says so
        result = CliRunner().invoke(cli, ["-c", str(config), "install", "--check", "--user", user,
                                          "--smtpd-run", str(run)])
        assert result.exit_code == 1
        nogroup = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        assert f"nobody with only group {nogroup} " in result.output
        assert f"cannot connect to {sock_path}: EACCES (Permission denied)" in result.output, result.output
        assert "-> set daemon.socket_mode = 0o666" in result.output
        assert "usermod -a -G" not in result.output.replace("(usermod -a -G) does not help", "")
        # the default, 0666 (access decided by the peer's uid): it connects
        sock_path.chmod(0o666)
        config.write_text(config.read_text().replace("socket_mode = 0o660\n", "socket_mode = 0o666\n"))
        result = CliRunner().invoke(cli, ["-c", str(config), "install", "--check", "--user", user,
                                          "--smtpd-run", str(run)])
        ngid = pwd.getpwnam("nobody").pw_gid
        assert f"ok    nobody with only group {nogroup} ({ngid}) ({run}: tcpserver -u " in result.output, \
            result.output
        assert f"connects to {sock_path}" in result.output and "cannot connect" not in result.output
    finally:
        listener.close()


def test_connect_as_reports_the_errno(site: Path) -> None:
    require("root (to become another user)", os.geteuid() == 0)
    nobody = pwd.getpwnam("nobody")
    assert connect_as(site / "no-such.sock", nobody.pw_uid, nobody.pw_gid) == errno.ENOENT
    stale = site / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()  # bound, never listening: what a dead daemon leaves
    stale.chmod(0o666)
    assert connect_as(stale, nobody.pw_uid, nobody.pw_gid) == errno.ECONNREFUSED
    site.chmod(0o700)  # nobody cannot pass the directory
    assert connect_as(stale, nobody.pw_uid, nobody.pw_gid) == errno.EACCES


def test_without_root_the_connect_is_said_to_be_untested(site: Path) -> None:
    """Run the SMTP check as an unprivileged user: it judges the modes with the one group and
    says the connect itself was not tested."""
    require("root (to become an unprivileged user for the test)", os.geteuid() == 0)
    from qscan.config import load_config

    config = setup_site(site, service_user())
    run = site / "qmail-smtpd.run"
    run.write_text(LWQ_RUN.format(user="nobody"))
    sock_path = site / "run" / "qscan.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    sock_path.chmod(0o660)  # root:root 0660: nobody with group nogroup may not write it
    cfg = load_config(str(config))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            nobody = pwd.getpwnam("nobody")
            os.setgroups([nobody.pw_gid])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            found = check_smtp_connect(cfg, run)
            os.write(w, json.dumps([[f.ok, f.unchecked, f.what, f.fix] for f in found]).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        found = json.loads(f.read() or b"null")
    os.waitpid(pid, 0)
    listener.close()
    assert found is not None
    bad = [f for f in found if not f[0]]
    assert any("is not writable by nobody with only group" in f[2] and "socket_mode = 0o666" in f[3]
               for f in bad), found
    skipped = [f for f in found if f[1]]
    assert skipped and "needs root" in skipped[0][2] and "not tested" in skipped[0][2]


def test_the_walk_names_the_first_entries_then_gives_one_command(site: Path) -> None:
    user = service_user()
    setup_site(site, user)
    who = Account.lookup(user)
    assert who is not None
    data = site / "data"
    many = data / "archive" / "new"
    many.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(many, who.uid, who.gid)
    for i in range(WALK_NAMED + 7):
        p = many / f"m{i:03d}"
        p.write_bytes(b"mail")
        p.chmod(0o644)
        if os.geteuid() == 0:
            os.chown(p, who.uid, who.gid)
    (data / "link").symlink_to("/etc/passwd")  # not followed, not judged
    found = check_private_tree([data], who, {}, frozenset({data}))
    named = [f for f in found if "is mode 0644: readable by others" in f.what]
    assert len(named) == WALK_NAMED and all(f.fix.startswith("chmod 0600 ") for f in named)
    [rest] = [f for f in found if f.what.startswith("... and 7 more entries under")]
    assert f"find {data.resolve()} ! -type d ! -type l -perm /077 -exec chmod 0600 {{}} +" in rest.fix
    assert not any("link" in f.what for f in found)
