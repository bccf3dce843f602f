"""qscan-queue: the program qmail runs as QMAILQUEUE.

Reads the message from fd 0 and the envelope from fd 1 (in that order, as
qmail-queue does: the writer sends the whole message before the envelope),
streams both with the qmail environment to the scan daemon over a unix socket,
and exits with the daemon's answer. It never exits 0 unless the daemon said the
message was durably handled. Anything in doubt is a temporary failure, so the
sending MTA retries.

Only the standard library, and only the cheap parts of it: this process is
started once per message. Configuration comes from the environment (qmail
passes its environment through; set them in tcpserver rules or the run script):

    QSCAN_SOCKET   daemon socket (default /run/qscan/qscan.sock)
    QSCAN_TIMEOUT  seconds (default 1200) to wait for the daemon's answer once the whole
                   message is sent: one deadline over every wait for it, not per call. Set
                   the daemon's daemon.client_timeout to the same value: the daemon then
                   never queues a message this client has given up on (docs/deadlines.md).
                   While the message is streamed it also bounds each send to the daemon;
                   the streaming itself is paced by qmail-smtpd (its own per-read timeout),
                   so a slow sender is not cut short.
"""

# _socket, not socket: the socket module drags in enum and selectors (~5 ms a start).
import _socket
import os
import time  # already loaded by the interpreter's start-up: free

from ingest import exitcodes as ec
from ingest.envelope import AddressTooLong, EnvelopeError, parse_envelope
from ingest.frames import (
    ATTR,
    END,
    ENVELOPE,
    HELLO,
    MESSAGE,
    PROTOCOL,
    RESULT,
    FrameDecoder,
    ProtocolError,
    decode_result,
    encode,
)

DEFAULT_SOCKET = "/run/qscan/qscan.sock"
DEFAULT_TIMEOUT = 1200.0  # qmail-smtpd's own data timeout; must exceed the daemon's budget
CHUNK = 256 * 1024
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
                    os.write(ec.CUSTOM_ERROR_FD, text.encode("utf-8", "replace")[:1000])
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


def _connect(path: str, timeout: float) -> "_socket.socket":
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise _Abort(ec.TEMP_REJECT, TEMP_TEXT) from exc
    return sock


def run(environ: "os._Environ[str] | dict[str, str]") -> tuple[int, str | None]:
    path = environ.get("QSCAN_SOCKET") or DEFAULT_SOCKET
    try:
        timeout = float(environ.get("QSCAN_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = DEFAULT_TIMEOUT
    sock = _connect(path, timeout)
    try:
        head = [encode(HELLO, PROTOCOL)]
        for name in PASSED_ENV:
            value = environ.get(name)
            if value is not None:
                head.append(encode(ATTR, (name + "=" + value).encode("utf-8", "surrogateescape")))
        try:
            sock.sendall(b"".join(head))
            # Stream the message as it arrives: big messages never sit whole in this process.
            while True:
                try:
                    data = os.read(0, CHUNK)
                except InterruptedError:  # pragma: no cover
                    continue
                except OSError as exc:
                    raise _Abort(ec.READ_ERROR) from exc
                if not data:
                    break
                sock.sendall(encode(MESSAGE, data))
        except OSError as exc:  # daemon went away or timed out
            raise _Abort(ec.TEMP_REJECT, TEMP_TEXT) from exc
        raw_env = _read_all(1)
        try:
            parse_envelope(raw_env)
        except AddressTooLong as exc:
            raise _Abort(ec.ADDRESS_TOO_LONG) from exc
        except EnvelopeError as exc:
            raise _Abort(ec.ENVELOPE_FORMAT) from exc
        try:
            sock.sendall(encode(ENVELOPE, raw_env) + encode(END))
            deadline = time.monotonic() + timeout  # the daemon's clock starts now too
            decoder = FrameDecoder()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _Abort(ec.TEMP_REJECT, TEMP_TEXT)
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    raise _Abort(ec.TEMP_REJECT, TEMP_TEXT)
                for kind, payload in decoder.feed(data):
                    if kind == RESULT:
                        return decode_result(payload)
                    raise ProtocolError("unexpected frame from daemon")
        except (OSError, ProtocolError) as exc:
            raise _Abort(ec.TEMP_REJECT, TEMP_TEXT) from exc
    finally:
        sock.close()


def main() -> None:
    fd6 = _fd_open(ec.CUSTOM_ERROR_FD)
    try:
        code, text = run(os.environ)
    except _Abort as abort:
        code, text = abort.code, abort.text
    except Exception:  # an internal bug must still never look like success
        code, text = ec.INTERNAL_BUG, None
    os._exit(finish(code, text, fd6))


if __name__ == "__main__":
    main()
