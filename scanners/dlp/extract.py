"""The text DLP looks at: bodies, configured headers and attachments, within size and time bounds.

Bodies: text/plain as decoded by its charset, text/html converted to text (the
stdlib HTML parser: tags dropped, block elements become line breaks, scripts and
styles skipped). Attachments: text/csv/html and other text types, PDF (pypdf),
DOCX/XLSX/PPTX and OpenDocument (their XML, parsed by defusedxml, which refuses
entity tricks), attached messages, and all of those inside archives (zip, 7z,
rar, tar, gz/bz2/xz, cab, iso, TNEF), unpacked in memory with the internal
scanner's bounded unpacker (``scanners.internal.unpack``) under DLP's own budget.

The internal scanner keeps complete bytes only of members that are themselves
containers (it needs no more for its checks), so DLP unpacks archives once more
for the members it reads; the same code and the same kinds of limits apply. The
retro-hunt has no internal scanner run before it and needs this path anyway.

S/MIME-encrypted parts (application/pkcs7-mime enveloped data) and PGP-encrypted
parts (multipart/encrypted, ``-----BEGIN PGP MESSAGE-----``) cannot be read: they
are listed in ``encrypted`` so rules can allow such mail with a record.

Every bound hit is recorded in ``notes``; scanning goes on with what was read.
"""

from __future__ import annotations

import io
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.header import decode_header
from email.message import Message
from html.parser import HTMLParser
from typing import Any

from ingest.mime import parse as parse_mime
from ingest.mime import part_children, part_filename, part_payload
from scanners.base import ScanPart
from scanners.internal.filetype import container_kind
from scanners.internal.unpack import (
    Budget,
    Member,
    UnpackLimits,
    UnpackStop,
    archive_members,
    has_uuencode,
    tnef_members,
    uu_members,
)

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MAX_LEAVES = 1000
MAX_NESTING = 20
_PGP_BLOCK = re.compile(r"-----BEGIN PGP MESSAGE-----.*?(?:-----END PGP MESSAGE-----|\Z)", re.S)
_TEXT_EXTENSIONS = frozenset({
    "txt", "csv", "tsv", "text", "log", "md", "json", "xml", "ini", "cfg", "conf", "yaml", "yml",
    "sql", "vcf", "ics", "rtf", "eml",
})
_HTML_EXTENSIONS = frozenset({"htm", "html", "xhtml"})
_OOXML = {"docx": "docx", "docm": "docx", "dotx": "docx", "xlsx": "xlsx", "xlsm": "xlsx",
          "xltx": "xlsx", "pptx": "pptx", "pptm": "pptx", "ppsx": "pptx"}
_ODF = frozenset({"odt", "ods", "odp", "ott", "ots", "otp"})


@dataclass(frozen=True)
class ExtractLimits:
    """Per message. Every limit reached is noted and the scan goes on with what was read."""

    max_part_size: int = 25 * MiB  # attachments (and members) bigger than this are not read
    max_text: int = 4_000_000  # characters of text examined per message
    max_time: float = 5.0  # seconds of extraction per message
    max_pdf_pages: int = 200
    max_xml_bytes: int = 20 * MiB  # uncompressed XML read from one office document
    unpack: UnpackLimits = field(default_factory=lambda: UnpackLimits(
        max_depth=5, max_members=500, max_total_bytes=100 * MiB, max_ratio=100.0, max_time=5.0))


@dataclass(frozen=True, slots=True)
class Segment:
    location: str  # '1', 'header:Subject', '2/report.pdf', '2/files.zip!/data/cards.csv'
    text: str


@dataclass
class Extraction:
    segments: list[Segment] = field(default_factory=list)
    encrypted: list[str] = field(default_factory=list)  # S/MIME or PGP encrypted content
    notes: list[str] = field(default_factory=list)  # limits reached, unreadable documents
    chars: int = 0

    @property
    def truncated(self) -> bool:
        return any(n.startswith("limit:") for n in self.notes)


