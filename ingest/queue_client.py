"""qscan-queue: the program qmail runs as QMAILQUEUE.

The reference client, installed as ``qscan-queue-py``; the installed ``qscan-queue`` is the
native one (ingest/native/qscan_queue.c), which behaves the same in every case: the same
exit codes, fd 6 texts and stderr lines (tests/test_clients.py runs both through one table).

Reads the message from fd 0 and the envelope from fd 1 (in that order, as
qmail-queue does: the writer sends the whole message before the envelope),
streams both with the qmail environment to the scan daemon over a unix socket,
and exits with the daemon's answer. For a message to deliver the answer is the
final message itself (in a memfd): the client runs the real qmail-queue with it,
exits with its exit code and reports that to the daemon (docs/protocol.md). It
never exits 0 unless the daemon said the message was durably handled and, for a
delivery, qmail-queue exited 0. Anything in doubt is a temporary failure, so the
sending MTA retries.

Only the standard library, and only the cheap parts of it: this process is
started once per message. Configuration comes from the environment (qmail
passes its environment through; set them in tcpserver rules or the run script):

    QSCAN_SOCKET   daemon socket (default /run/qscan/qscan.sock)
    QSCAN_QMAIL_QUEUE  the real qmail-queue (default /var/qmail/bin/qmail-queue); never
                   taken from the daemon, which must not choose what a local user's
                   client runs
    QSCAN_TIMEOUT  seconds (default 1200) to wait for the daemon's answer once the whole
                   message is sent: one deadline over every wait for it, not per call. Set
                   the daemon's daemon.client_timeout to the same value: the daemon then
                   never queues a message this client has given up on (docs/deadlines.md).
                   The client sends this value to the daemon, which never queues a
                   message after it (the shorter of it and client_timeout counts).
                   The whole message is read from qmail-smtpd first (at the SMTP client's
                   pace, bounded by qmail-smtpd's own timeout), then sent at once: a slow
                   sender holds nothing of the daemon's. Errors (with errno) go to stderr.
"""

# _socket, not socket: the socket module drags in enum and selectors (~5 ms a start).
import _socket
import os
import stat
import time  # already loaded by the interpreter's start-up: free

from ingest import exitcodes as ec
from ingest.envelope import AddressTooLong, EnvelopeError, EnvelopeTruncated, parse_envelope
from ingest.frames import (
    ATTR,
    END,
    ENVELOPE,
    HANDOFF,
    HELLO,
    MAX_CHUNK,
    MAX_CONTROL,
    MESSAGE,
    PROTOCOL,
    RESULT,
    ProtocolError,
    decode_handoff,
    decode_result,
    encode,
    encode_status,
)

DEFAULT_SOCKET = "/run/qscan/qscan.sock"
DEFAULT_QMAIL_QUEUE = "/var/qmail/bin/qmail-queue"
_ANC_SPACE = _socket.CMSG_SPACE(4 * 4)  # room for a few descriptors: extra ones are closed
DEFAULT_TIMEOUT = 1200.0  # qmail-smtpd's own data timeout; must exceed the daemon's budget
MAX_TIMEOUT = 1e7  # seconds (115 days): larger values, "inf" included, mean this
MAX_VALUE = 1024  # an attribute value of more bytes is not sent (the daemon takes 16 KiB in all)
CHUNK = 256 * 1024
# The codes an R frame may carry (docs/protocol.md); any other is garbage, hence temporary.
RESULT_CODES = frozenset({ec.QUEUED, ec.ADDRESS_TOO_LONG, ec.PERM_REJECT, ec.TEMP_REJECT, ec.INTERNAL_BUG,
                          ec.CUSTOM_ERROR, ec.ENVELOPE_FORMAT})
