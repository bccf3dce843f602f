"""`qscan install --check`: is this host set up the way the service units expect?

It looks and never changes anything: the service user, the directories and
files the config names (owner, mode, reachable through their parents), the
socket's directory, group and mode, the real qmail-queue and the qscan-queue
client. Each finding says what is wrong and the command that fixes it, so an
administrator can read the output top to bottom and be done.

Access is judged for the service user the way the kernel would (owner, group,
other bits, and search permission on every parent directory), so running the
check as root still answers "can qscand get there?".
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from qscan.config import Config

R, W, X = 4, 2, 1
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the NUL


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def lookup(cls, name: str) -> Account | None:
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            return None
        groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, pw.pw_uid, pw.pw_gid, frozenset(groups))


def allowed(st: os.stat_result, who: Account, want: int) -> bool:
    """Would ``who`` get ``want`` (R|W|X bits) on a file with this stat? (root: always)"""
    if who.uid == 0:
        return True
    if st.st_uid == who.uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in who.groups:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & want == want


def blocking_parent(path: Path, who: Account) -> Path | None:
    """The first parent directory ``who`` cannot search (None: all can be passed)."""
    for parent in reversed(path.absolute().parents):
        try:
            st = parent.stat()
        except OSError:
            return None  # missing parents are reported by the caller
        if not allowed(st, who, X):
            return parent
    return None


def _owner(st: os.stat_result) -> str:
    try:
        return pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return str(st.st_uid)


def check_dir(path: Path, who: Account, label: str, *, private: bool = True) -> list[Finding]:
    """A directory the service writes: exists (or can be created), owned by it, 0700."""
    fix_create = f"install -d -o {who.name} -g {who.name} -m 0700 {path}"
    if not path.exists():
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if parent.is_dir() and allowed(parent.stat(), who, W | X) and blocking_parent(parent, who) is None:
            return [Finding(True, f"{label} {path} does not exist yet; {who.name} can create it")]
        return [Finding(False, f"{label} {path} does not exist and {who.name} cannot create it", fix_create)]
    if not path.is_dir():
        return [Finding(False, f"{label} {path} is not a directory", f"move it away, then: {fix_create}")]
    st = path.stat()
    out: list[Finding] = []
    blocked = blocking_parent(path, who)
    if blocked is not None:
        out.append(Finding(False, f"{label} {path}: {who.name} cannot search the parent {blocked}",
                           f"chmod o+x {blocked}   (or give {who.name} group access to it)"))
    if st.st_uid != who.uid:
        out.append(Finding(False, f"{label} {path} is owned by {_owner(st)}, not {who.name}",
                           f"chown -R {who.name}: {path}"))
    elif not allowed(st, who, R | W | X):
        out.append(Finding(False, f"{label} {path}: {who.name} cannot write it", f"chmod u+rwx {path}"))
    mode = stat.S_IMODE(st.st_mode)
    if private and mode & 0o077:
        out.append(Finding(False, f"{label} {path} is mode {mode:04o}: mail is readable by others",
                           f"chmod 0700 {path}"))
    if not out:
        out.append(Finding(True, f"{label} {path}: owner {who.name}, mode {mode:04o}"))
    return out


def check_private_file(path: Path, who: Account, label: str) -> list[Finding]:
    if not path.exists():
        return [Finding(True, f"{label} {path} not created yet")]
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    out = []
    if st.st_uid != who.uid:
        out.append(Finding(False, f"{label} {path} is owned by {_owner(st)}, not {who.name}",
                           f"chown {who.name}: {path}*"))
    if mode & 0o077:
        out.append(Finding(False, f"{label} {path} is mode {mode:04o}", f"chmod 0600 {path}*"))
    return out or [Finding(True, f"{label} {path}: owner {who.name}, mode {mode:04o}")]


def check_config_file(path: Path, who: Account, has_secrets: bool) -> list[Finding]:
    if not path.exists():
        return [Finding(False, f"config {path} does not exist", f"qscan config example > {path}")]
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    out = []
    blocked = blocking_parent(path, who)
    if blocked is not None or not allowed(st, who, R):
        out.append(Finding(False, f"config {path}: {who.name} cannot read it",
                           f"chgrp {who.name} {path} && chmod 0640 {path}"
                           + (f"; chmod o+x {blocked}" if blocked else "")))
    if mode & 0o022 or (st.st_uid != 0 and st.st_uid != os.geteuid()):
        out.append(Finding(False, f"config {path} is writable by others "
                                  f"(mode {mode:04o}, owner {_owner(st)})",
                           f"chown root: {path} && chmod 0640 {path}"))
    if has_secrets and mode & 0o004:
        out.append(Finding(False, f"config {path} holds passwords and is world-readable",
                           f"chgrp {who.name} {path} && chmod 0640 {path}"))
    return out or [Finding(True, f"config {path}: readable by {who.name}, mode {mode:04o}")]


def check_socket(cfg: Config, who: Account) -> list[Finding]:
    d = cfg.daemon
    out: list[Finding] = []
    path = d.socket
    if len(str(path).encode()) > SOCKET_PATH_MAX:
        out.append(Finding(False, f"socket path {path} is longer than {SOCKET_PATH_MAX} bytes",
                           "set daemon.socket to a shorter path, e.g. /run/qscan/qscan.sock"))
    gid = None
    if d.socket_group:
        try:
            gr = grp.getgrnam(d.socket_group)
            gid = gr.gr_gid
        except KeyError:
            out.append(Finding(False, f"daemon.socket_group {d.socket_group!r} does not exist",
                               f"groupadd --system {d.socket_group}"))
        else:
            if who.uid != 0 and gid not in who.groups:
                out.append(Finding(False, f"{who.name} is not in group {d.socket_group}: it cannot chown "
                                   "the socket to it", f"usermod -a -G {d.socket_group} {who.name}"))
            try:
                qmaild = pwd.getpwnam("qmaild")
            except KeyError:
                pass
            else:
                if qmaild.pw_gid != gid and "qmaild" not in gr.gr_mem:
                    out.append(Finding(False, f"qmaild (qmail-smtpd) is not in group {d.socket_group}: "
                                       "SMTP mail would temp-fail", f"usermod -a -G {d.socket_group} qmaild"))
    elif d.socket_mode & 0o007 == 0:
        out.append(Finding(False, "daemon.socket_group is unset and the socket is not open to others: only "
                           f"{who.name} could connect", 'set daemon.socket_group = "qmail" (a group '
                           "holding qmaild and local senders)"))
    parent = path.parent
    if parent.exists():
        st = parent.stat()
        if not allowed(st, who, W | X):
            out.append(Finding(False, f"socket directory {parent}: {who.name} cannot create the socket",
                               f"install -d -o {who.name} -g {d.socket_group or who.name} -m 0750 {parent}   "
                               "(systemd: RuntimeDirectory=qscan does this)"))
        if d.socket_group and gid is not None and not allowed(st, Account("g", -1, gid, frozenset({gid})), X):
            out.append(Finding(False, f"socket directory {parent}: group {d.socket_group} "
                                      "cannot reach the socket",
                               f"chgrp {d.socket_group} {parent} && chmod g+x {parent}"))
    else:
        out.append(Finding(True, f"socket directory {parent} does not exist yet (systemd's "
                           "RuntimeDirectory=qscan creates it at start)"))
    if path.exists():
        st = path.lstat()
        if not stat.S_ISSOCK(st.st_mode):
            out.append(Finding(False, f"{path} exists and is not a socket", f"rm {path}"))
        else:
            mode = stat.S_IMODE(st.st_mode)
            if mode != d.socket_mode:
                out.append(Finding(False, f"socket {path} is mode {mode:04o}, "
                                          f"config says {d.socket_mode:04o}",
                                   "restart the daemon (it sets the mode when it binds)"))
            if gid is not None and st.st_gid != gid:
                out.append(Finding(False, f"socket {path} is not in group {d.socket_group}",
                                   "restart the daemon (it sets the group when it binds)"))
    if not out:
        out.append(Finding(True, f"socket {path}: group {d.socket_group or '-'}, mode {d.socket_mode:04o}"))
    return out


def check_programs(cfg: Config) -> list[Finding]:
    out: list[Finding] = []
    qq = cfg.daemon.qmail_queue
    if not qq.exists():
        out.append(Finding(False, f"daemon.qmail_queue {qq} does not exist",
                           "install qmail (or point daemon.qmail_queue at the real qmail-queue)"))
    elif not os.access(qq, os.X_OK):
        out.append(Finding(False, f"daemon.qmail_queue {qq} is not executable", f"chmod 0711 {qq}"))
    else:
        out.append(Finding(True, f"qmail-queue {qq}"))
    client = shutil.which("qscan-queue") or str(Path(sys.executable).parent / "qscan-queue")
    if not Path(client).exists():
        out.append(Finding(False, "qscan-queue is not installed",
                           "pip install qscan (the client comes with it)"))
    else:
        out.append(Finding(True, f"qscan-queue {client} (set QMAILQUEUE to it in tcp.smtp rules)"))
    return out


def _has_secrets(cfg: Config) -> bool:
    from sqlalchemy.engine import make_url

    try:
        sql_pw = make_url(cfg.sql_url).password
    except Exception:
        sql_pw = None
    return bool(sql_pw or cfg.notify.smtp_password or cfg.rspamd.password)


def run_checks(cfg: Config, config_path: Path, user: str) -> list[Finding]:
    who = Account.lookup(user)
    if who is None:
        return [Finding(False, f"service user {user!r} does not exist",
                        f"useradd --system --home-dir {cfg.data_dir} --shell /usr/sbin/nologin {user}")]
    out = [Finding(who.uid != 0, f"service user {user} (uid {who.uid})" if who.uid != 0
                   else f"service user {user} is root", "" if who.uid != 0 else
                   "run qscan as an unprivileged user, e.g. useradd --system qscand")]
    out += check_config_file(config_path, who, _has_secrets(cfg))
    out += check_dir(cfg.data_dir, who, "data_dir")
    seen = {cfg.data_dir.absolute()}
    for label, path in (("journal directory", cfg.journal_path.parent), ("archive", cfg.archive_maildir),
                        ("quarantine", cfg.quarantine_dir)):
        if path.absolute() not in seen:
            seen.add(path.absolute())
            out += check_dir(path, who, label)
    out += check_private_file(cfg.journal_path, who, "journal")
    if cfg.sql_url.startswith("sqlite:///"):
        out += check_private_file(Path(cfg.sql_url.removeprefix("sqlite:///")), who, "SQLite store")
    if cfg.summary_log.target == "file" and cfg.summary_log_path.parent.absolute() not in seen:
        out += check_dir(cfg.summary_log_path.parent, who, "summary log directory", private=False)
    out += check_socket(cfg, who)
    out += check_programs(cfg)
    return out
