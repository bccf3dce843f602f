"""A real notqmail for the integration tests (tests/test_notqmail.py).

``build()`` compiles the vendored source (``../shared/vendor/notqmail.tar.gz``, see its
README.md) with ``make setup check`` into a prefix under /tmp named after the tarball's hash,
so a second run reuses it (the build takes ~20 s). ``Site`` configures that installation for
one test session — ``control/``, a Maildir for ``mbox@qscan.test`` via ``users/assign`` — and
runs qmail-send (``qmail-start``) and ``qmail-smtpd`` under ``tcpserver`` the way qmail's stock
run script does: ``tcpserver -u <qmaild uid> -g <nofiles gid> -x rules.cdb ...``, which keeps
only that one group. ``QMAILQUEUE`` and ``QSCAN_SOCKET`` come from the tcpserver rules, as in
docs/operations.md. The ``qscan-queue`` they run is the installed native one, or a copy of it
where qmaild can reach it (``reachable_client``: the venv may live under /root); it runs
notqmail's setuid qmail-queue itself (``QSCAN_QMAIL_QUEUE`` in the same rules).

Needs root (the qmail users and groups are created when missing, as INSTALL.ids.md says),
gcc/make/nroff and ucspi-tcp; ``unavailable()`` says what is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qscan.testing.clients import native_client

ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """``../shared`` beside the checkout (CI); from a git worktree, the nearest one above it."""
    for parent in ROOT.parents:
        if (parent / "shared").is_dir():
            return parent / "shared"
    return ROOT.parent / "shared"


TARBALL = shared_dir() / "vendor" / "notqmail.tar.gz"
DOMAIN = "qscan.test"
MAILBOX = f"mbox@{DOMAIN}"
MAILBOX_USER = "qscantest"  # owns the test Maildir, and injects local mail in the tests
NOFILES_USERS = ("alias", "qmaild", "qmaill", "qmailp")
QMAIL_USERS = ("qmailq", "qmailr", "qmails")
TOOLS = ("make", "cc", "nroff", "tar", "tcpserver", "tcprules", "setpriv")
QUEUE_SUBDIRS = ("mess", "info", "local", "remote", "intd", "todo", "bounce", "pid")
# The exit codes qscan-queue itself uses (docs/protocol.md): anything else means it never ran.
CLIENT_CODES = frozenset({0, 11, 31, 54, 71, 81, 82, 91})


class Unavailable(RuntimeError):
    """This machine cannot run a real notqmail (the message says why)."""


def unavailable() -> str | None:
    """Why the notqmail tests cannot run here, or None when they can."""
    if not TARBALL.is_file():
        return f"{TARBALL} is missing"
    if os.geteuid() != 0:
        return "not root (qmail needs its own users, setuid qmail-queue and a root qmail-lspawn)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return "missing programs: " + " ".join(missing) + " (make test installs them)"
    return None


@dataclass(frozen=True)
class Ids:
    qmaild: int
    nofiles: int
    mailbox_uid: int
    mailbox_gid: int


def _run(*args: str, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def ensure_ids() -> Ids:
    """The qmail users and groups (INSTALL.ids.md) and the mailbox user; created when missing."""
    for group in ("nofiles", "qmail"):
        if not _exists(grp.getgrnam, group):
            _run("groupadd", "--system", group)
    for group, users in (("nofiles", NOFILES_USERS), ("qmail", QMAIL_USERS)):
        for user in users:
            if not _exists(pwd.getpwnam, user):
                home = "/var/qmail/alias" if user == "alias" else "/var/qmail"
                _run("useradd", "--system", "-g", group, "-d", home, "-M", "-s", "/usr/sbin/nologin", user)
    if not _exists(pwd.getpwnam, MAILBOX_USER):
        _run("useradd", "--system", "-U", "-d", "/nonexistent", "-M", "-s", "/usr/sbin/nologin", MAILBOX_USER)
    mailbox = pwd.getpwnam(MAILBOX_USER)
    return Ids(qmaild=pwd.getpwnam("qmaild").pw_uid, nofiles=grp.getgrnam("nofiles").gr_gid,
               mailbox_uid=mailbox.pw_uid, mailbox_gid=mailbox.pw_gid)


def _trusted_dir(path: Path) -> bool:
    """Root runs what is in there: only a directory root owns and nobody else may write."""
    st = path.lstat()
    return path.is_dir() and not path.is_symlink() and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def cache_dir(tarball: Path = TARBALL) -> Path:
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"qscan-notqmail-{digest}"
    try:
        path.mkdir(mode=0o755)
    except FileExistsError:
        if not _trusted_dir(path):  # someone else's directory in /tmp: never run its binaries
            path = Path(tempfile.mkdtemp(prefix=f"qscan-notqmail-{digest}-"))
    path.chmod(0o755)  # the qmail users must pass it (mkdtemp makes 0700)
    return path


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """One session at a time per installation: they would share its queue and qmail-send."""
    fd = os.open(cache / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def build(cache: Path, tarball: Path = TARBALL) -> Path:
    """Compile and install notqmail under ``cache/qmail`` unless already done; its prefix."""
    prefix = cache / "qmail"
    stamp = prefix / ".qscan-built"
    if stamp.is_file() and (prefix / "bin" / "qmail-smtpd").is_file():
        return prefix
    src = cache / "src"
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(prefix, ignore_errors=True)
    src.mkdir()
    _run("tar", "-xzf", str(tarball), "-C", str(src))
    tree = src / "notqmail"
    conf = (tree / "conf-qmail").read_text().splitlines(keepends=True)
    (tree / "conf-qmail").write_text(str(prefix) + "\n" + "".join(conf[1:]))
    prefix.mkdir(mode=0o755)
    log = cache / "build.log"
    with open(log, "wb") as out:
        done = subprocess.run(["make", "setup", "check"], cwd=tree, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise Unavailable(f"notqmail build failed (make setup check exit {done.returncode}):\n{tail}")
    stamp.write_text(hashlib.sha256(tarball.read_bytes()).hexdigest() + "\n")
    return prefix


def as_user(uid: int, gid: int, *cmd: str) -> list[str]:
    """``cmd`` run with exactly this uid and gid and no supplementary groups (as tcpserver does)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *cmd]


