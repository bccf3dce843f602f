"""The scan daemon: a pre-forked pool of workers accepting on one unix socket.

Why pre-fork: each worker keeps its warm state (parser, scanners, journal
connection) and runs Python on its own core; a crash or leak in one message
costs one worker, which the master replaces. Workers are recycled after
``max_messages_per_worker`` messages, and right after any message of at least
``recycle_after_bytes`` (its heap stays grown otherwise: freed arenas are not
given back to the OS). SIGTERM makes every worker finish the
message in hand, then exit; the master waits for them and removes the socket.
SIGHUP replaces every worker the same gentle way (new rules, new databases).
"""

from __future__ import annotations

import contextlib
import gc
import grp
import hashlib
import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ingest import frames
from ingest.frames import FrameDecoder, ProtocolError, RequestAssembler
from ingest.processor import Outcome, Processor, Request
from ingest.scoreboard import Scoreboard, status_document, status_path, write_status

log = logging.getLogger(__name__)

# Called in a worker after each answered message, once the client has its answer and the
# connection is closed (metrics: qscan/metrics.py). It must be cheap and must not raise.
Observer = Callable[[Processor, Outcome], None]
STATUS_INTERVAL = 1.0  # seconds between rewrites of the status file


@dataclass
class DaemonOptions:
    socket_path: Path
    socket_mode: int = 0o660
    socket_group: str | None = None
    workers: int = 4
    max_messages_per_worker: int = 1000
    # A worker exits (and is replaced) after answering a message at least this big; 0: never.
    recycle_after_bytes: int = 8 * 1024 * 1024
    max_message_size: int = 50 * 1024 * 1024
    timeout: float = 300.0
    # qscan-queue's QSCAN_TIMEOUT: how long after sending the whole message it waits for the
    # answer. The clock starts here when the request is complete; None disables the deadline.
    client_timeout: float | None = 1200.0


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


class AlreadyRunning(RuntimeError):
    pass


def bind_socket(opts: DaemonOptions) -> socket.socket:
    path = opts.socket_path
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


class Worker:
    def __init__(self, lsock: socket.socket, opts: DaemonOptions, processor: Processor,
                 board: Scoreboard | None = None, slot: int | None = None,
                 observe: Observer | None = None) -> None:
        self.lsock = lsock
        self.opts = opts
        self.processor = processor
        self.stop = False
        self.parent = os.getppid()
        self.board = board if slot is not None else None
        self.slot = slot if slot is not None else 0
        self.observe = observe
        self.received = 0  # bytes of the message in hand (or last handled)
        if self.board is not None:
            self.board.assign(self.slot, os.getpid())

    def run(self) -> None:
        def on_term(signum: int, frame: object) -> None:
            self.stop = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # Everything alive now (modules, schemas, scanner state) lives as long as the worker:
        # out of the collector's sight, a full collection walks only what messages left
        # behind (it walked the whole heap: pauses of up to ~100 ms in the middle of a message).
        gc.collect()  # once, before the first message: garbage is not frozen with the rest
        gc.freeze()
        handled = 0
        big = False  # the last message was big: leave so that the master forks a fresh worker
        # EPOLLEXCLUSIVE: a new connection wakes one idle worker, not all of them (each of the
        # others would wake, fail to accept and go back to sleep: a few syscalls per message).
        waiter = select.epoll()
        waiter.register(self.lsock.fileno(), select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0))
        while not self.stop and not big and handled < self.opts.max_messages_per_worker:
            if os.getppid() != self.parent:  # master died: stop taking new work
                break
            try:
                ready = waiter.poll(1.0)
            except InterruptedError:
                continue
            if not ready:
                continue
            try:
                conn, _ = self.lsock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another worker took it
            except OSError:
                log.exception("accept failed")
                time.sleep(0.1)
                continue
            if self.board is not None:
                self.board.set_busy(self.slot, handled)
            outcome = None
            try:
                outcome = self.handle(conn)
            except Exception:
                log.exception("connection handler failed")
            finally:
                conn.close()
            handled += 1
            if self.board is not None:
                self.board.set_idle(self.slot, handled)
            if outcome is not None and self.observe is not None:
                try:
                    self.observe(self.processor, outcome)
                except Exception:
                    log.debug("observer failed", exc_info=True)
            # Its event holds the whole message (raw_message): let it go now, not when the next
            # message arrives, so an idle worker does not sit on the last big one.
            outcome = None
            limit = self.opts.recycle_after_bytes
            if limit and self.received >= limit:
                big = True
                log.info("worker %d recycled after a %d-byte message (recycle_after_bytes %d)",
                         os.getpid(), self.received, limit)
        waiter.close()

    def handle(self, conn: socket.socket) -> Outcome | None:
        conn.setblocking(True)
        conn.settimeout(self.opts.timeout)
        start = time.time()
        t0 = time.perf_counter()
        decoder = FrameDecoder()
        req = RequestAssembler(self.opts.max_message_size)
        sha = hashlib.sha256()
        try:
            while not req.done:
                data = conn.recv(1 << 20)
                if not data:
                    return None  # client gave up: nothing was accepted, nothing recorded
                for kind, payload in decoder.feed(data):
                    if kind == frames.MESSAGE:
                        sha.update(payload)
                    req.add(kind, payload)
            if decoder.pending:
                raise ProtocolError("bytes after end of request")
        except (OSError, ProtocolError) as exc:
            log.warning("dropping connection: %s", exc)
            return None
        finally:
            self.received = req.size
        assert req.envelope is not None
        done = time.monotonic()
        # Non-blocking from here: the liveness peek must not wait (a socket with a timeout polls
        # before every recv), and the answer is one small frame into an empty send buffer.
        conn.setblocking(False)
        request = Request(
            message=req.message(), envelope=req.envelope, attrs=req.attrs, size=req.size,
            sha256=sha.hexdigest(), received=start, receive_ms=(time.perf_counter() - t0) * 1000,
            client_deadline=None if self.opts.client_timeout is None else done + self.opts.client_timeout,
            client_alive=lambda: client_connected(conn),
        )
        outcome = self.processor.process(request)
        try:
            conn.sendall(frames.encode_result(outcome.code, outcome.text))
        except OSError:
            log.warning("client went away before the answer (%s)", outcome.code)
        return outcome


