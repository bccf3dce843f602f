"""The clamd scanner against a real clamd (Debian clamav-daemon) with a signature DB the tests write."""

from __future__ import annotations

import binascii
import io
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.envelope import build_envelope
from ingest.event import MessageScanned, from_json
from ingest.journal import Journal
from ingest.mime import walk_parts
from ingest.processor import Processor, ProcessorOptions, ProcessorSettings, make_request
from qscan.testing.daemon import running_daemon
from qscan.testing.servers import EICAR, HDB_NAME, NDB_MARKER, NDB_NAME, Server, binary, clamd_server
from qscan.testing.standin import write_standin
from scanners.base import ScanContext
from scanners.clamd import ClamdScanner, ClamdSettings
from scanners.mime.parse import parse
from scanners.result import Disposition, Verdict
from tests.conftest import require

pytestmark = pytest.mark.integration

HDB = HDB_NAME + ".UNOFFICIAL"  # clamd marks signatures outside its official databases
NDB = NDB_NAME + ".UNOFFICIAL"


@pytest.fixture(scope="module")
def clamd() -> Iterator[Server]:
    require("clamd (Debian clamav-daemon)", binary("clamd") is not None)
    with clamd_server(stream_max="1M") as server:
        yield server


def scanner(server: Server, **kw: object) -> ClamdScanner:
    opts = {"socket": server.socket, "timeout": 10.0, "connect_timeout": 2.0, **kw}
    return ClamdScanner(ClamdSettings(**opts))  # type: ignore[arg-type]


def context(raw: bytes) -> ScanContext:
    msg = parse(raw)
    _, parts, _ = walk_parts(msg)
    return ScanContext(raw=raw, message=msg, parts=parts, sender="a@example.com",
                       recipients=["b@example.org"], client_ip="192.0.2.1", relay=False,
                       size=len(raw), max_size=10**8)


def with_attachment(data: bytes, filename: str, mtype: str = "application/octet-stream") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.org", "see attached"
    msg.set_content("Please find the file attached.\n")
    maintype, subtype = mtype.split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def zipped(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return buf.getvalue()


def uuencoded(data: bytes, name: str = "eicar.com") -> bytes:
    lines = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    return f"begin 644 {name}\n".encode() + lines + b"`\nend\n"


PLAIN = (  # a 7bit attachment part: the EICAR text as it is, no transfer encoding
    b"From: a@example.com\nTo: b@example.org\nSubject: plain\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\nhello\n'
    b'--b1\nContent-Type: application/octet-stream; name="eicar.com"\n'
    b'Content-Disposition: attachment; filename="eicar.com"\n\n' + EICAR + b"\n--b1--\n"
)
UU_PART = (  # Content-Transfer-Encoding: x-uuencode: Python decodes it into the part
    b"From: a@example.com\nTo: b@example.org\nSubject: uu part\nMIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\nhello\n'
    b'--b1\nContent-Type: application/octet-stream; name="eicar.com"\nContent-Transfer-Encoding: x-uuencode\n\n'
    + uuencoded(EICAR) + b"--b1--\n"
)
UU_INLINE = (  # an old mailer's uuencoded block inside the text: no MIME part holds the file
    b"From: a@example.com\nTo: b@example.org\nSubject: uu inline\n\nThe file follows.\n\n" + uuencoded(EICAR)
)
CLEAN = with_attachment(b"%PDF-1.4\nnothing to see\n%%EOF\n", "report.pdf", "application/pdf")


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (PLAIN, "part 2"),
        (with_attachment(EICAR, "eicar.com"), "part 2"),  # base64
        (with_attachment(zipped("eicar.com", EICAR), "eicar.zip", "application/zip"), "part 2"),
        (with_attachment(zipped("inner.zip", zipped("eicar.com", EICAR)), "outer.zip", "application/zip"),
         "part 2"),
        (UU_PART, "part 2"),
    ],
    ids=["plain", "base64", "zipped", "nested-zipped", "uuencoded-part"],
)
def test_eicar_is_found_in_each_form(clamd: Server, raw: bytes, where: str) -> None:
    [r] = scanner(clamd).scan(context(raw))
    assert (r.verdict, r.name, r.detail, r.disposition) == (Verdict.VIRUS, HDB, where, Disposition.QUARANTINE)
    assert r.error is None and r.version.startswith("1.")


def test_inline_uuencode_needs_the_redundant_raw_scan(clamd: Server) -> None:
    [missed] = scanner(clamd).scan(context(UU_INLINE))
    assert missed.verdict == Verdict.CLEAN and missed.detail == "1 objects scanned"
    [found] = scanner(clamd, redundant=True).scan(context(UU_INLINE))
    assert (found.verdict, found.name, found.detail) == (Verdict.VIRUS, HDB, "message")


def test_custom_ndb_body_signature_over_tcp(clamd: Server) -> None:
    raw = b"From: a@example.com\nSubject: marker\n\nsome text " + NDB_MARKER + b" more text\n"
    tcp = ClamdScanner(ClamdSettings(socket=None, host="127.0.0.1", port=clamd.port, timeout=10))
    [r] = tcp.scan(context(raw))
    assert (r.verdict, r.name) == (Verdict.VIRUS, NDB)


def test_clean_mail_is_recorded_as_scanned_with_the_version(clamd: Server) -> None:
    s = scanner(clamd, redundant=True, action="reject")
    [r] = s.scan(context(CLEAN))
    assert r.verdict == Verdict.CLEAN and r.error is None and r.detail == "3 objects scanned"
    assert s.version == r.version and s.version.startswith("1.")  # zVERSION: "ClamAV 1.4.6" -> 1.4.6
    [hit] = s.scan(context(PLAIN))
    assert hit.disposition == Disposition.REJECT and hit.reply == f"Dmessage contains a virus ({HDB}) (#5.7.1)"


