"""The scan daemon: pre-forked workers that scan, and a master that keeps slow peers off them.

Why the master receives anything: a worker must never wait on a sender. Anyone allowed on the
socket can connect and say nothing; when workers read every request to its end, as many slow
or silent connections as there are workers stopped all mail. So a worker that accepts a
connection gives it ``handoff_after`` seconds (qscan-queue reads the message from qmail first
and sends the request at once: a local copy of milliseconds); a request complete by then is
scanned on the spot, with nothing in between (the hot path). Any other connection goes to the
master with the bytes read so far (the descriptor passed over a unix socket, ``SCM_RIGHTS``),
and the worker goes back to work. The master's one non-blocking event loop finishes receiving
such requests under one deadline over the whole request (``timeout``, from accept, not per
read) and a cap on the connections it holds per peer uid (``SO_PEERCRED``), spools each into an
anonymous memory file, and puts the complete request on the job socket, which every idle
worker watches beside the listening socket. Slow senders cost the master a file descriptor
each, never a worker.

The hand-off: a worker never runs qmail-queue (nor any setuid program). For a delivery it
journals the event, hands the final message to qscan-queue in a sealed memfd (an ``X`` frame with
``SCM_RIGHTS``) and passes the connection to the master, whose event loop awaits the client's
report of qmail-queue's exit and journals ``message.queue_failed`` when it failed or never came
(docs/protocol.md has every crash case). A worker that dies after the journal append and before
the hand-off left the event id in its scoreboard slot: the master records that it was not queued.

Why pre-fork: each worker keeps its warm state (parser, scanners, journal connection) and
runs Python on its own core; a crash or leak in one message costs one worker, which the
master replaces. Workers are recycled after ``max_messages_per_worker`` messages, and right
after any message of at least ``recycle_after_bytes`` (its heap stays grown otherwise: freed
arenas are not given back to the OS). SIGTERM: the master stops accepting, tells every worker
to finish what it holds and leave, then exits and removes the socket. SIGHUP replaces every
worker the same gentle way (new rules, new databases), once the start-up checks pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import grp
import hashlib
import json
import logging
import os
import resource
import select
import selectors
import signal
import socket
import struct
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest import exitcodes as ec
from ingest import frames
from ingest.frames import FrameDecoder, ProtocolError, RequestAssembler
from ingest.journal import JournalError
from ingest.processor import (
    NOT_REPORTED,
    NOT_REPORTED_TEXT,
    NOT_RUN,
    WORKER_DIED_TEXT,
    Outcome,
    Processor,
    ProcessorSettings,
    Request,
)
from ingest.scoreboard import HeldTable, Scoreboard, status_document, status_path, write_status
from scanners.settings import MiB, setting

log = logging.getLogger(__name__)

# Called in a worker after each answered message, once the client has its answer and the
# connection is closed (metrics: qscan/ops/metrics.py). It must be cheap and must not raise.
Observer = Callable[[Processor, Outcome], None]
STATUS_INTERVAL = 1.0  # seconds between rewrites of the status file
# A worker's journal copies its WAL into the database here, between messages, not inside the
# append that crosses SQLite's 1,000-page mark (a 5-15 ms stall of that one message): at most
# this often while busy, and whenever it is idle (ingest.journal.Journal.checkpoint).
CHECKPOINT_INTERVAL = 0.25
RECV = 1 << 20  # a worker's read: a whole request at once
MASTER_RECV = 256 * 1024  # the master's read per connection and turn: fair among many
JOB_MAX = 256 * 1024  # a job datagram (attributes are at most frames.MAX_ATTR_BYTES)
FIRST_BYTES = 0.02  # seconds a worker waits for a new connection to say anything at all
CAPPED_GLANCE = 0.002  # ... and for the whole request of a uid whose slow share is taken
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
SLOW_TEXT = "Zqscan: the message was not received in time (#4.4.2)"
BUSY_TEXT = "Zqscan: too many connections from this user, try again later (#4.3.2)"
DENIED_TEXT = "Zqscan: this user may not submit mail through qscan (#4.3.0)"
ENVELOPE_TEXT = "Dqscan: envelope too large (#5.5.3)"
OVERSIZED_TEXT = "Dmessage too large (#5.3.4)"
SHUTDOWN_TEXT = "Zqscan: shutting down, try again later (#4.3.0)"
EXIT = b"x"  # master -> worker on its control socket: leave (recycling, shutdown)
# Seconds the master waits for qscan-queue's report beyond the qmail-queue timeout it was given
# (the client kills qmail-queue at that timeout and reports 52).
REPORT_SLACK = 5.0
_SEALS = getattr(os, "MFD_ALLOW_SEALING", 2)


@dataclass(frozen=True, slots=True)
class DaemonSettings(ProcessorSettings):
    """The socket, the workers and the limits of a request; the processor's keys
    (qmail-queue, deadlines, local domains: ProcessorSettings) are in the same section."""

    socket: Path = setting(Path("/run/qscan/qscan.sock"), "unix socket qscan-queue connects to")
    socket_mode: int = setting(
        0o666, "permissions of the socket (octal in TOML: 0o666); who may submit is decided per "
        "peer uid (allow_users), since qmail-smtpd under a stock run script keeps only the one "
        "group tcpserver -g gives it", json_schema_extra={"octal": True})
    socket_group: str | None = setting(None, "group owning the socket", example="qmail")
    allow_users: tuple[str, ...] = setting(
        (), "users (names or uids) that may submit mail; empty: every local user (qmail-inject "
        "runs as the sender)")
    max_connections_per_uid: int = setting(
        64, "slow connections (not complete within handoff_after) the master holds for one uid; "
        "more are answered with a temporary failure at once", ge=1)
    handoff_after: float = setting(
        0.25, "seconds a worker gives a new connection to deliver its whole request (qscan-queue "
        "sends it at once); a slower one goes to the master, freeing the worker", gt=0)
    workers: int = setting(4, "pre-forked worker processes", ge=1, le=256)
    max_messages_per_worker: int = setting(1000, "a worker is recycled after this many messages", ge=1)
    recycle_after_bytes: int = setting(
        8 * MiB, "a worker is recycled right after a message at least this big (bytes), giving "
        "back the memory it grew by; 0 disables", ge=0)
    timeout: float = setting(
        300.0, "seconds allowed to receive one whole request from qscan-queue (which reads the "
        "message from qmail first): slower peers are cut off with a temporary failure", gt=0)


@dataclass(frozen=True, slots=True)
class DaemonOptions(DaemonSettings):
    """The daemon's settings with what the wiring resolves from them once, in the master."""

    allow_uids: frozenset[int] | None = None  # daemon.allow_users; None: every local user