class Daemon:
    """The master process: binds, forks, replaces dead workers, shuts down cleanly."""

    def __init__(self, opts: DaemonOptions, make_processor: Callable[[], Processor],
                 observe: Observer | None = None) -> None:
        self.opts = opts
        self.make_processor = make_processor
        self.observe = observe
        self.children: dict[int, float] = {}
        self.stopping = False
        self.recycle = False
        self.board = Scoreboard(opts.workers)  # before any fork: shared with every worker
        self.slots: dict[int, int] = {}  # worker pid -> scoreboard slot
        self.status_path = status_path(opts.socket_path)
        self.started = time.time()

    def _write_status(self) -> None:
        try:
            write_status(self.status_path, status_document(
                self.board, socket_path=self.opts.socket_path, started=self.started,
                configured_workers=self.opts.workers))
        except OSError as exc:  # status is for operators; mail flows without it
            log.warning("cannot write %s: %s", self.status_path, exc)

    def _spawn(self, lsock: socket.socket) -> None:
        slot = self.board.claim()
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                Worker(lsock, self.opts, self.make_processor(), self.board, slot, self.observe).run()
            except BaseException:
                log.exception("worker crashed")
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()
        if slot is not None:
            self.slots[pid] = slot

    def serve(self, ready: Callable[[], None] | None = None) -> int:
        lsock = bind_socket(self.opts)
        log.info("listening on %s with %d workers", self.opts.socket_path, self.opts.workers)

        def on_term(signum: int, frame: object) -> None:
            self.stopping = True

        def on_hup(signum: int, frame: object) -> None:
            self.recycle = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        try:
            for _ in range(self.opts.workers):
                self._spawn(lsock)
            if ready:
                ready()
            backoff = 0.0
            next_status = 0.0
            while not self.stopping:
                if time.monotonic() >= next_status:
                    self._write_status()
                    next_status = time.monotonic() + STATUS_INTERVAL
                if self.recycle:  # SIGHUP: fresh workers (they re-read rules and databases)
                    self.recycle = False
                    log.info("SIGHUP: recycling %d workers", len(self.children))
                    for pid in list(self.children):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGTERM)
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    pid, status = 0, 0
                if pid == 0:
                    time.sleep(0.2)
                    continue
                started = self.children.pop(pid, None)
                if started is None:
                    continue
                if pid in self.slots:
                    self.board.release(self.slots.pop(pid))
                code = os.waitstatus_to_exitcode(status)
                if code != 0:
                    log.warning("worker %d exited with %d; replacing it", pid, code)
                    # a worker that dies at once, repeatedly, must not spin the CPU
                    backoff = min(5.0, backoff * 2 or 0.1) if time.monotonic() - started < 1 else 0.0
                    time.sleep(backoff)
                if not self.stopping:
                    self._spawn(lsock)
        finally:
            self._shutdown(lsock)
        return 0

    def _shutdown(self, lsock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.opts.socket_path.unlink()  # new clients now temp-fail at once
        with contextlib.suppress(OSError):
            self.status_path.unlink()  # no status file: no daemon
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.opts.timeout + 30
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.children.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        lsock.close()