class _OutOfTime(Exception):
    pass


# -- pure converters ---------------------------------------------------------------------------
_BLOCK_TAGS = frozenset({
    "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
    "blockquote", "pre", "section", "article", "header", "footer", "hr", "dt", "dd", "address",
})
_CELL_TAGS = frozenset({"td", "th"})
_SKIP_TAGS = frozenset({"script", "style", "head", "template", "noscript"})


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.out.append("\n")
        elif tag in _CELL_TAGS:
            self.out.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    """Readable text of an HTML document: what a person sees, not the markup."""
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # the stdlib parser is lenient; keep whatever it produced
        pass
    text = "".join(parser.out)
    text = re.sub(r"[ \t\r\f\v]*\n[ \t\r\f\v\n]*", "\n", text)
    return re.sub(r"[ \xa0]{2,}", " ", text).strip()


def decode_text(data: bytes, charset: str | None) -> str:
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return data.decode(cs)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")  # never fails: every byte is a character


def _xml_root(data: bytes) -> Any:
    import defusedxml.ElementTree as DET

    return DET.fromstring(data, forbid_dtd=True)


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _paragraphs(root: Any, para: str, run: str) -> list[str]:
    """Text of every ``para`` element, made of its ``run`` elements (w:p/w:t, a:p/a:t)."""
    out = []
    for p in root.iter():
        if _local(p.tag) != para:
            continue
        text = "".join(t.text or "" for t in p.iter() if _local(t.tag) == run)
        if text:
            out.append(text)
    return out


def _sheet_rows(root: Any, shared: list[str]) -> list[str]:
    rows = []
    for row in root.iter():
        if _local(row.tag) != "row":
            continue
        cells = []
        for c in row:
            if _local(c.tag) != "c":
                continue
            kind = c.get("t")
            value = ""
            for child in c.iter():
                name = _local(child.tag)
                if name == "v" and child.text:
                    value = child.text
                elif name == "t" and child.text and kind == "inlineStr":
                    value += child.text
            if kind == "s":
                try:
                    value = shared[int(value)]
                except (ValueError, IndexError):
                    value = ""
            cells.append(value)
        if any(cells):
            rows.append("\t".join(cells))
    return rows


def office_text(data: bytes, kind: str, max_xml_bytes: int) -> str:
    """Text of a DOCX/XLSX/PPTX (``kind``) or OpenDocument ('odf') file from its XML parts.
    Raises ValueError when the file is not a readable document."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"not a zip container: {exc}") from None
    budget = [max_xml_bytes]

    def read(name: str) -> bytes | None:
        try:
            info = zf.getinfo(name)
        except KeyError:
            return None
        if info.flag_bits & 0x1:
            raise ValueError("encrypted document")
        if info.file_size > budget[0]:
            raise ValueError(f"{name}: more XML than max_xml_bytes")
        with zf.open(info) as fh:
            blob = fh.read(budget[0] + 1)
        budget[0] -= len(blob)
        if budget[0] < 0:
            raise ValueError(f"{name}: more XML than max_xml_bytes")
        return blob

    def parse(name: str) -> Any:
        blob = read(name)
        return None if blob is None else _xml_root(blob)

    names = sorted(zf.namelist())
    out: list[str] = []
    try:
        if kind == "docx":
            parts = [n for n in names if re.fullmatch(
                r"word/(document|header\d*|footer\d*|footnotes|endnotes|comments)\.xml", n)]
            for n in parts:
                out.extend(_paragraphs(parse(n), "p", "t"))
        elif kind == "pptx":
            slide = r"ppt/(slides/slide|notesSlides/notesSlide)\d+\.xml"
            parts = [n for n in names if re.fullmatch(slide, n)]
            parts.sort(key=lambda n: (n.startswith("ppt/notes"), int(re.sub(r"\D", "", n) or 0)))
            for n in parts:
                out.extend(_paragraphs(parse(n), "p", "t"))
        elif kind == "xlsx":
            shared_root = parse("xl/sharedStrings.xml")
            shared = [] if shared_root is None else [
                "".join(t.text or "" for t in si.iter() if _local(t.tag) == "t")
                for si in shared_root if _local(si.tag) == "si"]
            sheets = [n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n)]
            sheets.sort(key=lambda n: int(re.sub(r"\D", "", n) or 0))
            for n in sheets:
                out.extend(_sheet_rows(parse(n), shared))
        else:
            root = parse("content.xml")
            if root is None:
                raise ValueError("no content.xml")
            for el in root.iter():
                if _local(el.tag) in ("p", "h"):
                    text = "".join(el.itertext())
                    if text:
                        out.append(text)
    except zipfile.BadZipFile as exc:
        raise ValueError(str(exc)) from None
    except ValueError:
        raise
    except Exception as exc:  # defusedxml refusals, XML syntax errors, decompression errors
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return "\n".join(out)


def pdf_text(data: bytes, max_pages: int, deadline: float) -> tuple[str, str | None]:
    """(text, note): the text layer of up to ``max_pages`` pages; raises ValueError if unreadable.
    Scanned images have no text layer: nothing is found in them (no OCR)."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # hostile PDFs make it chatty
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ValueError("encrypted PDF")
        pages = reader.pages
        count = len(pages)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    out: list[str] = []
    note = None
    for i in range(min(count, max_pages)):
        if time.monotonic() > deadline:
            raise _OutOfTime
        try:
            out.append(pages[i].extract_text() or "")
        except Exception as exc:
            note = f"page {i + 1}: {type(exc).__name__}"
    if count > max_pages:
        note = f"limit: only the first {max_pages} of {count} pages read"
    return "\n".join(out), note