def client_connected(conn: socket.socket) -> bool:
    """Is the client still waiting? One non-blocking ``recv(MSG_PEEK)`` on a non-blocking socket.

    The client sends nothing after its end frame, so "would block" means still connected;
    EOF or an error means it gave up (timeout, killed), and queueing now would deliver the
    message a second time when the sender retries. Stray bytes count as connected: the
    answer will tell."""
    try:
        return conn.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def send_message(conn: socket.socket, message: bytes, timeout: float,
                 sending: Callable[[], None] | None = None) -> bool:
    """The hand-off: the final message to qscan-queue in a sealed memfd (``X`` frame,
    ``SCM_RIGHTS``), with the seconds its qmail-queue may take. False when it could not be
    sent (the client is gone: it never ran qmail-queue). ``sending`` is called right before."""
    fd = -1
    try:
        fd = os.memfd_create("qscan-message", os.MFD_CLOEXEC | _SEALS)
        _write_all(fd, message)
        with contextlib.suppress(OSError):  # the client reads it; nobody may change it meanwhile
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                        | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
        os.lseek(fd, 0, os.SEEK_SET)
        conn.setblocking(True)
        conn.settimeout(5.0)  # one small frame into an empty buffer
        if sending is not None:
            # From here the master must not take the delivery back if this worker dies: the
            # client may have the message. (Dying between this and the send leaves a "deliver"
            # for a message that was not queued, and its retry a second copy: rather that than
            # no record of a delivered message.)
            sending()
        socket.send_fds(conn, [frames.encode_handoff(len(message), timeout)], [fd])
    except OSError as exc:
        log.warning("cannot hand the message to qscan-queue: %s", exc)
        return False
    finally:
        if fd >= 0:
            os.close(fd)
    return True


def decode_report(frame: tuple[bytes, bytes]) -> tuple[int, str | None]:
    """qscan-queue's ``S`` frame: (qmail-queue's exit code, its fd 6 text)."""
    kind, payload = frame
    if kind != frames.STATUS:
        raise ProtocolError(f"expected a status frame, got {kind!r}")
    return frames.decode_result(payload)