REPORT_WAIT = 5.0  # seconds for the report of qmail-queue's exit, and for the daemon to record a failure
# The environment qmail-smtpd/tcpserver and the common AUTH patches provide.
PASSED_ENV = (
    "TCPREMOTEIP",
    "TCPREMOTEHOST",
    "TCPREMOTEINFO",
    "TCPREMOTEPORT",
    "TCPLOCALIP",
    "TCPLOCALHOST",
    "TCPLOCALPORT",
    "RELAYCLIENT",
    "SMTPAUTHUSER",
    "SMTP_AUTH_USER",
    "AUTH_USER",
    "SMTPAUTHMETHOD",
    "TLS_PROTOCOL",
    "HELO",
    "SMTPHELO",
)
TEMP_TEXT = "Zqscan: scanner temporarily unavailable, try again later (#4.3.0)"
ENVELOPE_TEXT = "Dqscan: envelope too large (#5.5.3)"
FORMAT_TEXT = "Dqscan: envelope format error (#5.5.4)"


class _Abort(Exception):
    def __init__(self, code: int, text: str | None = None) -> None:
        self.code = code
        self.text = text


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def finish(code: int, text: str | None, fd6_open: bool) -> int:
    """Map (code, text) to what qmail expects, writing custom text to fd 6 when we can."""
    if code == ec.CUSTOM_ERROR or text:
        if text and text[:1] in ("D", "Z"):
            if fd6_open:
                try:
                    os.write(ec.CUSTOM_ERROR_FD, text.encode("utf-8", "surrogateescape")[:1000])
                    return ec.CUSTOM_ERROR
                except OSError:
                    pass
            return ec.PERM_REJECT if text[:1] == "D" else ec.TEMP_REJECT
        if code == ec.CUSTOM_ERROR:  # 82 without usable text: be safe
            return ec.TEMP_REJECT
    return code


def _read_all(fd: int) -> bytes:
    parts: list[bytes] = []
    while True:
        try:
            data = os.read(fd, CHUNK)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        except OSError as exc:
            raise _Abort(ec.READ_ERROR) from exc
        if not data:
            return b"".join(parts)
        parts.append(data)


