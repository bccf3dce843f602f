"""`qscan install --check`: is this host set up the way the service units expect?

It looks and never changes anything: the service user, the directories and
files the config names (owner, mode, reachable through their parents), the
socket's directory, group and mode, the real qmail-queue (setuid qmailq), the
qscan-queue client (native, and runnable by qmaild with the one group tcpserver gives
it: it runs qmail-queue itself), and the installed systemd units that run qmail-queue
(`qscan run` and the notify consumer: nothing that disables setuid, such as
NoNewPrivileges=; /run/qscan passable after a reboot).
Each finding says what is wrong and the command that fixes it, so an
administrator can read the output top to bottom and be done.

Access is judged for the service user the way the kernel would (owner, group,
other bits, and search permission on every parent directory), so running the
check as root still answers "can qscand get there?".
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import re
import shlex
import shutil
import socket
import stat
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from ingest.private import SQLITE_COMPANIONS
from ingest.scoreboard import status_path
from qscan.config import Config

R, W, X = 4, 2, 1
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the NUL


@dataclass
class Finding:
    ok: bool
    what: str
    fix: str = ""
    unchecked: bool = False  # could not be checked (e.g. needs root): said, not counted as a problem


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


def _under(path: Path, roots: list[Path]) -> bool:
    real = path.parent.resolve()
    return any(r.is_dir() and real.is_relative_to(r.resolve()) for r in roots)


def check_private_file(path: Path, who: Account, label: str, *, companions: bool = True) -> list[Finding]:
    """One file (with ``companions``: and SQLite's -wal/-shm/-journal beside it) 0600, the user's."""
    if not path.exists():
        return [Finding(True, f"{label} {path} not created yet")]
    out = []
    for p in sqlite_files(path) if companions else [path]:
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != who.uid:
            out.append(Finding(False, f"{label} {p} is owned by {_owner(st)}, not {who.name}",
                               f"chown {who.name}: {p}"))
        if mode & 0o077:
            out.append(Finding(False, f"{label} {p} is mode {mode:04o}: {_mode_word(mode)}",
                               f"chmod 0600 {p}"))
    mode = stat.S_IMODE(path.stat().st_mode)
    return out or [Finding(True, f"{label} {path}: owner {who.name}, mode {mode:04o}")]


WALK_NAMED = 50  # wrong entries named one by one; past that, one command fixes the rest


def _mode_word(mode: int) -> str:
    return "readable by others" if mode & 0o055 else "writable by others"


def check_private_tree(roots: list[Path], who: Account, labels: dict[Path, str],
                       skip: frozenset[Path] = frozenset()) -> list[Finding]:
    """Walk every directory qscan writes (not following symlinks): each file must be the
    service user's and 0600, each directory its own and 0700, whatever the umask that made it.

    ``labels`` names known files (the journal, the SQLite store and their -wal/-shm); ``skip``
    holds entries judged elsewhere (the socket and its status file, if configured inside, are
    meant for others; the configured directories are check_dir's) but still walked into.
    """
    walked: list[Path] = []
    for root in roots:
        real = root.resolve()
        if root.is_dir() and not any(real.is_relative_to(w) for w in walked):
            walked = [w for w in walked if not w.is_relative_to(real)] + [real]
    problems: list[Finding] = []
    more: dict[Path, int] = {}
    unreadable: list[Finding] = []

    def note(root: Path, finding: Finding) -> None:
        if len(problems) < WALK_NAMED:
            problems.append(finding)
        else:
            more[root] = more.get(root, 0) + 1

    def failed(exc: OSError) -> None:
        unreadable.append(Finding(False, f"cannot read {exc.filename}: {exc.strerror}; what it holds "
                                  "was not checked", f"run qscan install --check as root or as {who.name}"))

    def here(p: Path) -> Path:  # the walk sees resolved directories
        return p.parent.resolve() / p.name

    labels = {here(p): label for p, label in labels.items()}
    skip = frozenset(here(p) for p in skip)
    for root in sorted(walked):
        for top, dirs, files in os.walk(root, onerror=failed):
            for name in [*dirs, *files]:
                path = Path(top) / name
                if path in skip:
                    continue
                try:
                    st = path.lstat()
                except OSError:
                    continue  # gone meanwhile (a maildir's tmp/ file renamed into new/)
                if stat.S_ISLNK(st.st_mode):
                    continue  # not followed: what it points at is not under these roots' rules
                is_dir = stat.S_ISDIR(st.st_mode)
                label = labels.get(path, "directory" if is_dir else "file")
                mode = stat.S_IMODE(st.st_mode)
                if mode & 0o077:
                    note(root, Finding(False, f"{label} {path} is mode {mode:04o}: {_mode_word(mode)}",
                                       f"chmod {'0700' if is_dir else '0600'} {path}"))
                if st.st_uid != who.uid:
                    note(root, Finding(False, f"{label} {path} is owned by {_owner(st)}, not {who.name}",
                                       f"chown {'-R ' if is_dir else ''}{who.name}: {path}"))
    out = problems + unreadable
    for root, n in sorted(more.items()):
        out.append(Finding(False, f"... and {n} more entries under {root} with a loose mode or another owner",
                           f"chown -R {who.name}: {root} && find {root} -type d -perm /077 -exec chmod 0700 "
                           f"{{}} + && find {root} ! -type d ! -type l -perm /077 -exec chmod 0600 {{}} +"))
    if not out:
        where = ", ".join(str(w) for w in sorted(walked)) or "nothing yet"
        out.append(Finding(True, f"every file under {where}: owner {who.name}, files 0600, directories 0700"))
    return out


def sqlite_files(path: Path) -> list[Path]:
    """A SQLite database file and the companions SQLite makes beside it."""
    return [path, *(path.with_name(path.name + s) for s in SQLITE_COMPANIONS)]


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
    elif d.socket_mode & 0o007 == 0:
        out.append(Finding(False, "daemon.socket_group is unset and the socket is not open to others: only "
                           f"{who.name} could connect", 'set daemon.socket_group = "qmail" (a group '
                           "holding qmaild and local senders)"))
    parent = path.parent
    if parent.exists():
        st = parent.stat()
        if not allowed(st, who, W | X):
            out.append(Finding(False, f"socket directory {parent}: {who.name} cannot create the socket",
                               f"install -d -o {who.name} -g {who.name} -m 0711 {parent}   "
                               "(systemd: RuntimeDirectory=qscan does this)"))
        clients = [(f"group {d.socket_group}", Account("g", -1, gid, frozenset({gid})))
                   ] if d.socket_group and gid is not None else []
        for name in d.smtp_users:  # qmail-smtpd's users as configured, not whoever this host has
            smtpd = Account.lookup(name)
            if smtpd is not None:  # with its one group only, as tcpserver -g runs it
                one_group = Account(smtpd.name, smtpd.uid, smtpd.gid, frozenset({smtpd.gid}))
                clients.append((smtpd.name, one_group))
        blocked = [label for label, c in clients if not allowed(st, c, X)]
        if blocked:
            who_not = " and ".join(blocked)
            out.append(Finding(False, f"socket directory {parent} (mode {stat.S_IMODE(st.st_mode):04o}): "
                                      f"{who_not} cannot reach the socket: SMTP mail would temp-fail",
                               f"set RuntimeDirectoryMode=0711 in the unit (as contrib/systemd does; a chmod "
                               f"by hand is lost at reboot), then: chmod 0711 {parent}"))
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


# -- can qmail-smtpd, as tcpserver runs it, reach the socket? -----------------------------
# Where qmail's supervise/runit/daemontools trees usually keep qmail-smtpd's run script.
SMTPD_RUN_SCRIPTS = (Path("/var/qmail/supervise/qmail-smtpd/run"), Path("/service/qmail-smtpd/run"),
                     Path("/etc/service/qmail-smtpd/run"), Path("/var/service/qmail-smtpd/run"),
                     Path("/etc/sv/qmail-smtpd/run"))
_ID_CMD = re.compile(r"^(?:`|\$\()\s*id\s+-([ug])\s+([\w.-]+)\s*(?:`|\))$")


SOCKET_MODE_FIX = ("set daemon.socket_mode = 0o666 (the default: the daemon decides by the peer's uid, "
                   "daemon.allow_users) and restart the daemon; a supplementary group (usermod -a -G) "
                   "does not help: tcpserver keeps only its -g group")


SCRIPT_FIX = "check the script, or name the one tcpserver runs: --smtpd-run PATH"


@dataclass(frozen=True)
class SmtpIdentity:
    """Who qmail-smtpd runs as: tcpserver's ``-u`` uid and its one ``-g`` gid (no other group)."""
    user: str
    uid: int
    gid: int
    source: str  # where the two came from, for the report


def _shell_words(text: str) -> list[str]:
    """The script's words, continuation lines joined, comments dropped, quotes taken off."""
    joined = re.sub(r"\\\n", " ", text)
    out: list[str] = []
    for line in joined.splitlines():
        try:
            out += shlex.split(line, comments=True)
        except ValueError:
            out += line.split()
    return out


def _resolve_id(value: str, kind: str, variables: dict[str, str]) -> int | None:
    """tcpserver's -u/-g argument: a number, a variable set from `id -u NAME` / `id -g NAME`
    (as the run scripts in qmail's documentation do), or a user/group name."""
    for _ in range(5):  # $VAR -> its assignment (a few levels)
        m = re.fullmatch(r"\$\{?(\w+)\}?", value)
        if not m or m.group(1) not in variables:
            break
        value = variables[m.group(1)]
    if value.isdigit():
        return int(value)
    m = _ID_CMD.match(value.strip())
    try:
        if m:
            pw = pwd.getpwnam(m.group(2))
            return pw.pw_uid if m.group(1) == "u" else pw.pw_gid
        if kind == "u":
            return pwd.getpwnam(value).pw_uid
        return grp.getgrnam(value).gr_gid
    except KeyError:
        return None


def smtp_identity(run_script: Path | None, smtp_user: str = "qmaild") -> SmtpIdentity | Finding | None:
    """From the run script's ``tcpserver -u UID -g GID`` when there is one, else ``smtp_user``
    and its primary group (what qmail's own run scripts give it: ``nofiles``).
    A Finding when the script cannot be read or understood; None when there is no such user."""
    if run_script is not None:
        try:
            text = run_script.read_text(errors="replace")
        except OSError as exc:
            return Finding(False, f"cannot read the qmail-smtpd run script {run_script}: {exc.strerror}",
                           "pass the script with --smtpd-run PATH")
        variables: dict[str, str] = {}
        for line in text.splitlines():
            m = re.match(r"^\s*(?:export\s+)?(\w+)=(.*)$", line)
            if m:
                variables[m.group(1)] = m.group(2).strip().strip("'\"")
        words = _shell_words(text)
        if any(w.endswith("tcpserver") for w in words):
            start = next(i for i, w in enumerate(words) if w.endswith("tcpserver"))
            args = words[start + 1:]
            flags = {a: args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-u", "-g")}
            if "-u" in flags and "-g" in flags:
                uid = _resolve_id(flags["-u"], "u", variables)
                gid = _resolve_id(flags["-g"], "g", variables)
                if uid is None or gid is None:
                    return Finding(False, f"{run_script}: cannot work out tcpserver's -u {flags['-u']} "
                                          f"-g {flags['-g']}", SCRIPT_FIX)
                try:
                    user = pwd.getpwuid(uid).pw_name
                except KeyError:
                    user = str(uid)
                return SmtpIdentity(user, uid, gid, f"{run_script}: tcpserver -u {uid} -g {gid}")
            if "-U" in args and "envuidgid" in words[:start]:  # envuidgid NAME tcpserver -U
                name = words[words.index("envuidgid") + 1]
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    return Finding(False, f"{run_script}: envuidgid {name}: no such user",
                                   SCRIPT_FIX)
                return SmtpIdentity(name, pw.pw_uid, pw.pw_gid,
                                    f"{run_script}: envuidgid {name} tcpserver -U, gid {pw.pw_gid}")
    try:
        pw = pwd.getpwnam(smtp_user)
    except KeyError:
        return None
    where = f"{run_script} has no tcpserver -u/-g; " if run_script is not None else ""
    return SmtpIdentity(pw.pw_name, pw.pw_uid, pw.pw_gid,
                        f"{where}{pw.pw_name}'s primary group {pw.pw_gid}, as qmail's run scripts give it")


def connect_as(path: Path, uid: int, gid: int, timeout: float = 5.0) -> int:
    """connect() to the unix socket ``path`` from a child holding exactly ``uid`` and the one
    group ``gid`` (setgroups([gid]), setgid, setuid: what tcpserver -u -g does). 0 or the errno."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        code = 255
        try:
            os.close(r)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(str(path))
                code = 0
            except OSError as exc:
                code = exc.errno or 254
            finally:
                s.close()
        except BaseException:
            code = 253
        finally:
            with contextlib.suppress(BaseException):
                os.write(w, str(code).encode())
            os._exit(0)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            answer = f.read()
    finally:
        os.waitpid(pid, 0)
    if answer == b"253" or not answer:
        raise OSError(errno.EPERM, f"cannot become uid {uid} gid {gid}")
    return int(answer)


def check_smtp_connect(cfg: Config, run_script: Path | None) -> list[Finding]:
    """Can qmail-smtpd, with only the one group tcpserver gives it, connect to the socket?"""
    d = cfg.daemon
    smtp_users = list(getattr(d, "smtp_users", None) or ["qmaild"])
    ident = smtp_identity(run_script, smtp_users[0])
    if ident is None:
        return [Finding(True, f"no {smtp_users[0]} user and no qmail-smtpd run script: SMTP access "
                              "not checked", unchecked=True)]
    if isinstance(ident, Finding):
        return [ident]
    out: list[Finding] = []
    if ident.user not in smtp_users:
        out.append(Finding(False, f"qmail-smtpd runs as {ident.user} ({ident.source}), which is not in "
                                  "daemon.smtp_users: its TCPREMOTEIP and RELAYCLIENT would not be trusted",
                           f'set daemon.smtp_users = ["{ident.user}"]'))
    allow = {str(a) for a in getattr(d, "allow_users", None) or []}
    if allow and not {ident.user, str(ident.uid)} & allow:
        out.append(Finding(False, f"daemon.allow_users does not hold {ident.user}: the daemon would refuse "
                                  "qmail-smtpd and SMTP mail would temp-fail",
                           f'add "{ident.user}" to daemon.allow_users (or leave it empty: every local user)'))
    smtpd = Account(ident.user, ident.uid, ident.gid, frozenset({ident.gid}))
    path = d.socket
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        return [*out, Finding(True, f"cannot look at {path}: {exc.strerror}: whether {ident.user} can "
                                    "connect was not tested (run qscan install --check as root)",
                              unchecked=True)]
    if st is None:
        out.append(Finding(True, f"socket {path} is not there yet: start the daemon, then run this check "
                                 f"again to test that {ident.user} can connect", unchecked=True))
        return out
    if os.geteuid() != 0:
        # What the modes say, judged with the one group only; the kernel's word needs root.
        if stat.S_ISSOCK(st.st_mode) and not allowed(st, smtpd, W) and blocking_parent(path, smtpd) is None:
            out.append(Finding(False, f"socket {path} (mode {stat.S_IMODE(st.st_mode):04o}, group "
                                      f"{_group(st.st_gid)}) is not writable by {ident.user} with only group "
                                      f"{_group(ident.gid)} ({ident.source}): tcpserver drops every other "
                                      "group, so SMTP mail would temp-fail", SOCKET_MODE_FIX))
        out.append(Finding(True, f"connecting as {ident.user} with only group {_group(ident.gid)} needs root "
                                 "to become that user: not tested (run qscan install --check as root)",
                           unchecked=True))
        return out
    try:
        code = connect_as(path, ident.uid, ident.gid)
    except OSError as exc:
        return [*out, Finding(False, f"cannot test the socket as {ident.user}: {exc.strerror}")]
    if code == 0:
        out.append(Finding(True, f"{ident.user} with only group {_group(ident.gid)} ({ident.source}) "
                                 f"connects to {path}"))
        return out
    name = errno.errorcode.get(code, str(code))
    what = (f"{ident.user} with only group {_group(ident.gid)} ({ident.source}) cannot connect to {path}: "
            f"{name} ({os.strerror(code)}): every SMTP message would get 451")
    blocked = blocking_parent(path, smtpd)
    if code == errno.EACCES and blocked is not None:
        fix = (f"{ident.user} cannot pass {blocked}: chmod o+x {blocked} (for /run/qscan: "
               "RuntimeDirectoryMode=0711 in the unit)")
    elif code == errno.EACCES:
        fix = SOCKET_MODE_FIX
    elif code == errno.ECONNREFUSED:
        fix = "the daemon is not running (a stale socket): systemctl start qscan-daemon"
    elif code == errno.ENOENT:
        fix = "the daemon is not running: systemctl start qscan-daemon"
    else:
        fix = "see the error; the daemon's log may say more"
    out.append(Finding(False, what, fix))
    return out


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} ({gid})"
    except KeyError:
        return str(gid)


def check_programs(cfg: Config) -> list[Finding]:
    out: list[Finding] = []
    qq = cfg.daemon.qmail_queue
    if not qq.exists():
        out.append(Finding(False, f"daemon.qmail_queue {qq} does not exist",
                           "install qmail (or point daemon.qmail_queue at the real qmail-queue)"))
    elif not os.access(qq, os.X_OK):
        out.append(Finding(False, f"daemon.qmail_queue {qq} is not executable", f"chmod 0711 {qq}"))
    else:
        out += check_qmail_queue_setuid(qq)
    client = shutil.which("qscan-queue") or str(Path(sys.executable).parent / "qscan-queue")
    out += check_client(Path(client))
    return out


# Where Debian (and most distributions) keep the static C library the client is linked with;
# it is upgraded together with the shared one (libc6-dev and libc6 come from one source).
LIBC_ARCHIVES = ("/usr/lib/*-linux-gnu/libc.a", "/usr/lib64/libc.a", "/usr/lib/libc.a")
PT_INTERP = 3  # the ELF program header naming a dynamic loader


def is_static_elf(path: Path) -> bool:
    """An ELF executable with no program interpreter (PT_INTERP): linked statically."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
                return False
            end = "<" if head[5] == 1 else ">"
            phoff, = struct.unpack_from(end + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    count = len(table) // phentsize if phentsize >= 4 else 0
    types = [struct.unpack_from(end + "I", table, i * phentsize)[0] for i in range(count)]
    return bool(types) and PT_INTERP not in types


def static_behind_libc(client: Path, archives: tuple[str, ...] | None = None) -> str | None:
    """The C library a static ``client`` predates (its path), else None. qscan-queue is linked
    statically (ingest/native/build.sh): a glibc upgrade reaches it only when it is rebuilt."""
    if not is_static_elf(client):
        return None
    import glob

    found = [Path(p) for pattern in archives or LIBC_ARCHIVES for p in glob.glob(pattern)]
    newest = max(found, key=lambda p: p.stat().st_mtime, default=None)
    if newest is None or newest.stat().st_mtime <= client.stat().st_mtime:
        return None
    return str(newest)


def _interpreter(path: Path) -> Path | None:
    """The program a ``#!`` script names (None: not a script)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return Path(os.fsdecode(words[0])) if words else None


def check_client(client: Path, smtp_user: str = "qmaild") -> list[Finding]:
    """qscan-queue is installed, native, and the SMTP user can run it with the one group
    tcpserver -g leaves it (and, for a script, reach its interpreter)."""
    if not client.exists():
        return [Finding(False, f"qscan-queue is not installed ({client})",
                        "make install (it builds the native client with the system compiler)")]
    real = client.resolve()
    who = Account.lookup(smtp_user)
    if who is None:
        return [Finding(True, f"qscan-queue {client}: no user {smtp_user} here, not checked whether "
                              "qmail-smtpd can run it", unchecked=True)]
    alone = Account(who.name, who.uid, who.gid, frozenset({who.gid}))  # tcpserver -u -g
    interpreter = _interpreter(real)
    out: list[Finding] = []
    for program in [real] + ([interpreter] if interpreter else []):
        try:
            st = program.stat()
        except OSError:
            out.append(Finding(False, f"qscan-queue {client}: {program} does not exist", "make install"))
            continue
        blocked = blocking_parent(program, alone)
        if blocked is not None:
            fix = (f"install -m 0755 {real} /usr/local/bin/qscan-queue (and point QMAILQUEUE there)"
                   if interpreter is None else "make install (the native client needs no interpreter), "
                   "then install -m 0755 .venv/bin/qscan-queue /usr/local/bin/")
            out.append(Finding(False, f"{smtp_user} cannot run qscan-queue {client}: it cannot pass "
                                      f"{blocked} to reach {program}", fix))
        elif not allowed(st, alone, X | (R if program == real and interpreter else 0)):
            mode = stat.S_IMODE(st.st_mode)
            out.append(Finding(False, f"{smtp_user} cannot run {program} (mode {mode:04o}, "
                                      f"owner {_owner(st)})", f"chmod 0755 {program}"))
    if out:
        return out
    if interpreter is None and (stale := static_behind_libc(real)) is not None:
        return [Finding(False, f"qscan-queue {client} is statically linked and older than the C "
                               f"library ({stale}, upgraded since): it lacks that upgrade's fixes",
                        "make install (rebuilds it), then copy it where QMAILQUEUE points")]
    kind = "native" if interpreter is None else f"a script for {interpreter}: the native client is faster"
    return [Finding(True, f"qscan-queue {client} ({kind}); {smtp_user} can run it (set QMAILQUEUE to it in "
                          "tcp.smtp rules, and QSCAN_QMAIL_QUEUE when qmail-queue is not "
                          "/var/qmail/bin/qmail-queue)")]


def _has_secrets(cfg: Config) -> bool:
    from sqlalchemy.engine import make_url

    try:
        sql_pw = make_url(cfg.sql_url).password
    except Exception:
        sql_pw = None
    return bool(sql_pw or cfg.notify.smtp_password or cfg.rspamd.password)


# -- setuid qmail-queue and the units that run it -----------------------------------------
REAL_QMAIL_QUEUE = Path("/var/qmail/bin/qmail-queue")
QMAILQ = "qmailq"
# Units that run the real qmail-queue: `qscan run` and the notify consumer with
# notify.transport = "qmail-inject" (an instance of qscan-consume@); quarantine releases are run
# by hand. The daemon never runs it (qscan-queue does): its unit may set NoNewPrivileges=.
QUEUE_UNITS = ("qscan.service", "qscan-consume@.service", "qscan-web.service")
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/run/systemd/system"),
             Path("/usr/local/lib/systemd/system"), Path("/lib/systemd/system"),
             Path("/usr/lib/systemd/system"))
# Settings after which setuid programs run without their owner's rights: NoNewPrivileges= and
# the ones systemd.exec(5) says imply it for an unprivileged user; PrivateUsers= maps qmailq away.
_NNP_BOOLEANS = ("NoNewPrivileges", "RestrictSUIDSGID", "PrivateDevices", "ProtectKernelTunables",
                 "ProtectKernelModules", "ProtectKernelLogs", "ProtectClock", "MemoryDenyWriteExecute",
                 "RestrictRealtime", "LockPersonality", "DynamicUser", "PrivateUsers")
_NNP_LISTS = ("SystemCallFilter", "SystemCallArchitectures", "RestrictAddressFamilies",
              "RestrictNamespaces")
_TRUE = {"1", "yes", "true", "on"}


def check_qmail_queue_setuid(qq: Path, qmailq: str = QMAILQ) -> list[Finding]:
    """qmail's own qmail-queue must be setuid ``qmailq`` (4711): it writes /var/qmail/queue.

    Only qmail's binary is judged: the path /var/qmail/bin/qmail-queue, or any file owned by
    ``qmailq``. Another program (a test stand-in, a wrapper) is reported as such.
    """
    st = qq.stat()
    try:
        owner_uid: int | None = pwd.getpwnam(qmailq).pw_uid
    except KeyError:
        owner_uid = None
    real = qq.absolute() == REAL_QMAIL_QUEUE or (owner_uid is not None and st.st_uid == owner_uid)
    mode = stat.S_IMODE(st.st_mode)
    if not real:
        return [Finding(True, f"qmail-queue {qq} (not qmail's own, owned by {_owner(st)}: "
                              "its setuid bit is not checked)")]
    if owner_uid is None or st.st_uid != owner_uid or not mode & stat.S_ISUID:
        return [Finding(False, f"qmail-queue {qq} is mode {mode:04o}, owner {_owner(st)}: it must be setuid "
                               f"{qmailq} to write the queue (every message would temp-fail)",
                        f"chown {qmailq}:qmail {qq} && chmod 4711 {qq}")]
    return [Finding(True, f"qmail-queue {qq}: setuid {qmailq}, mode {mode:04o}")]


def unit_settings(texts: list[str]) -> dict[str, str]:
    """The [Service] settings of a unit file and its drop-ins, in order (later ones win;
    an empty assignment resets a list)."""
    out: dict[str, str] = {}
    for text in texts:
        section = ""
        pending = ""
        for raw in text.splitlines():
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            pending = ""
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section != "Service" or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if key in _NNP_LISTS and out.get(key) and value:
                out[key] = out[key] + " " + value
            else:
                out[key] = value
    return out


def setuid_blockers(settings: dict[str, str]) -> list[str]:
    """The settings under which a setuid qmail-queue would run without qmailq's rights."""
    found = [f"{k}={settings[k]}" for k in _NNP_BOOLEANS if settings.get(k, "").lower() in _TRUE]
    found += [f"{k}={settings[k]}" for k in _NNP_LISTS
              if settings.get(k, "") and settings[k].lower() not in ("no", "false", "0", "off")]
    return found


def _unit_texts(name: str, dirs: tuple[Path, ...]) -> tuple[Path, list[str]] | None:
    """The unit file systemd would load (the first directory wins) and its drop-ins."""
    main = next((d / name for d in dirs if (d / name).is_file()), None)
    if main is None:
        return None
    drop_ins: dict[str, Path] = {}
    for d in reversed(dirs):  # earlier directories override later ones of the same name
        conf = d / f"{name}.d"
        if conf.is_dir():
            drop_ins.update({p.name: p for p in conf.glob("*.conf")})
    try:
        texts = [main.read_text()] + [drop_ins[k].read_text() for k in sorted(drop_ins)]
    except OSError:
        return None
    return main, texts


def check_units(cfg: Config, dirs: tuple[Path, ...] = UNIT_DIRS) -> list[Finding]:
    """Installed units that run qmail-queue: nothing that disables setuid; /run/qscan passable."""
    out: list[Finding] = []
    for name in QUEUE_UNITS:
        found = _unit_texts(name, dirs)
        if found is None:
            continue
        path, texts = found
        settings = unit_settings(texts)
        blockers = setuid_blockers(settings)
        if blockers:
            out.append(Finding(False, f"unit {path} sets {', '.join(blockers)}: the setuid qmail-queue it "
                                      "runs would lose its rights and every message would temp-fail",
                               f"remove {', '.join(b.split('=')[0] + '=' for b in blockers)} from {path} "
                               "(and its .d/ drop-ins), then: systemctl daemon-reload"))
        else:
            out.append(Finding(True, f"unit {path}: no NoNewPrivileges= (setuid qmail-queue works)"))
        runtime_mode = settings.get("RuntimeDirectoryMode")
        if settings.get("RuntimeDirectory") and runtime_mode:
            try:
                mode = int(runtime_mode, 8)
            except ValueError:
                mode = 0o755
            group_ok = bool(mode & 0o010) and cfg.daemon.socket_group is not None \
                and settings.get("Group") == cfg.daemon.socket_group
            if not mode & 0o001 and not group_ok:
                out.append(Finding(False, f"unit {path} creates its RuntimeDirectory with mode "
                                          f"{runtime_mode}: after every boot qmaild cannot reach the socket",
                                   f"set RuntimeDirectoryMode=0711 in {path}, then: systemctl daemon-reload"))
    return out


def find_smtpd_run(candidates: tuple[Path, ...] = SMTPD_RUN_SCRIPTS) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def run_checks(cfg: Config, config_path: Path, user: str,
               unit_dirs: tuple[Path, ...] = UNIT_DIRS, smtpd_run: Path | None = None) -> list[Finding]:
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
    roots = [cfg.data_dir, cfg.journal_path.parent, cfg.archive_maildir, cfg.quarantine_dir]
    labels = {p: "journal" for p in sqlite_files(cfg.journal_path)}
    single = [(cfg.journal_path, "journal")]
    if cfg.sql_url.startswith("sqlite:///"):
        store = Path(cfg.sql_url.removeprefix("sqlite:///"))
        labels |= {p: "SQLite store" for p in sqlite_files(store)}
        single.append((store, "SQLite store"))
    if cfg.summary_log.target == "file":
        labels[cfg.summary_log_path] = "summary log"
        if cfg.summary_log_path.parent.absolute() not in seen:
            out += check_dir(cfg.summary_log_path.parent, who, "summary log directory", private=False)
        out += check_private_file(cfg.summary_log_path, who, "summary log", companions=False) \
            if not _under(cfg.summary_log_path, roots) else []
    for path, label in single:
        if not _under(path, roots):  # configured outside every directory walked below
            out += check_private_file(path, who, label)
    sock = cfg.daemon.socket
    out += check_private_tree(roots, who, labels, frozenset({sock, status_path(sock), *roots}))
    out += check_socket(cfg, who)
    out += check_smtp_connect(cfg, smtpd_run or find_smtpd_run())
    out += check_programs(cfg)
    out += check_units(cfg, unit_dirs)
    return out