def await_report(conn: socket.socket, wait: float) -> tuple[int, str | None] | None:
    """Block up to ``wait`` seconds for qscan-queue's report; None when it left without one."""
    deadline = time.monotonic() + wait
    decoder = FrameDecoder(max_chunk=frames.MAX_CONTROL)
    try:
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            data = conn.recv(4096)
            if not data:
                return None
            got = decoder.feed(data)
            if got:
                return decode_report(got[0])
    except (OSError, ProtocolError) as exc:
        log.warning("reading qscan-queue's report failed: %s", exc)
    return None


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected, from the kernel (SO_PEERCRED)."""
    data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    pid, uid, gid = _CRED.unpack(data)
    return pid, uid, gid


def client_deadline_seconds(attrs: dict[str, str], configured: float | None) -> float | None:
    """How long the client waits once its request is sent: its own QSCAN_TIMEOUT when it sent
    one (a client giving up earlier than the daemon thinks would be told 451 for a message
    that is then queued), bounded by the configured ``client_timeout``."""
    claimed: float | None = None
    text = attrs.get("QSCAN_TIMEOUT")
    if text:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if value > 0 and value == value:  # not NaN
            claimed = value
    if claimed is None:
        return configured
    return claimed if configured is None else min(claimed, configured)


def _spool() -> int:
    """An anonymous file for one request (memory-backed where the kernel has memfd)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("qscan-request", os.MFD_CLOEXEC)
    fd, name = tempfile.mkstemp(prefix="qscan-request-")
    os.unlink(name)
    return fd


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_spool(fd: int, size: int) -> bytes:
    """The spool's first ``size`` bytes, in one allocation."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.preadv(fd, [view[got:]], got)
        if n <= 0:
            raise OSError("request spool is short")
        got += n
    return bytes(buf)


class AlreadyRunning(RuntimeError):
    pass


def bind_socket(opts: DaemonOptions) -> socket.socket:
    path = opts.socket
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale socket from a dead daemon
        else:
            raise AlreadyRunning(f"a daemon is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    if opts.socket_group:
        os.chown(path, -1, grp.getgrnam(opts.socket_group).gr_gid)
    os.chmod(path, opts.socket_mode)
    sock.listen(128)
    sock.setblocking(False)
    return sock


class _Header:
    """The JSON header of a control message between master and workers."""

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Job(_Header):
    """A complete request, as the master hands it to a worker (the header of the control message;
    the connection and the spool travel beside it as file descriptors)."""

    size: int  # message bytes received (may exceed what the spool holds when oversized)
    kept: int  # message bytes in the spool
    envelope: int  # envelope bytes after the message in the spool
    attrs: dict[str, str]
    sha256: str
    received: float  # epoch seconds at accept
    receive_ms: float
    deadline: float | None  # time.monotonic() at which the client stops waiting
    wait: float | None  # seconds the client waits once the request is in
    uid: int
    gid: int
    pid: int

    @classmethod
    def decode(cls, data: bytes) -> Job:
        return cls(**json.loads(data))


@dataclass
class _Handoff(_Header):
    """What a worker tells the master about a connection it hands over (control message header)."""

    uid: int
    gid: int
    pid: int
    accepted: float  # monotonic
    received: float  # epoch


class Worker:
    """Takes connections from the listening socket and complete requests from the master.

    A request that arrives whole within ``handoff_after`` seconds (qscan-queue sends it at
    once, having read it from qmail first) is scanned here, with nothing in between: the hot
    path. One that does not - a slow, trickling or silent peer - is handed to the master with
    the bytes read so far, and this worker goes back to work; the master finishes receiving it
    and queues it for any worker on the shared job socket."""

    def __init__(self, lsock: socket.socket, jobs: socket.socket, ctl: socket.socket,
                 opts: DaemonOptions, processor: Processor, board: Scoreboard | None = None,
                 slot: int | None = None, observe: Observer | None = None,
                 held: HeldTable | None = None) -> None:
        self.lsock = lsock
        self.held = held
        self.jobs = jobs
        self.ctl = ctl
        self.opts = opts
        self.processor = processor
        self.stop = False
        self.parent = os.getppid()
        self.board = board if slot is not None else None
        self.slot = slot if slot is not None else 0
        self.observe = observe
        self.received = 0  # bytes of the message in hand (or last handled)
        self.handled = 0  # messages answered
        self._next_checkpoint = 0.0  # when this worker next checkpoints the journal (_checkpoint)
        if self.board is not None:
            self.board.assign(self.slot, os.getpid())

    def run(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the master says when to leave, between messages
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # Everything alive now (modules, schemas, scanner state) lives as long as the worker:
        # out of the collector's sight, a full collection walks only what messages left
        # behind (it walked the whole heap: pauses of up to ~100 ms in the middle of a message).
        gc.collect()  # once, before the first message: garbage is not frozen with the rest
        gc.freeze()
        # EPOLLEXCLUSIVE: a new connection or job wakes one idle worker, not all of them.
        exclusive = select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0)
        waiter = select.epoll()
        waiter.register(self.jobs.fileno(), exclusive)
        waiter.register(self.lsock.fileno(), exclusive)
        waiter.register(self.ctl.fileno(), select.EPOLLIN)
        try:
            while not self.stop and self.handled < self.opts.max_messages_per_worker:
                if os.getppid() != self.parent:  # master died: stop taking new work
                    break
                try:
                    ready = {fd for fd, _ in waiter.poll(1.0)}
                except InterruptedError:
                    continue
                if not ready:
                    self._checkpoint()
                    continue
                if self.ctl.fileno() in ready:
                    self._from_master()
                    if self.stop:
                        break
                outcome = None
                if self.jobs.fileno() in ready:  # a request that waited longer comes first
                    job = self._take_job()
                    if job is None:
                        continue
                    outcome = self._run(functools.partial(self.handle_job, *job))
                elif self.lsock.fileno() in ready:
                    try:
                        conn, _ = self.lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue  # another worker took it
                    except OSError:
                        log.exception("accept failed")
                        time.sleep(0.1)
                        continue
                    outcome = self._run(functools.partial(self.handle, conn))
                else:
                    continue
                if outcome is None:
                    continue
                self.handled += 1
                if self.board is not None:
                    self.board.set_idle(self.slot, self.handled)
                if self.observe is not None:
                    try:
                        self.observe(self.processor, outcome)
                    except Exception:
                        log.debug("observer failed", exc_info=True)
                # Its event holds the whole message (raw_message): let it go now, not when the
                # next message arrives, so an idle worker does not sit on the last big one.
                outcome = None
                if time.monotonic() >= self._next_checkpoint:
                    self._checkpoint()
                limit = self.opts.recycle_after_bytes
                if limit and self.received >= limit:
                    log.info("worker %d recycled after a %d-byte message (recycle_after_bytes %d)",
                             os.getpid(), self.received, limit)
                    break
        finally:
            waiter.close()

    def _checkpoint(self) -> None:
        """The journal's WAL into the database (its client has its answer already)."""
        self._next_checkpoint = time.monotonic() + CHECKPOINT_INTERVAL
        try:
            self.processor.journal.checkpoint()
        except JournalError as exc:  # the next append says whether the journal is usable
            log.warning("%s", exc)

    def _run(self, work: Callable[[], Outcome | None]) -> Outcome | None:
        if self.board is not None:
            self.board.set_busy(self.slot, self.handled)
        try:
            return work()
        except Exception:
            log.exception("connection handler failed")
            return None
        finally:
            if self.board is not None:
                self.board.set_pending(self.slot, "")  # answered, handed over or compensated
                self.board.set_idle(self.slot, self.handled)

    def _from_master(self) -> None:
        try:
            msg = self.ctl.recv(16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            msg = b""
        if msg in (EXIT, b""):  # told to leave, or the master is gone
            self.stop = True

    def _take_job(self) -> tuple[Job, list[int]] | None:
        try:
            msg, fds, flags, _addr = socket.recv_fds(self.jobs, JOB_MAX, 2, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None  # another worker took it
        job = None
        if msg and not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            try:
                job = Job.decode(msg)
            except (ValueError, TypeError) as exc:
                log.error("unreadable job from the master: %s", exc)
        if job is None:  # its client sees EOF and retries; this worker goes on
            for fd in fds:
                os.close(fd)
            return None
        return job, fds

    # -- a connection accepted here -------------------------------------------------------
    def handle(self, conn: socket.socket) -> Outcome | None:
        try:
            return self._handle(conn)
        finally:
            conn.close()

    def _handle(self, conn: socket.socket) -> Outcome | None:
        start = time.time()
        accepted = time.monotonic()
        try:
            pid, uid, gid = peer_credentials(conn)
        except OSError:
            return None
        if self.opts.allow_uids is not None and uid not in self.opts.allow_uids:
            log.warning("refused a connection from uid %d (pid %d): not in daemon.allow_users", uid, pid)
            _answer(conn, ec.CUSTOM_ERROR, DENIED_TEXT)
            return None
        # The master holds as many slow connections of this uid as it may: this one gets only
        # a glance (a whole request is taken, anything slower refused at once, not handed over).
        capped = self.held is not None and self.held.get(uid) >= self.opts.max_connections_per_uid
        decoder = FrameDecoder()
        req = RequestAssembler(self.opts.max_message_size)
        sha = hashlib.sha256()
        seen: list[bytes] = []  # the raw bytes, for a hand-off to the master
        # A silent peer costs this worker FIRST_BYTES, a slow one handoff_after, then the master
        # takes over; qscan-queue connects with its whole request in hand.
        window = accepted + (CAPPED_GLANCE if capped else min(FIRST_BYTES, self.opts.handoff_after))
        full_window = window if capped else accepted + min(self.opts.handoff_after, self.opts.timeout)
        try:
            while not req.done:
                left = window - time.monotonic()
                if left <= 0:
                    if req.oversized:  # its bytes are not kept: refused now, not drained by the master
                        _answer(conn, ec.CUSTOM_ERROR, OVERSIZED_TEXT)
                        return None
                    if capped:
                        _answer(conn, ec.CUSTOM_ERROR, BUSY_TEXT)
                        return None
                    self._hand_off(conn, seen, _Handoff(uid, gid, pid, accepted, start))
                    return None
                conn.settimeout(left)
                try:
                    data = conn.recv(RECV)
                except TimeoutError:
                    continue
                if not data:
                    return None  # client gave up: nothing was accepted, nothing recorded
                window = full_window
                if not req.oversized:
                    seen.append(data)
                for kind, payload in decoder.feed(data):
                    if kind == frames.MESSAGE:
                        sha.update(payload)
                    req.add(kind, payload)
                if req.oversized and seen:
                    seen.clear()  # nothing of it will be kept: nothing to hand over either
            if decoder.pending:
                raise ProtocolError("bytes after end of request")
        except frames.EnvelopeTooLarge as exc:
            log.warning("refusing a request from uid %d: %s", uid, exc)
            conn.setblocking(False)
            _answer(conn, ec.CUSTOM_ERROR, ENVELOPE_TEXT)
            return None
        except (OSError, ProtocolError) as exc:
            log.warning("dropping connection from uid %d: %s", uid, exc)
            return None
        finally:
            self.received = req.size
        del seen
        assert req.envelope is not None
        done = time.monotonic()
        wait = client_deadline_seconds(req.attrs, self.opts.client_timeout)
        # Non-blocking from here: the liveness peek must not wait (a socket with a timeout polls
        # before every recv), and the answer is one small frame into an empty send buffer.
        conn.setblocking(False)
        request = Request(
            message=req.message(), envelope=req.envelope, attrs=req.attrs, size=req.size,
            sha256=sha.hexdigest(), received=start, receive_ms=(done - accepted) * 1000,
            client_deadline=None if wait is None else done + wait, client_wait=wait,
            client_alive=lambda: client_connected(conn), peer_uid=uid, peer_gid=gid, peer_pid=pid,
            **self._hand_off_hooks(conn, uid),
        )
        return self._answer(conn, request)

    def _hand_off(self, conn: socket.socket, seen: list[bytes], head: _Handoff) -> None:
        """A peer slower than ``handoff_after``: the master receives the rest, holding no worker."""
        spool = _spool()
        try:
            for chunk in seen:
                _write_all(spool, chunk)
            socket.send_fds(self.ctl, [head.encode()], [conn.fileno(), spool])
        except OSError as exc:  # the master is gone or full: the client retries
            log.warning("cannot hand a slow connection to the master: %s", exc)
        finally:
            os.close(spool)

    def _hand_off_hooks(self, conn: socket.socket, uid: int) -> dict[str, Any]:
        """Request.queue (the hand-off to the client on ``conn``) and Request.on_commit: a
        delivery is noted in this worker's scoreboard slot from just before its journal append
        until the client has it, for the master to compensate if this worker dies meanwhile."""
        hooks: dict[str, Any] = {"queue": functools.partial(self._give, conn, uid)}
        if self.board is not None:
            hooks["on_commit"] = functools.partial(self.board.set_pending, self.slot)
        return hooks

    def _give(self, conn: socket.socket, uid: int, event_id: str, message: bytes, timeout: float) -> bool:
        """Hand the final message to the client, then the connection to the master, which awaits
        the client's report of qmail-queue's exit (this worker is free at once). False: the
        client could not be given it."""
        board, slot = self.board, self.slot
        sending = None if board is None else functools.partial(board.set_pending, slot, "")
        if not send_message(conn, message, timeout, sending):
            return False
        wait = timeout + REPORT_SLACK
        head = json.dumps({"report": event_id, "wait": wait, "uid": uid}).encode()
        try:
            socket.send_fds(self.ctl, [head], [conn.fileno()])
            return True
        except OSError as exc:  # the master is gone or full: await the report here
            log.warning("cannot pass the report of %s to the master (%s); awaiting it here", event_id, exc)
        report = await_report(conn, wait)
        code, text = (NOT_REPORTED, NOT_REPORTED_TEXT) if report is None else report
        if code != ec.QUEUED:
            self.processor.queue_failed(event_id, code, text)
        return True

    def _answer(self, conn: socket.socket, request: Request) -> Outcome:
        outcome = self.processor.process(request)
        if outcome.handed_off:  # the client ran qmail-queue: it has its answer already
            return outcome
        try:
            conn.sendall(frames.encode_result(outcome.code, outcome.text))
        except OSError:
            log.warning("client went away before the answer (%s)", outcome.code)
        return outcome

    # -- a request the master received -------------------------------------------------------
    def handle_job(self, job: Job, fds: list[int]) -> Outcome | None:
        try:
            if len(fds) != 2:
                log.error("job without its connection and spool (%d descriptors)", len(fds))
                return None
            conn = socket.socket(fileno=os.dup(fds[0]))
            try:
                conn.setblocking(False)
                if not client_connected(conn):  # it gave up while waiting: scan nothing, record nothing
                    log.info("job from uid %d: the client left before a worker was free", job.uid)
                    return None
                self.received = job.size
                data = _read_spool(fds[1], job.kept + job.envelope)
                request = Request(
                    message=data[:job.kept], envelope=data[job.kept:], attrs=job.attrs, size=job.size,
                    sha256=job.sha256, received=job.received, receive_ms=job.receive_ms,
                    client_deadline=job.deadline, client_alive=lambda: client_connected(conn),
                    peer_uid=job.uid, peer_gid=job.gid, peer_pid=job.pid, client_wait=job.wait,
                    **self._hand_off_hooks(conn, job.uid),
                )
                del data
                return self._answer(conn, request)
            finally:
                conn.close()
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _raise_descriptor_limit() -> None:
    """The master holds a connection and a spool per slow peer: take every descriptor allowed."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else max(soft, 65536), hard))
    except (OSError, ValueError):
        pass


def _answer(sock: socket.socket, code: int, text: str) -> None:
    with contextlib.suppress(OSError):
        sock.send(frames.encode_result(code, text))


@dataclass
class _Incoming:
    """A slow connection the master is receiving a request on (a worker handed it over)."""

    sock: socket.socket
    pid: int
    uid: int
    gid: int
    accepted: float  # monotonic
    received: float  # epoch
    deadline: float  # monotonic: the whole request must be in by then
    decoder: FrameDecoder = field(default_factory=FrameDecoder)
    req: RequestAssembler | None = None
    sha: Any = field(default_factory=hashlib.sha256)
    spool: int = -1
    kept: int = 0


@dataclass
class _Report:
    """A client running qmail-queue on a message a worker handed it: its report is awaited."""

    sock: socket.socket
    event_id: str
    uid: int
    deadline: float  # monotonic
    decoder: FrameDecoder = field(default_factory=lambda: FrameDecoder(max_chunk=frames.MAX_CONTROL))


@dataclass
class _WorkerHandle:
    pid: int
    ctl: socket.socket
    slot: int | None
    started: float
    leaving: bool = False  # was told EXIT


class Daemon:
    """The master process: binds, forks and replaces workers, finishes receiving what slow
    peers send, shuts down cleanly."""

    def __init__(self, opts: DaemonOptions, make_processor: Callable[[], Processor],
                 observe: Observer | None = None, preflight: Callable[[], object] | None = None,
                 queue_failed: Callable[[str, int, str | None], None] | None = None) -> None:
        """``preflight``: raises when new workers could not start (a rules file broken since the
        daemon started); run on SIGHUP before any worker is replaced. ``queue_failed(event id,
        code, reply)`` appends message.queue_failed (ingest.processor.record_queue_failure): for
        a client that reports qmail-queue failed or leaves without a report, and for a delivery
        whose worker died before the client had it."""
        self.opts = opts
        self.queue_failed = queue_failed
        # called with qmail-queue's exit code from each report (metrics)
        self.on_report: Callable[[int], None] | None = None
        self.reports: dict[int, _Report] = {}  # fd -> a client whose report is awaited
        self.make_processor = make_processor
        self.observe = observe
        self.preflight = preflight
        self.stopping = False
        self.recycle = False
        # before any fork: shared with every worker (twice the pool: recycled workers finish
        # their message while their replacements already run)
        self.board = Scoreboard(opts.workers * 2)
        self.held = HeldTable()
        self.status_path = status_path(opts.socket)
        self.started = time.time()
        self.sel = selectors.DefaultSelector()
        self.workers: dict[int, _WorkerHandle] = {}  # pid -> handle
        self.incoming: dict[int, _Incoming] = {}  # fd -> slow connection being received
        self.ready: deque[tuple[_Incoming, Job]] = deque()  # complete, not yet on the job socket
        self.per_uid: dict[int, int] = {}  # slow connections held, per peer uid
        self.lsock: socket.socket | None = None
        # The job socket: the master writes complete requests into one end, every worker reads
        # the other (a datagram each, atomically, with its descriptors).
        self.jobs_out, self.jobs_in = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.jobs_out.setblocking(False)
        self.jobs_in.setblocking(False)
        self._writing = False  # jobs_out registered for EVENT_WRITE (the job socket was full)
        self._backoff = 0.0  # seconds before replacing a worker that died at once
        self._respawn_at = 0.0

    @property
    def children(self) -> dict[int, _WorkerHandle]:
        return self.workers

    def _write_status(self) -> None:
        try:
            doc = status_document(self.board, socket_path=self.opts.socket, started=self.started,
                                  configured_workers=self.opts.workers)
            doc["receiving"] = len(self.incoming)
            doc["waiting"] = len(self.ready)
            write_status(self.status_path, doc)
        except OSError as exc:  # status is for operators; mail flows without it
            log.warning("cannot write %s: %s", self.status_path, exc)

    # -- workers -----------------------------------------------------------------
    def _spawn(self) -> None:
        assert self.lsock is not None
        slot = self.board.claim()
        try:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as exc:
            self._spawn_failed(slot, exc)
            return
        try:
            pid = os.fork()
        except OSError as exc:
            mine.close()
            theirs.close()
            self._spawn_failed(slot, exc)
            return
        if pid == 0:  # worker
            code = 0
            try:
                mine.close()
                self.jobs_out.close()
                for inc in self.incoming.values():
                    inc.sock.close()
                    if inc.spool >= 0:
                        os.close(inc.spool)
                for inc, _job in self.ready:
                    inc.sock.close()
                    os.close(inc.spool)
                for w in self.workers.values():
                    w.ctl.close()
                self.sel.close()
                Worker(self.lsock, self.jobs_in, theirs, self.opts, self.make_processor(), self.board,
                       slot, self.observe, self.held).run()
            except BaseException:
                log.exception("worker crashed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        theirs.close()
        mine.setblocking(False)
        self.workers[pid] = _WorkerHandle(pid, mine, slot, time.monotonic())
        self.sel.register(mine, selectors.EVENT_READ, ("worker", pid))

    def _spawn_failed(self, slot: int | None, exc: OSError) -> None:
        """No descriptors, memory or processes for a new worker: the ones there are go on
        serving, and the pool is filled again after a growing pause (never a dead daemon)."""
        if slot is not None:
            self.board.release(slot)
        self._backoff = min(5.0, self._backoff * 2 or 0.1)
        self._respawn_at = time.monotonic() + self._backoff
        log.error("cannot start a worker (%s); retrying in %.1f s", exc, self._backoff)

    def _worker_says(self, pid: int) -> None:
        w = self.workers.get(pid)
        if w is None:
            return
        try:
            msg, fds, _flags, _addr = socket.recv_fds(w.ctl, 4096, 2)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            msg, fds = b"", []
        if not msg:  # EOF: the worker exited or died
            for fd in fds:
                os.close(fd)
            self._forget(w)
            return
        self._take_over(msg, fds)

    def _drain(self, w: _WorkerHandle) -> None:
        while w.ctl.fileno() != -1:
            try:
                msg, fds, _flags, _addr = socket.recv_fds(w.ctl, 4096, 2, socket.MSG_DONTWAIT)
            except OSError:
                return
            if not msg:
                for fd in fds:
                    os.close(fd)
                return
            self._take_over(msg, fds)

    def _retire(self, w: _WorkerHandle) -> None:
        w.leaving = True
        with contextlib.suppress(OSError):
            w.ctl.send(EXIT)

    def _forget(self, w: _WorkerHandle) -> None:
        if w.ctl.fileno() == -1:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(w.ctl)
        w.ctl.close()
        w.leaving = True

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            self._drain(w)  # hand-offs it sent before it left are still ours to finish
            self._forget(w)
            if w.slot is not None:
                self._lost_hand_off(w.slot, pid)
                self.board.release(w.slot)
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                log.warning("worker %d exited with %d; replacing it", pid, code)
                # a worker that dies at once, repeatedly, must not spin the CPU
                if time.monotonic() - w.started < 1:
                    self._backoff = min(5.0, self._backoff * 2 or 0.1)
                    self._respawn_at = time.monotonic() + self._backoff
                else:
                    self._backoff = 0.0

    def _lost_hand_off(self, slot: int, pid: int) -> None:
        """A worker died with a delivery journaled and not handed to its client (which saw EOF
        and temp-failed): record message.queue_failed, or consumers would count it delivered."""
        event_id = self.board.pending(slot)
        if event_id is not None:
            log.warning("worker %d died after journaling %s and before handing it over; recording it "
                        "as not queued", pid, event_id)
            self._record_failure(event_id, NOT_RUN, WORKER_DIED_TEXT)

    def _record_failure(self, event_id: str, code: int, reply: str | None) -> None:
        if self.queue_failed is None:
            return
        try:
            self.queue_failed(event_id, code, reply)
        except Exception:
            log.exception("cannot record that %s was not queued", event_id)

    # -- reports: qscan-queue says what qmail-queue answered --------------------------------
    def _await_report(self, head: dict[str, Any], fd: int) -> None:
        """A worker handed a message to its client and the connection to us: the client's
        report of qmail-queue's exit comes here (the worker is free at once)."""
        event_id, uid, wait = str(head["report"]), int(head["uid"]), float(head["wait"])
        conn = socket.socket(fileno=fd)
        conn.setblocking(False)
        rep = _Report(conn, event_id, uid, time.monotonic() + wait)
        self.reports[conn.fileno()] = rep
        self.sel.register(conn, selectors.EVENT_READ, ("report", conn.fileno()))

    def _read_report(self, fd: int) -> None:
        rep = self.reports.get(fd)
        if rep is None:
            return
        try:
            data = rep.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._reported(rep, None)
            return
        try:
            got = rep.decoder.feed(data)
            if got:
                self._reported(rep, decode_report(got[0]))
        except ProtocolError as exc:
            log.warning("bad report from qscan-queue (uid %d) for %s: %s", rep.uid, rep.event_id, exc)
            self._reported(rep, None)

    def _reported(self, rep: _Report, report: tuple[int, str | None] | None) -> None:
        """Journal what the report says (a failure; nothing for success), then close: the
        client, waiting for that after a failure, exits once it is recorded."""
        self.reports.pop(rep.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(rep.sock)
        if report is None:
            log.warning("qscan-queue (uid %d) left without reporting qmail-queue's exit for %s",
                        rep.uid, rep.event_id)
            self._record_failure(rep.event_id, NOT_REPORTED, NOT_REPORTED_TEXT)
        else:
            if report[0] != ec.QUEUED:
                log.warning("qmail-queue exited %d for %s", report[0], rep.event_id)
                self._record_failure(rep.event_id, *report)
            if self.on_report is not None:
                with contextlib.suppress(Exception):
                    self.on_report(report[0])
        rep.sock.close()

    def _finish_reports(self, until: float) -> None:
        """Shutting down: wait for the reports still due (each until its own deadline)."""
        while self.reports and time.monotonic() < until:
            self._expire()
            for key, _mask in self.sel.select(0.2):
                kind, ident = key.data
                if kind == "report":
                    self._read_report(ident)

    def _fill_pool(self) -> None:
        if self.stopping or time.monotonic() < self._respawn_at:
            return
        live = sum(1 for w in self.workers.values() if not w.leaving)
        for _ in range(self.opts.workers - live):
            self._spawn()

    # -- slow connections ------------------------------------------------------------
    def _release_uid(self, uid: int) -> None:
        left = self.per_uid.get(uid, 0) - 1
        if left > 0:
            self.per_uid[uid] = left
        else:
            self.per_uid.pop(uid, None)
        self.held.set(uid, max(left, 0))

    def _hold_uid(self, uid: int) -> None:
        self.per_uid[uid] = self.per_uid.get(uid, 0) + 1
        self.held.set(uid, self.per_uid[uid])

    def _take_over(self, msg: bytes, fds: list[int]) -> None:
        """A worker hands over a connection slower than ``handoff_after``, with what it read, or
        one whose client has the message and will report qmail-queue's exit."""
        if len(fds) not in (1, 2):
            for fd in fds:
                os.close(fd)
            log.error("hand-off without its connection and spool (%d descriptors)", len(fds))
            return
        try:
            data = json.loads(msg)
            if isinstance(data, dict) and "report" in data and len(fds) == 1:
                self._await_report(data, fds[0])
                return
            if len(fds) != 2:
                raise ValueError(f"{len(fds)} descriptors")
            head = _Handoff(**data)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("unreadable hand-off from a worker: %s", exc)
            for fd in fds:
                os.close(fd)
            return
        conn = socket.socket(fileno=fds[0])
        conn.setblocking(False)
        try:
            seen = _read_spool(fds[1], os.fstat(fds[1]).st_size)
        finally:
            os.close(fds[1])
        if self.per_uid.get(head.uid, 0) >= self.opts.max_connections_per_uid:
            log.warning("refused a slow connection from uid %d (pid %d): %d held "
                        "(daemon.max_connections_per_uid)", head.uid, head.pid, self.per_uid[head.uid])
            _answer(conn, ec.CUSTOM_ERROR, BUSY_TEXT)
            conn.close()
            return
        self._hold_uid(head.uid)
        inc = _Incoming(conn, head.pid, head.uid, head.gid, accepted=head.accepted, received=head.received,
                        deadline=head.accepted + self.opts.timeout)
        inc.req = RequestAssembler(self.opts.max_message_size, keep=False)
        self.incoming[conn.fileno()] = inc
        for at in range(0, len(seen), MASTER_RECV):  # the decoder copies what it is fed: in slices
            if not self._feed(inc, seen[at:at + MASTER_RECV]):
                return
        del seen
        if inc.req.done:
            self._complete(inc)
        else:
            self.sel.register(conn, selectors.EVENT_READ, ("conn", conn.fileno()))

    def _drop(self, inc: _Incoming, answer: tuple[int, str] | None = None) -> None:
        fd = inc.sock.fileno()
        self.incoming.pop(fd, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(inc.sock)
        if answer is not None:
            _answer(inc.sock, *answer)
        inc.sock.close()
        if inc.spool >= 0:
            os.close(inc.spool)
            inc.spool = -1
        self._release_uid(inc.uid)

    def _receive(self, fd: int) -> None:
        inc = self.incoming.get(fd)
        if inc is None:
            return
        try:
            data = inc.sock.recv(MASTER_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("dropping connection from uid %d: %s", inc.uid, exc)
            self._drop(inc)
            return
        if not data:  # the client gave up: nothing was accepted, nothing recorded
            self._drop(inc)
            return
        if self._feed(inc, data):
            assert inc.req is not None
            if inc.req.done:
                self._complete(inc)

    def _feed(self, inc: _Incoming, data: bytes) -> bool:
        """Frames into the spool; False when the connection was dropped."""
        req = inc.req
        assert req is not None
        try:
            for kind, payload in inc.decoder.feed(data):
                if kind == frames.MESSAGE:
                    inc.sha.update(payload)
                    before = req.oversized
                    req.add(kind, payload)
                    if req.oversized:
                        if not before and inc.spool >= 0:  # keep nothing of an oversized message
                            os.ftruncate(inc.spool, 0)
                            os.lseek(inc.spool, 0, os.SEEK_SET)
                            inc.kept = 0
                        continue
                    if inc.spool < 0:
                        inc.spool = _spool()
                    _write_all(inc.spool, payload)
                    inc.kept += len(payload)
                else:
                    req.add(kind, payload)
                    if kind == frames.ENVELOPE:  # after the message in the spool
                        if inc.spool < 0:
                            inc.spool = _spool()
                        _write_all(inc.spool, payload)
            if req.done and inc.decoder.pending:
                raise ProtocolError("bytes after end of request")
        except frames.EnvelopeTooLarge as exc:
            log.warning("refusing a request from uid %d: %s", inc.uid, exc)
            self._drop(inc, (ec.CUSTOM_ERROR, ENVELOPE_TEXT))
            return False
        except ProtocolError as exc:
            log.warning("dropping connection from uid %d: %s", inc.uid, exc)
            self._drop(inc)
            return False
        except OSError as exc:  # the spool: memory or disk
            log.warning("cannot spool a request from uid %d: %s", inc.uid, exc)
            self._drop(inc, (ec.CUSTOM_ERROR, "Zqscan: cannot hold the message, try again later (#4.3.0)"))
            return False
        return True

    def _complete(self, inc: _Incoming) -> None:
        req = inc.req
        assert req is not None and req.envelope is not None
        self.incoming.pop(inc.sock.fileno(), None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(inc.sock)
        self._release_uid(inc.uid)  # no longer slow: it waits for a worker like any request
        if inc.spool < 0:
            inc.spool = _spool()
            _write_all(inc.spool, req.envelope)
        now = time.monotonic()
        wait = client_deadline_seconds(req.attrs, self.opts.client_timeout)
        job = Job(
            size=req.size, kept=inc.kept, envelope=len(req.envelope), attrs=req.attrs,
            sha256=inc.sha.hexdigest(), received=inc.received,
            receive_ms=(now - inc.accepted) * 1000,
            deadline=None if wait is None else now + wait, wait=wait, uid=inc.uid, gid=inc.gid, pid=inc.pid,
        )
        self.ready.append((inc, job))

    def _dispatch(self) -> None:
        """Complete requests onto the job socket, in order, for whichever worker is free first."""
        while self.ready:
            inc, job = self.ready[0]
            try:
                socket.send_fds(self.jobs_out, [job.encode()], [inc.sock.fileno(), inc.spool])
            except (BlockingIOError, InterruptedError):
                break  # full: wait until the workers take some
            except OSError as exc:
                log.warning("cannot queue a request: %s", exc)
                self.ready.popleft()
                _answer(inc.sock, ec.CUSTOM_ERROR, SLOW_TEXT)
                inc.sock.close()
                os.close(inc.spool)
                continue
            self.ready.popleft()
            inc.sock.close()  # the job socket holds it now: if no worker takes it, the client sees EOF
            os.close(inc.spool)
        want = bool(self.ready)
        if want != self._writing:
            if want:
                self.sel.register(self.jobs_out, selectors.EVENT_WRITE, ("jobs", 0))
            else:
                self.sel.unregister(self.jobs_out)
            self._writing = want

    def _expire(self) -> float:
        """Cut off requests past their deadline; the seconds until the next one is due."""
        now = time.monotonic()
        nearest = STATUS_INTERVAL
        for rep in list(self.reports.values()):
            if rep.deadline <= now:
                log.warning("no report from qscan-queue (uid %d) for %s in time", rep.uid, rep.event_id)
                self._reported(rep, None)
            else:
                nearest = min(nearest, rep.deadline - now)
        for inc in list(self.incoming.values()):
            left = inc.deadline - now
            if left <= 0:
                log.warning("request from uid %d (pid %d) not complete after %.0f s (daemon.timeout): "
                            "cut off", inc.uid, inc.pid, self.opts.timeout)
                self._drop(inc, (ec.CUSTOM_ERROR, SLOW_TEXT))
            else:
                nearest = min(nearest, left)
        return max(nearest, 0.001)

    # -- the loop ----------------------------------------------------------------
    def serve(self, ready: Callable[[], object] | None = None,
              tick: Callable[[], object] | None = None) -> int:
        """Serve until SIGTERM; ``ready`` once the socket is bound and the workers forked, ``tick`` on
        every pass of the master loop (qscan.ops.sdnotify: systemd's readiness and watchdog)."""
        _raise_descriptor_limit()
        self.lsock = lsock = bind_socket(self.opts)
        log.info("listening on %s with %d workers", self.opts.socket, self.opts.workers)

        def on_term(signum: int, frame: object) -> None:
            self.stopping = True

        def on_hup(signum: int, frame: object) -> None:
            self.recycle = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        try:
            for _ in range(self.opts.workers):
                self._spawn()
            if ready:
                ready()
            next_status = 0.0
            while not self.stopping:
                if tick:
                    tick()
                if time.monotonic() >= next_status:
                    self._write_status()
                    next_status = time.monotonic() + STATUS_INTERVAL
                if self.recycle and self._reload_ok():  # SIGHUP: fresh workers (they re-read rules)
                    self.recycle = False
                    log.info("SIGHUP: recycling %d workers", len(self.workers))
                    for w in list(self.workers.values()):
                        if not w.leaving:
                            self._retire(w)  # it finishes the message in hand, then leaves
                self._reap()
                self._fill_pool()
                self._dispatch()
                timeout = min(self._expire(), 0.5)
                try:
                    events = self.sel.select(timeout)
                except InterruptedError:
                    continue
                for key, _mask in events:
                    kind, ident = key.data
                    if kind == "conn":
                        self._receive(ident)
                    elif kind == "worker":
                        self._worker_says(ident)
                    elif kind == "report":
                        self._read_report(ident)
                self._dispatch()
        finally:
            self._shutdown(lsock)
        return 0

    def _reload_ok(self) -> bool:
        """Would fresh workers start? If not, keep the ones running (they hold the rules that
        last loaded) rather than replace them with workers that die at start, again and again."""
        if self.preflight is None:
            return True
        try:
            self.preflight()
        except Exception as exc:
            self.recycle = False
            log.error("SIGHUP ignored, the workers keep the configuration they have: %s", exc)
            return False
        return True

    def _shutdown(self, lsock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.opts.socket.unlink()  # new clients now temp-fail at once
        with contextlib.suppress(OSError):
            self.status_path.unlink()  # no status file: no daemon
        lsock.close()
        for inc in list(self.incoming.values()):  # not complete: the sender retries
            self._drop(inc, (ec.CUSTOM_ERROR, SHUTDOWN_TEXT))
        for inc, _job in self.ready:
            _answer(inc.sock, ec.CUSTOM_ERROR, SHUTDOWN_TEXT)
            inc.sock.close()
            os.close(inc.spool)
        self.ready.clear()
        # Every worker finishes the message in hand, then leaves; requests still on the job
        # socket are closed with it (their clients retry).
        for w in list(self.workers.values()):
            self._retire(w)
        deadline = time.monotonic() + self.opts.timeout + 30
        while self.workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                gone = self.workers.pop(pid, None)
                if gone is not None:
                    self._drain(gone)  # the connections it handed over to await their reports
                    self._forget(gone)
            else:
                time.sleep(0.05)
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # reports handed over by the workers as they finished: each until its own deadline
        self._finish_reports(time.monotonic() + self.opts.timeout + 30)
        for rep in list(self.reports.values()):
            self._reported(rep, None)
        self.jobs_out.close()
        self.jobs_in.close()
        self.sel.close()