def test_size_limits(clamd: Server) -> None:
    big = with_attachment(b"x" * 1_500_000, "big.bin")  # clamd's StreamMaxLength is 1M here
    # over our own limit: not sent at all; recorded as not scanned, passes by default
    [r1, r2] = scanner(clamd, max_stream_size=1_000_000).scan(context(big))
    assert r1.name == "size-limit" and r1.error and "not scanned" in r1.error
    assert r1.disposition == Disposition.NONE and r2.detail == "1 objects scanned"
    # under ours but over clamd's: clamd's "INSTREAM size limit exceeded" reply is read
    [r1, _] = scanner(clamd, max_stream_size=10_000_000, size_limit_policy="tempfail").scan(context(big))
    assert r1.name == "size-limit" and "size limit exceeded" in (r1.error or "")
    assert r1.disposition == Disposition.TEMPFAIL and (r1.reply or "").startswith("Z")


def test_clamd_stopped_mid_run_applies_the_failure_policy(tmp_path: Path) -> None:
    require("clamd (Debian clamav-daemon)", binary("clamd") is not None)
    with clamd_server() as own:
        tempfail, passing = scanner(own), scanner(own, failure_policy="pass")
        assert tempfail.scan(context(PLAIN))[0].verdict == Verdict.VIRUS
        own.stop()
        [r] = tempfail.scan(context(PLAIN))
        assert r.error and r.verdict == Verdict.CLEAN and r.disposition == Disposition.TEMPFAIL
        assert r.reply == "Zvirus scanner unavailable, try again later (#4.3.0)"
        [r] = passing.scan(context(PLAIN))
        assert r.error and r.disposition == Disposition.NONE and r.name == "scan-failed"
        # through the processor: passed on, but the event and the header say clamd did not scan
        standin = write_standin(tmp_path / "qq", tmp_path / "rec")
        proc = Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)),
                         Journal(tmp_path / "j.db"), [passing])
        ev = proc.process(make_request(CLEAN, build_envelope(b"a@example.com", [b"b@example.org"]))).event
        assert ev is not None and ev.action == "deliver" and ev.findings[0].error
        assert f"clamd: {passing.version} FAILED." in " ".join(ev.added_headers).replace("\n\t", " ")


def test_a_hung_clamd_times_out() -> None:
    with tempfile.TemporaryDirectory(prefix="qshang") as d, socket.socket(socket.AF_UNIX) as hung:
        hung.bind(f"{d}/hung.sock")
        hung.listen(8)  # accepts (backlog) but never answers
        s = ClamdScanner(ClamdSettings(socket=f"{d}/hung.sock", timeout=0.5))
        t0 = time.monotonic()
        [r] = s.scan(context(PLAIN))
        assert time.monotonic() - t0 < 3
        assert r.disposition == Disposition.TEMPFAIL and "Timeout" in (r.error or "")


def test_processor_classes_virus_and_names_clamd_in_the_diagnostics(clamd: Server, tmp_path: Path) -> None:
    standin = write_standin(tmp_path / "qq", tmp_path / "rec")
    journal = Journal(tmp_path / "j.db")
    proc = Processor(ProcessorOptions(hostname="mx.example", settings=ProcessorSettings(qmail_queue=standin)), journal, [scanner(clamd)])
    out = proc.process(make_request(PLAIN, build_envelope(b"a@example.com", [b"b@example.org"])))
    assert out.code == 0 and out.event is not None
    ev = out.event
    assert (ev.category, ev.action, ev.reason, ev.quarantine_folder) == ("virus", "quarantine", HDB, "viruses")
    [diag] = [h for h in ev.added_headers if h.startswith("X-Qmail-Scanner-Diagnostics")]
    assert "clamd: 1." in diag.replace("\n\t", " ") and "Virus:RC:0" in diag.replace("\n\t", " ")


def test_end_to_end_through_the_daemon(clamd: Server, tmp_path: Path) -> None:
    extra = f'[scanners]\nenabled = ["size", "clamd"]\n[clamd]\nsocket = "{clamd.socket}"\ntimeout = 10\n'
    with running_daemon(tmp_path, extra=extra) as h:
        assert h.send(PLAIN).code == 0  # quarantined mail is accepted: it is durable in the journal
        assert h.send(CLEAN).code == 0
        assert len(h.recorded()) == 1  # only the clean one reached qmail-queue
    with Journal(h.journal) as j:
        events = [e for e in (from_json(x.body, x.raw) for x in j.read(0)) if isinstance(e, MessageScanned)]
    virus, clean = events
    assert (virus.category, virus.action, virus.quarantine_folder) == ("virus", "quarantine", "viruses")
    assert [(f.scanner, f.name) for f in virus.findings] == [("clamd", HDB)]
    diag = " ".join(virus.added_headers).replace("\t", " ")
    assert "X-Qmail-Scanner-Diagnostics:" in diag and "clamd: 1." in diag
    assert clean.category == "clean" and clean.findings[0].detail == "2 objects scanned"
    # the archive consumer files it under quarantine/viruses
    subprocess.run([sys.executable, "-m", "qscan", "-c", str(h.config), "consume", "archive", "--once"],
                   check=True, capture_output=True, timeout=60)
    [quarantined] = list((tmp_path / "quarantine" / "viruses" / "new").iterdir())
    assert EICAR in quarantined.read_bytes() and b"X-Qmail-Scanner-Diagnostics:" in quarantined.read_bytes()