# -- the walk ---------------------------------------------------------------------------------
def _extension(name: str | None) -> str:
    if not name or "." not in name:
        return ""
    return name.rsplit(".", 1)[1].lower()


def _decode_words(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        return "".join(chunk.decode(cs or "ascii", "replace") if isinstance(chunk, bytes) else chunk
                       for chunk, cs in decode_header(value))
    except Exception:
        return value


def _param(node: Message, name: str) -> str:
    try:
        value = node.get_param(name)
    except Exception:
        return ""
    return value.lower() if isinstance(value, str) else ""


def _encoded_message(node: Message) -> bytes:
    """The bytes of a base64 or quoted-printable message/rfc822 part."""
    import base64
    import quopri

    try:  # base64 text has no header-like lines: the "inner message" is all body
        inner = node.get_payload(0)
        payload = inner.get_payload() if isinstance(inner, Message) else node.get_payload()
    except Exception:
        return b""
    if not isinstance(payload, str):
        return b""
    source = payload
    try:
        if str(node.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
            return base64.b64decode("".join(source.split()) + "==", validate=False)
        return quopri.decodestring(source.encode("ascii", "replace"))
    except Exception:
        return b""


def _content_type(node: Message) -> str:
    try:
        return node.get_content_type()
    except Exception:
        return "application/octet-stream"


def _join(path: str, i: int) -> str:
    return f"{path}/{i}" if path else str(i)


class _Walk:
    def __init__(self, limits: ExtractLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_time
        self.budget = Budget(limits.unpack)
        self.out = Extraction()
        self.leaves = 0

    # -- output -------------------------------------------------------------------------------
    def add(self, location: str, text: str) -> None:
        text = text.strip()
        if not text:
            return
        room = self.limits.max_text - self.out.chars
        if room <= 0:
            self.note(f"limit: more than {self.limits.max_text} characters of text")
            return
        if len(text) > room:
            text = text[:room]
            self.note(f"limit: more than {self.limits.max_text} characters of text")
        self.out.chars += len(text)
        self.out.segments.append(Segment(location, text))

    def note(self, text: str) -> None:
        if text not in self.out.notes and len(self.out.notes) < 50:
            self.out.notes.append(text)

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _OutOfTime

    # -- messages -----------------------------------------------------------------------------
    def headers(self, msg: Message, names: Sequence[str]) -> None:
        wanted = {n.lower(): n for n in names}
        if not wanted:
            return
        try:
            items = list(msg.raw_items())[:500]
        except Exception:
            return
        for key, value in items:
            if key.lower() in wanted:
                text = " ".join(str(value).replace("\r", "").split("\n"))
                self.add(f"header:{wanted[key.lower()]}", _decode_words(text))

    def message(self, msg: Message, prefix: str, depth: int,
                known: Mapping[str, ScanPart] | None = None) -> None:
        stack: list[tuple[Message, str, int]] = [(msg, "", 0)]
        while stack:
            node, path, nesting = stack.pop()
            if nesting > MAX_NESTING:
                continue
            ctype = _content_type(node)
            where = prefix + (path or "1")
            if ctype == "multipart/encrypted" or (
                    ctype in ("application/pkcs7-mime", "application/x-pkcs7-mime")
                    and _param(node, "smime-type") not in ("signed-data", "certs-only")):
                self.out.encrypted.append(where)
                continue
            cte = str(node.get("Content-Transfer-Encoding", "")).strip().lower()
            if ctype == "message/rfc822" and cte in ("base64", "quoted-printable"):
                # not allowed by RFC 2046, sent anyway: the parser took the encoded text for a message
                self.leaves += 1
                self.tick()
                self.attached_message(_encoded_message(node), where, depth)
                continue
            children = part_children(node)
            if children is not None:
                stack.extend(reversed([(c, _join(path, i), nesting + 1) for i, c in enumerate(children, 1)]))
                continue
            self.leaves += 1
            if self.leaves > MAX_LEAVES:
                self.note(f"limit: more than {MAX_LEAVES} parts")
                return
            self.tick()
            part = known.get(path or "1") if known is not None else None
            name = part_filename(node)
            data = part.payload if part is not None else part_payload(node)
            label = f"{where}/{name}" if name else where
            self.document(data, name, ctype, label, depth, node.get_content_charset())

    # -- documents ----------------------------------------------------------------------------
    def document(self, data: bytes, name: str | None, ctype: str, label: str, depth: int,
                 charset: str | None = None) -> None:
        if len(data) > self.limits.max_part_size:
            self.note(f"limit: {label}: {len(data)} bytes, over max_part_size")
            return
        ext = _extension(name)
        ctype = ctype.lower()
        head = data[:8]
        if head.startswith(b"%PDF") or ctype == "application/pdf" or ext == "pdf":
            self.pdf(data, label)
            return
        kind = container_kind(data)
        office = _OOXML.get(ext) or ("odf" if ext in _ODF else None)
        if office is None and kind == "zip":
            office = self._sniff_office(data, ctype)
        if office is not None:
            try:
                self.add(label, office_text(data, office, self.limits.max_xml_bytes))
            except ValueError as exc:
                self.note(f"{label}: not read ({exc})")
            return
        if kind is not None:
            self.expand(data, kind, name or "", label, depth)
            return
        if ctype in ("application/pgp-encrypted",) or (ext in ("pgp", "gpg") and b"\0" in data[:64]):
            self.out.encrypted.append(label)
            return
        if ctype == "message/rfc822" or ext == "eml":
            self.attached_message(data, label, depth)
            return
        if ctype in ("text/html", "application/xhtml+xml") or ext in _HTML_EXTENSIONS:
            self.add(label, html_to_text(decode_text(data, charset)))
            return
        if ctype.startswith("text/") or ext in _TEXT_EXTENSIONS or ctype in (
                "application/json", "application/xml", "application/csv"):
            text = decode_text(data, charset)
            if "-----BEGIN PGP MESSAGE-----" in text:
                self.out.encrypted.append(label)
                text = _PGP_BLOCK.sub(" ", text)
            self.add(label, text)
            if ctype.startswith("text/") and has_uuencode(data):
                self.members(uu_members(data, label, self.budget, self._keep), label, depth)
            return

    @staticmethod
    def _sniff_office(data: bytes, ctype: str) -> str | None:
        if "wordprocessingml" in ctype:
            return "docx"
        if "spreadsheetml" in ctype:
            return "xlsx"
        if "presentationml" in ctype:
            return "pptx"
        if "opendocument" in ctype:
            return "odf"
        try:
            names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
        except Exception:
            return None
        for marker, kind in (("word/document.xml", "docx"), ("xl/workbook.xml", "xlsx"),
                             ("ppt/presentation.xml", "pptx")):
            if marker in names:
                return kind
        if "content.xml" in names and "mimetype" in names:
            return "odf"
        return None

    def pdf(self, data: bytes, label: str) -> None:
        try:
            text, note = pdf_text(data, self.limits.max_pdf_pages, self.deadline)
        except ValueError as exc:
            self.note(f"{label}: not read ({exc})")
            return
        if note:
            self.note(note if note.startswith("limit:") else f"{label}: {note}")
        self.add(label, text)

    def attached_message(self, data: bytes, label: str, depth: int) -> None:
        try:
            inner = parse_mime(data)
        except Exception as exc:
            self.note(f"{label}: not read ({type(exc).__name__})")
            return
        self.headers(inner, ["Subject"])
        self.message(inner, label + "!/", depth + 1)

    # -- containers ---------------------------------------------------------------------------
    @staticmethod
    def _keep(head: bytes, name: str) -> bool:
        """Which members are read whole: what DLP can extract text from, or a container."""
        ext = _extension(name)
        return (container_kind(head) is not None or head.startswith(b"%PDF")
                or ext in _TEXT_EXTENSIONS or ext in _HTML_EXTENSIONS or ext in _OOXML
                or ext in _ODF or ext == "pdf")

    def expand(self, data: bytes, kind: str, name: str, label: str, depth: int) -> None:
        if depth + 1 > self.limits.unpack.max_depth:
            self.note(f"limit: {label}: nested deeper than {self.limits.unpack.max_depth}")
            return
        if kind == "tnef":
            self.members(tnef_members(data, label, self.budget, self._keep), label, depth)
        else:
            self.members(archive_members(data, kind, name, label, self.budget, self._keep), label, depth)

    def members(self, members: Iterator[Member], label: str, depth: int) -> None:
        for m in members:
            self.tick()
            path = f"{label}!/{m.name}"
            if m.encrypted:
                self.note(f"{path}: not read (encrypted member)")
                continue
            if not m.complete:
                continue
            self.document(m.data, m.name.rsplit("/", 1)[-1], "application/octet-stream", path, depth + 1)


def extract(message: Message | None, *, parts: Sequence[ScanPart] = (), headers: Sequence[str] = ("Subject",),
            limits: ExtractLimits | None = None) -> Extraction:
    """All the text of one message (``parts``: payloads already decoded, by part path)."""
    walk = _Walk(limits or ExtractLimits())
    if message is None:
        return walk.out
    known = {p.path: p for p in parts} if parts else None
    try:
        walk.headers(message, headers)
        walk.message(message, "", 0, known)
    except _OutOfTime:
        walk.note(f"limit: extraction took more than {walk.limits.max_time:g} s")
    except UnpackStop:
        pass
    for hit in walk.budget.hits:
        walk.note(f"limit: {hit.path}: {hit.detail}" if hit.check.startswith("unpack")
                  else f"{hit.path}: {hit.detail}")
    return walk.out


def extract_raw(raw: bytes, *, headers: Sequence[str] = ("Subject",),
                limits: ExtractLimits | None = None,
                parse: Callable[[bytes], Message] = parse_mime) -> Extraction:
    """The same from raw message bytes (the retro-hunt, ``qscan dlp test``)."""
    try:
        msg = parse(raw)
    except Exception as exc:
        out = Extraction()
        out.notes.append(f"message not parsed ({type(exc).__name__})")
        return out
    return extract(msg, headers=headers, limits=limits)