def runs_as(uid: int, gid: int, program: Path) -> bool:
    """Whether ``program`` (a qscan-queue) really starts for this uid and gid.

    Run through sh so that an exec failure is sh's 126/127, not setpriv's own exit code 71
    (which is also qscan-queue's "temporary failure").
    """
    probe = as_user(uid, gid, "/bin/sh", "-c", '"$0" </dev/null 1</dev/null 2>/dev/null; echo "$?"', str(program))
    done = subprocess.run(probe, capture_output=True, env={"PATH": "/usr/bin:/bin",
                                                           "QSCAN_SOCKET": "/nonexistent/q.sock"})
    try:
        return int(done.stdout.strip() or b"-1") in CLIENT_CODES
    except ValueError:
        return False


def installed_client() -> Path:
    """The native ``qscan-queue`` (the one ``make install`` builds; from a checkout whose venv
    lacks it, a build of this checkout's source)."""
    return Path(native_client())


def reachable_client(ids: Ids, workdir: Path) -> tuple[Path, str]:
    """A ``qscan-queue`` that qmaild and the mailbox user can run, and how it was found.

    The installed native one when they can run it; otherwise (it lives where only root may go,
    e.g. a venv under /root) a copy of the same binary in the site's 0755 run directory. It
    needs no interpreter: nothing else has to be reachable for qmaild.
    """
    installed = installed_client()
    users = ((ids.qmaild, ids.nofiles), (ids.mailbox_uid, ids.mailbox_gid))
    if all(runs_as(uid, gid, installed) for uid, gid in users):
        return installed, "installed"
    client_dir = workdir / "client"
    client_dir.mkdir(mode=0o755, exist_ok=True)
    copy = client_dir / "qscan-queue"
    shutil.copy2(installed, copy)
    copy.chmod(0o755)
    if all(runs_as(uid, gid, copy) for uid, gid in users):
        return copy, f"a copy of {installed}: qmaild cannot reach it where it is"
    raise Unavailable(f"qmaild cannot run {installed}, nor a copy of it in {client_dir}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):  # children (qmail-lspawn, qmail-smtpd ...)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@dataclass
class Site:
    """One configured notqmail installation, running, for one test session."""

    prefix: Path
    run: Path
    ids: Ids
    client: Path
    client_how: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def qmail_queue(self) -> Path:
        """notqmail's own qmail-queue (setuid qmailq): what qscan-queue runs."""
        return self.prefix / "bin" / "qmail-queue"

    @property
    def home(self) -> Path:
        return self.run / "mbox"

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"

    def configure(self) -> None:
        """Control files, the mailbox, an empty queue."""
        ctl = self.prefix / "control"
        for old in ctl.iterdir():
            old.unlink()
        (ctl / "me").write_text(f"mx.{DOMAIN}\n")
        (ctl / "defaultdomain").write_text(f"{DOMAIN}\n")
        (ctl / "rcpthosts").write_text(f"{DOMAIN}\n")
        (ctl / "locals").write_text(f"{DOMAIN}\n")
        uid, gid = self.ids.mailbox_uid, self.ids.mailbox_gid
        self.home.mkdir(mode=0o755)
        (self.home / ".qmail").write_text("./Maildir/\n")
        for path in (self.home, self.home / ".qmail"):
            os.chown(path, uid, gid)
        for sub in ("", "new", "cur", "tmp"):
            (self.maildir / sub).mkdir(mode=0o700)
            os.chown(self.maildir / sub, uid, gid)
        # users/assign: the address maps straight to a uid and a home here (no passwd entry read)
        (self.prefix / "users" / "assign").write_text(f"=mbox:{MAILBOX_USER}:{uid}:{gid}:{self.home}:::\n.\n")
        _run(str(self.prefix / "bin" / "qmail-newu"))
        # A session killed half-way may have left messages: they would land in this Maildir.
        for sub in QUEUE_SUBDIRS:
            for path in (self.prefix / "queue" / sub).rglob("*"):
                if path.is_file():
                    path.unlink()

    def start_send(self) -> None:
        """qmail-start: qmail-send, qmail-lspawn, qmail-rspawn, qmail-clean; Maildir by default."""
        with open(self.run / "qmail-send.log", "ab") as log:  # the child keeps its own copy
            self.procs.append(subprocess.Popen(
                [str(self.prefix / "bin" / "qmail-start"), "./Maildir/"], cwd=self.prefix,
                env={"PATH": f"{self.prefix}/bin:/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))

    def start_smtpd(self, qscan_socket: Path, client: Path | None = None) -> int:
        """qmail-smtpd under tcpserver as the stock run script has it; its port."""
        tag = f"{len(self.procs)}"
        rules = self.run / f"tcp.smtp.{tag}"
        rules.write_text(f'127.:allow,QMAILQUEUE="{client or self.client}",QSCAN_SOCKET="{qscan_socket}",'
                         f'QSCAN_TIMEOUT="60",QSCAN_QMAIL_QUEUE="{self.qmail_queue}"\n:deny\n')
        cdb = self.run / f"tcp.smtp.{tag}.cdb"
        with open(rules, "rb") as src:
            subprocess.run(["tcprules", str(cdb), f"{cdb}.tmp"], stdin=src, check=True, capture_output=True)
        for _attempt in range(5):
            port = free_port()
            with open(self.run / f"tcpserver.{tag}.log", "ab") as log:
                proc = subprocess.Popen(
                    ["tcpserver", "-v", "-R", "-H", "-l", f"mx.{DOMAIN}", "-x", str(cdb),
                     "-u", str(self.ids.qmaild), "-g", str(self.ids.nofiles),
                     "127.0.0.1", str(port), str(self.prefix / "bin" / "qmail-smtpd")],
                    env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
                )
            deadline = time.monotonic() + 10
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as c:
                    if c.recv(100).startswith(b"220"):
                        self.procs.append(proc)
                        return port
                time.sleep(0.05)
            _stop_group(proc)  # the port was taken meanwhile: try another
        raise Unavailable("tcpserver did not start: " + (self.run / f"tcpserver.{tag}.log").read_text())

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop_group(proc)
        self.procs.clear()

    def delivered(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted((self.maildir / "new").iterdir())]

    def wait_delivered(self, marker: bytes, timeout: float = 30) -> bytes:
        """The message in the Maildir that contains ``marker`` (qmail-send delivers it soon)."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.delivered():
                if marker in msg:
                    return msg
            if time.monotonic() > deadline:
                log = (self.run / "qmail-send.log").read_text(errors="replace")
                raise AssertionError(f"{marker!r} not delivered within {timeout} s; qmail-send log:\n{log}")
            time.sleep(0.05)

    def inject_as(self, uid: int, gid: int, message: bytes, *args: str, **env: str
                  ) -> subprocess.CompletedProcess[bytes]:
        """``qmail-inject ARGS`` with ``message`` on stdin, as ``uid``/``gid``, QMAILQUEUE from ``env``."""
        user = pwd.getpwuid(uid).pw_name
        return subprocess.run(
            as_user(uid, gid, str(self.prefix / "bin" / "qmail-inject"), *args),
            input=message, capture_output=True, timeout=60, cwd="/",
            env={"PATH": "/usr/bin:/bin", "USER": user, "LOGNAME": user, **env},
        )


@contextlib.contextmanager
def running_site(workdir_parent: Path | None = None) -> Iterator[Site]:
    """Build (cached), configure and start qmail-send; tcpserver is started per daemon socket."""
    ids = ensure_ids()
    cache = cache_dir()
    with locked(cache):
        prefix = build(cache)
        run = Path(tempfile.mkdtemp(prefix="run-", dir=workdir_parent or cache))
        run.chmod(0o755)
        try:
            client, how = reachable_client(ids, run)
            site = Site(prefix, run, ids, client, how)
            site.configure()
            site.start_send()
            try:
                yield site
            finally:
                site.stop()
        finally:
            shutil.rmtree(run, ignore_errors=True)