def _say(text: str) -> None:
    """One line on stderr: qmail-smtpd's goes to its log, so a postmaster learns why."""
    try:
        os.write(2, ("qscan-queue: " + text + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _why(exc: OSError) -> str:
    name = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{name} (errno {exc.errno})" if exc.errno else name


def _connect(path: str, timeout: float) -> "_socket.socket":
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        _say(f"cannot connect to {path}: {_why(exc)} (uid {os.getuid()}, gid {os.getgid()}, "
             f"groups {','.join(map(str, os.getgroups())) or '-'})")
        raise _Abort(ec.TEMP_REJECT, TEMP_TEXT) from exc
    return sock


def _read_message() -> list[bytes]:
    """The whole message, as qmail-smtpd hands it over at the SMTP client's pace.

    Read before the daemon is contacted: a slow sender then holds nothing of the daemon's,
    whose deadline (daemon.timeout) covers a transfer over a local socket, not an SMTP session
    (qmail-smtpd bounds that itself, per read)."""
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(0, CHUNK)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        except OSError as exc:
            raise _Abort(ec.READ_ERROR) from exc
        if not data:
            return chunks
        chunks.append(data)


def _environ_timeout(environ: "os._Environ[str] | dict[str, str]") -> float:
    try:
        timeout = float(environ.get("QSCAN_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    if not timeout > 0:  # also NaN
        timeout = DEFAULT_TIMEOUT
    return min(timeout, MAX_TIMEOUT)  # "forever" (inf, 1e10): what poll() can wait


class _Answer:
    """Reads the daemon's one answer: the first complete frame decides. Descriptors that come
    with it (SCM_RIGHTS) are collected, close-on-exec; only an ``X`` frame may bring one."""

    def __init__(self, sock: "_socket.socket") -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []

    def recv(self) -> bytes:
        data, anc, _flags, _addr = self.sock.recvmsg(65536, _ANC_SPACE, _socket.MSG_CMSG_CLOEXEC)
        for level, kind, cdata in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                whole = len(cdata) - len(cdata) % 4
                self.fds.extend(memoryview(cdata)[:whole].cast("i"))
        return data

    def frame(self) -> tuple[bytes, bytes] | None:
        """The first frame once complete (None: more bytes needed); ProtocolError when it cannot
        be an answer."""
        if len(self.buf) < 5:
            return None
        kind = self.buf[:1]
        if kind not in (RESULT, HANDOFF):
            raise ProtocolError(f"unexpected frame type 0x{self.buf[0]:02x} from the daemon")
        length = int.from_bytes(self.buf[1:5], "big")
        if length > MAX_CONTROL:
            raise ProtocolError(f"answer frame of {length} bytes from the daemon is too large")
        if len(self.buf) - 5 < length:
            return None
        return kind, self.buf[5:5 + length]

    def close_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def _queue(answer: _Answer, payload: bytes, raw_env: bytes, environ: "os._Environ[str] | dict[str, str]"
           ) -> tuple[int, str | None]:
    """The daemon handed the final message over (``X``): run the real qmail-queue with it on
    fd 0 and the envelope on fd 1, tell the daemon what it answered, answer qmail the same."""
    from ingest.qmail_queue import run_qmail_queue_fds  # only on this path: start-up stays cheap

    if len(answer.fds) != 1:
        raise ProtocolError(f"hand-off with {len(answer.fds)} descriptors from the daemon")
    try:
        size, timeout = decode_handoff(payload)
    except ProtocolError as exc:
        raise ProtocolError("bad hand-off from the daemon") from exc
    msg_fd = answer.fds[0]
    st = os.fstat(msg_fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != size:
        raise ProtocolError(f"the hand-off's message is not a regular file of {size} bytes")
    os.lseek(msg_fd, 0, os.SEEK_SET)
    program = environ.get("QSCAN_QMAIL_QUEUE") or DEFAULT_QMAIL_QUEUE
    env_fd = os.memfd_create("qscan-envelope", os.MFD_CLOEXEC)
    try:
        view = memoryview(raw_env)
        while view:
            view = view[os.write(env_fd, view):]
        os.lseek(env_fd, 0, os.SEEK_SET)
        res = run_qmail_queue_fds(program, msg_fd, env_fd, timeout=timeout, env=environ,
                                  errors="surrogateescape")
    finally:
        os.close(env_fd)
        answer.close_fds()
    if res.code == ec.TIMEOUT:
        _say(f"qmail-queue {program} did not finish within {timeout:g} s: killed")
    elif res.errno is not None:
        _say(f"cannot run qmail-queue {program}: {os.strerror(res.errno)} (errno {res.errno})")
    try:
        answer.sock.settimeout(REPORT_WAIT)
        answer.sock.sendall(encode_status(res.code, res.text))
    except OSError as exc:
        _say(f"cannot report qmail-queue's exit to the daemon: {_why(exc)}")
        return res.code, res.text
    if res.code != ec.QUEUED:
        # The daemon closes the connection once message.queue_failed is in the journal: the
        # sender's retry then comes after it. Whatever happens, qmail gets qmail-queue's answer.
        try:
            answer.sock.recv(1)
        except TimeoutError:
            pass
        except OSError as exc:
            _say(f"cannot report qmail-queue's exit to the daemon: {_why(exc)}")
    return res.code, res.text


def run(environ: "os._Environ[str] | dict[str, str]") -> tuple[int, str | None]:
    path = environ.get("QSCAN_SOCKET") or DEFAULT_SOCKET
    timeout = _environ_timeout(environ)
    chunks = _read_message()
    raw_env = _read_all(1)
    # Permanent conditions are answered permanently: the same envelope fails every retry.
    if len(raw_env) > MAX_CHUNK:
        _say(f"envelope of {len(raw_env)} bytes is over {MAX_CHUNK}: refused permanently")
        raise _Abort(ec.CUSTOM_ERROR, ENVELOPE_TEXT)
    try:
        parse_envelope(raw_env)
    except AddressTooLong as exc:
        raise _Abort(ec.ADDRESS_TOO_LONG) from exc
    except EnvelopeTruncated as exc:  # the writer aborted: what qmail-queue answers
        raise _Abort(ec.ENVELOPE_FORMAT) from exc
    except EnvelopeError as exc:
        _say(f"envelope refused permanently: {exc}")
        raise _Abort(ec.CUSTOM_ERROR, FORMAT_TEXT) from exc
    # Everything is framed before connecting: the request follows the connect at once (a
    # worker gives a connection that says nothing for 20 ms to the master).
    head = [encode(HELLO, PROTOCOL)]
    for name in PASSED_ENV:
        value = environ.get(name)
        if value is not None:
            raw = value.encode("utf-8", "surrogateescape")  # the bytes qmail gave us
            if len(raw) <= MAX_VALUE:
                head.append(encode(ATTR, name.encode() + b"=" + raw))
    # How long this client waits once the message is sent: the daemon must not queue a
    # message after the client gave up (the sender would be told 451, then get it twice).
    head.append(encode(ATTR, b"QSCAN_TIMEOUT=%r" % timeout))
    sock = _connect(path, timeout)
    answer = _Answer(sock)
    try:
        try:
            try:
                sock.sendall(b"".join(head))
                for data in chunks:
                    sock.sendall(encode(MESSAGE, data))
                chunks.clear()
                sock.sendall(encode(ENVELOPE, raw_env) + encode(END))
            except TimeoutError:
                _say(f"no answer from the daemon within QSCAN_TIMEOUT ({timeout:g} s)")
                raise _Abort(ec.TEMP_REJECT, TEMP_TEXT) from None
            except OSError:
                # The daemon may have answered before reading it all (refused peer, envelope too
                # large) and closed: its answer is still there to read.
                sock.settimeout(1.0)
                got = None
                try:
                    answer.buf = answer.recv()
                    got = answer.frame()
                except (OSError, ProtocolError):
                    pass  # nothing to read: the send error is what happened
                if got is not None and got[0] == RESULT and not answer.fds:
                    return _result(got[1])
                raise
            deadline = time.monotonic() + timeout  # the daemon's clock starts now too
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    _say(f"no answer from the daemon within QSCAN_TIMEOUT ({timeout:g} s)")
                    raise _Abort(ec.TEMP_REJECT, TEMP_TEXT)
                sock.settimeout(left)
                try:
                    data = answer.recv()
                except TimeoutError:
                    continue
                if not data:
                    _say("the daemon closed the connection without an answer")
                    raise _Abort(ec.TEMP_REJECT, TEMP_TEXT)
                answer.buf += data
                got = answer.frame()
                if got is None:
                    continue
                kind, payload = got
                if kind == HANDOFF:
                    return _queue(answer, payload, raw_env, environ)
                if answer.fds:
                    raise ProtocolError("descriptor from the daemon without a hand-off")
                return _result(payload)
        except (OSError, ProtocolError) as exc:
            _say(f"talking to the daemon failed: {_why(exc) if isinstance(exc, OSError) else exc}")
            raise _Abort(ec.TEMP_REJECT, TEMP_TEXT) from exc
    finally:
        answer.close_fds()
        sock.close()


def _result(payload: bytes) -> tuple[int, str | None]:
    try:
        code, text = decode_result(payload, "surrogateescape")
    except ProtocolError as exc:
        raise ProtocolError("bad result from the daemon") from exc
    if code not in RESULT_CODES:
        raise ProtocolError("bad result from the daemon")
    return code, text


def main() -> None:
    fd6 = _fd_open(ec.CUSTOM_ERROR_FD)
    try:
        code, text = run(os.environ)
    except _Abort as abort:
        code, text = abort.code, abort.text
    except Exception as exc:  # an internal bug must still never look like success
        _say(f"internal error: {type(exc).__name__}: {exc}")
        code, text = ec.INTERNAL_BUG, None
    os._exit(finish(code, text, fd6))


if __name__ == "__main__":
    main()
