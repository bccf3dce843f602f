"""The text DLP looks at: bodies, configured headers and attachments, within size and time bounds.

Bodies: text/plain as decoded by its charset, text/html converted to text (the
stdlib HTML parser: tags dropped, block elements become line breaks, scripts and
styles skipped). Attachments: text/csv/html and other text types, PDF (pypdf),
DOCX/XLSX/PPTX and OpenDocument (their XML, parsed by defusedxml, which refuses
entity tricks), attached messages, and all of those inside archives (zip, 7z,
rar, tar, gz/bz2/xz, cab, iso, TNEF), as the message's inventory lists them
(``scanners.inventory``: one walk per message, shared with the internal scanner and the
event's part list, which keeps whole the members DLP reads: :func:`keep_whole`).

DLP's own unpack limits (``ExtractLimits.unpack``) are charged as it reads the
inventory's members, so its notes say what they said when it unpacked on its own; the
inventory is unpacked under the message's one set of limits (the internal scanner's when
it runs), and a limit that stopped that walk stops DLP's reading too. Run alone (the
retro-hunt, ``qscan dlp test``), :func:`extract` builds the inventory itself. A container
the shared walk did not open (a text body that is one, or one deeper than the shared
depth limit when DLP's is higher) is opened here, under DLP's budget.

S/MIME-encrypted parts (application/pkcs7-mime enveloped data) and PGP-encrypted
parts (multipart/encrypted, ``-----BEGIN PGP MESSAGE-----``) cannot be read: they
are listed in ``encrypted`` so rules can allow such mail with a record.

Every bound hit is recorded in ``notes``; scanning goes on with what was read.

Bounded while it works, not after: the readers write into a :class:`_Sink` that stops
them once ``max_text`` characters are out (a 3 KB spreadsheet whose every cell names
one 1 MB shared string, or a document whose paragraphs nest inside each other, would
otherwise build gigabytes before the length is looked at), and checks the deadline as it
goes. For what no check can reach (pypdf parsing a content stream of millions of
operators, the XML and HTML parsers), documents are read under the unpacker's hard
alarm (``scanners.internal.unpack.hard_deadline``, see there why an alarm and not a
child process), armed once per message with the time left.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from typing import Any

from scanners.base import ScanPart
from scanners.internal.unpack import (
    Budget,
    HardDeadline,
    Member,
    UnpackLimits,
    UnpackStop,
    hard_deadline,
    has_uuencode,
)
from scanners.inventory import STOPPING, Inventory, Plan, build, open_container
from scanners.mime.filetype import UNOPENABLE_SEARCH, locate_container
from scanners.mime.parse import decode_words, part_children, part_content_type, part_filename, part_payload
from scanners.mime.parse import parse as parse_mime

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

    @classmethod
    def of(cls, settings: Any) -> ExtractLimits:
        """The limits a settings section ([dlp], [discovery]) names: its ``max_part_size``,
        ``max_text``, ``max_time``, ``max_pdf_pages``, ``max_members``, ``max_total_bytes``
        and, if it has one, ``max_depth``; the rest are the extractor's defaults."""
        unpack = cls().unpack
        return cls(max_part_size=settings.max_part_size, max_text=settings.max_text,
                   max_time=settings.max_time, max_pdf_pages=settings.max_pdf_pages,
                   unpack=dataclasses.replace(
                       unpack, max_depth=getattr(settings, "max_depth", unpack.max_depth),
                       max_members=settings.max_members,
                       max_total_bytes=settings.max_total_bytes, max_time=settings.max_time))


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


class _OutOfTime(BaseException):
    """Past the deadline. A BaseException, so no reader's ``except Exception`` takes it
    for a broken document and carries on."""


class _Full(BaseException):
    """The sink is full. A BaseException: raised from inside pypdf's callbacks, it must not
    be taken for a broken page by pypdf's own ``except Exception``."""


class _Sink:
    """Text as a reader produces it, counted as it comes: at most ``cap`` characters are
    kept (then :class:`_Full`), and the deadline is looked at every 256 pieces."""

    __slots__ = ("cap", "count", "deadline", "parts", "pieces")

    def __init__(self, cap: int, deadline: float = float("inf")) -> None:
        self.cap = max(0, cap)
        self.deadline = deadline
        self.parts: list[str] = []
        self.count = 0
        self.pieces = 0

    def add(self, text: str) -> None:
        self.pieces += 1
        if self.pieces & 255 == 0:
            self.tick()
        room = self.cap - self.count
        if len(text) > room:
            self.parts.append(text[:room])
            self.count = self.cap
            raise _Full
        self.parts.append(text)
        self.count += len(text)

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _OutOfTime

    def text(self) -> str:
        return "".join(self.parts)


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


def _paragraphs(root: Any, para: str, run: str, sink: _Sink) -> None:
    """Text of every ``para`` element, made of its ``run`` elements (w:p/w:t, a:p/a:t), one
    line each. A paragraph nested in another (a text box) is part of both: counted as it
    is written, so nesting cannot multiply the output past the sink."""
    for p in root.iter():
        if _local(p.tag) != para:
            continue
        sink.tick()
        first = True
        for t in p.iter():
            if _local(t.tag) == run and t.text:
                if first and sink.count:
                    sink.add("\n")
                first = False
                sink.add(t.text)


def _sheet_rows(root: Any, shared: list[str], sink: _Sink) -> None:
    """Rows as tab-separated lines, cells resolved through the shared strings as they are
    written: a cell may name a megabyte-long string, every cell the same one."""
    for row in root.iter():
        if _local(row.tag) != "row":
            continue
        sink.tick()
        cells: list[str] = []
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
        if not any(cells):
            continue
        if sink.count:
            sink.add("\n")
        for i, value in enumerate(cells):
            if i:
                sink.add("\t")
            if value:
                sink.add(value)


def office_text(data: bytes, kind: str, max_xml_bytes: int, max_chars: int = 4_000_000,
                deadline: float = float("inf")) -> str:
    """Text of a DOCX/XLSX/PPTX (``kind``) or OpenDocument ('odf') file from its XML parts:
    at most ``max_chars`` characters (reading stops there), raising ``_OutOfTime`` past
    ``deadline``. Raises ValueError when the file is not a readable document."""
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
    sink = _Sink(max_chars, deadline)
    try:
        if kind == "docx":
            parts = [n for n in names if re.fullmatch(
                r"word/(document|header\d*|footer\d*|footnotes|endnotes|comments)\.xml", n)]
            for n in parts:
                _paragraphs(parse(n), "p", "t", sink)
        elif kind == "pptx":
            slide = r"ppt/(slides/slide|notesSlides/notesSlide)\d+\.xml"
            parts = [n for n in names if re.fullmatch(slide, n)]
            parts.sort(key=lambda n: (n.startswith("ppt/notes"), int(re.sub(r"\D", "", n) or 0)))
            for n in parts:
                _paragraphs(parse(n), "p", "t", sink)
        elif kind == "xlsx":
            shared_root = parse("xl/sharedStrings.xml")
            shared = [] if shared_root is None else [
                "".join(t.text or "" for t in si.iter() if _local(t.tag) == "t")
                for si in shared_root if _local(si.tag) == "si"]
            sheets = [n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n)]
            sheets.sort(key=lambda n: int(re.sub(r"\D", "", n) or 0))
            for n in sheets:
                _sheet_rows(parse(n), shared, sink)
        else:
            root = parse("content.xml")
            if root is None:
                raise ValueError("no content.xml")
            for el in root.iter():
                if _local(el.tag) in ("p", "h"):
                    sink.tick()
                    first = True
                    for text in el.itertext():  # nested paragraphs: counted as written
                        if text:
                            if first and sink.count:
                                sink.add("\n")
                            first = False
                            sink.add(text)
    except _Full:
        pass
    except zipfile.BadZipFile as exc:
        raise ValueError(str(exc)) from None
    except ValueError:
        raise
    except Exception as exc:  # defusedxml refusals, XML syntax errors, decompression errors
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return sink.text()


def pdf_text(data: bytes, max_pages: int, deadline: float,
             max_chars: int = 4_000_000) -> tuple[str, str | None]:
    """(text, note): the text layer of up to ``max_pages`` pages, at most ``max_chars``
    characters (no page is read once they are out); raises ValueError if unreadable,
    ``_OutOfTime`` past ``deadline`` between pages. Scanned images have no text layer:
    nothing is found in them (no OCR).

    Inside a page pypdf cannot be stopped by a check of ours (a content stream of
    millions of operators is parsed before any text comes out, and passing it a
    ``visitor_text`` to count with would make it parse even pages that draw no text),
    so a page is bounded by the caller's hard alarm, and its text by what pypdf can
    produce until then."""
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
    sink = _Sink(max_chars, deadline)
    note = None
    try:
        for i in range(min(count, max_pages)):
            if time.monotonic() > deadline:
                raise _OutOfTime
            try:
                text = pages[i].extract_text() or ""
            except Exception as exc:
                note = f"page {i + 1}: {type(exc).__name__}"
                continue
            if i:
                sink.add("\n")
            sink.add(text)
    except _Full:
        note = f"limit: more than {max_chars} characters of text"
    if count > max_pages and note is None:
        note = f"limit: only the first {max_pages} of {count} pages read"
    return sink.text(), note


# -- the walk ---------------------------------------------------------------------------------
def _extension(name: str | None) -> str:
    if not name or "." not in name:
        return ""
    return name.rsplit(".", 1)[1].lower()


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


def _join(path: str, i: int) -> str:
    return f"{path}/{i}" if path else str(i)


class _Walk:
    def __init__(self, limits: ExtractLimits, contents: Inventory) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_time
        self.budget = Budget(limits.unpack)  # DLP's own limits, charged as it reads the inventory
        self.contents = contents
        self.out = Extraction()
        self.leaves = 0
        self.armed = False

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

    def room(self) -> int:
        """Characters a reader may produce: one more than there is room for, so that
        ``add`` sees the overflow and notes the limit."""
        return max(0, self.limits.max_text - self.out.chars) + 1

    @contextmanager
    def bounded(self) -> Iterator[None]:
        """Arm the hard alarm for the time left, once per message, around the first reader
        that needs it (mail without documents or archives never arms it)."""
        if self.armed:
            yield
            return
        self.armed = True
        try:
            with hard_deadline(self.deadline - time.monotonic()):
                yield
        finally:
            self.armed = False

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
                self.add(f"header:{wanted[key.lower()]}", decode_words(text))

    def message(self, msg: Message, prefix: str, depth: int,
                known: Mapping[str, ScanPart] | None = None) -> None:
        stack: list[tuple[Message, str, int]] = [(msg, "", 0)]
        while stack:
            node, path, nesting = stack.pop()
            if nesting > MAX_NESTING:
                continue
            ctype = part_content_type(node)
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
            item = self.contents.get(prefix + (path or "1"))
            part = known.get(path or "1") if known is not None else None
            name = part_filename(node)
            if item is not None and item.complete:
                data = item.data
            else:
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
            with self.bounded():
                self.pdf(data, label)
            return
        found = locate_container(data, name)
        office = _OOXML.get(ext) or ("odf" if ext in _ODF else None)
        if office is None and found is not None and found.kind == "zip":
            office = self._sniff_office(data, ctype)
        if office is not None:
            try:
                with self.bounded():
                    text = office_text(data, office, self.limits.max_xml_bytes, self.room(), self.deadline)
                self.add(label, text)
            except ValueError as exc:
                self.note(f"{label}: not read ({exc})")
            return
        if found is not None:
            if found.kind == UNOPENABLE_SEARCH:
                self.note(f"{label}: not read (too many false archive signatures)")
                return
            inner = data[found.offset:] if found.offset else data  # a 7z/RAR/CAB behind a prefix
            with self.bounded():
                self.expand(inner, found.kind, name or "", label, depth)
            return
        if ctype in ("application/pgp-encrypted",) or (ext in ("pgp", "gpg") and b"\0" in data[:64]):
            self.out.encrypted.append(label)
            return
        if ctype == "message/rfc822" or ext == "eml":
            self.attached_message(data, label, depth)
            return
        if ctype in ("text/html", "application/xhtml+xml") or ext in _HTML_EXTENSIONS:
            with self.bounded():  # the stdlib parser: pure Python, a few MB/s
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
                self.members(self.unpacked(data, "uu", "", label), label, depth)
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
            text, note = pdf_text(data, self.limits.max_pdf_pages, self.deadline, self.room())
        except ValueError as exc:
            self.note(f"{label}: not read ({exc})")
            return
        if note:
            self.note(note if note.startswith("limit:") else f"{label}: {note}")
        self.add(label, text)

    def attached_message(self, data: bytes, label: str, depth: int) -> None:
        try:
            inner = self.contents.messages.get(label + "!/") or parse_mime(data)
        except Exception as exc:
            self.note(f"{label}: not read ({type(exc).__name__})")
            return
        self.headers(inner, ["Subject"])
        self.message(inner, label + "!/", depth + 1)

    # -- containers ---------------------------------------------------------------------------
    def expand(self, data: bytes, kind: str, name: str, label: str, depth: int) -> None:
        if depth + 1 > self.limits.unpack.max_depth:
            self.note(f"limit: {label}: nested deeper than {self.limits.unpack.max_depth}")
            return
        self.members(self.unpacked(data, kind, name, label), label, depth)

    def unpacked(self, data: bytes, kind: str, name: str, label: str) -> Iterator[Member]:
        """The container's members as the inventory lists them, charged to DLP's own budget
        (its limits may be tighter than the message's); opened here only when the inventory
        did not (a container the shared walk does not look into: a text body that is one)."""
        if self.contents.opened(label):
            return self._replay(len(data), label)
        stop = self.contents.stop
        if stop is not None:  # the shared walk stopped before it: so does DLP
            self.budget.hit(stop.check, stop.path, stop.detail)
            raise UnpackStop
        return open_container(data, kind, name, label, self.budget, _KEEP)

    def _replay(self, size: int, label: str) -> Iterator[Member]:
        budget = self.budget
        lim = budget.limits
        allowed = max(lim.max_ratio * size, lim.ratio_floor)
        total = 0
        try:
            for item in self.contents.children(label):
                budget.check_time(label)
                budget.add_member(item.path)
                name = item.path[len(label) + 2:]
                if item.encrypted:
                    budget.hit("password-protected-archive", label, f"encrypted member {name}")
                elif item.source == "archive":
                    total += item.size
                    if total > allowed:
                        budget.hit("unpack-ratio", label,
                                   f"expanded past {lim.max_ratio:g}x its {size} bytes")
                        return
                    budget.add_bytes(item.size, label)
                else:
                    budget.add_bytes(item.size, item.path)
                yield Member(name, item.data, item.size, item.sha256, item.complete, item.encrypted,
                             item.zip_at_end)
        finally:
            for hit in self.contents.hits:  # what opening it found (unreadable, its ratio ...)
                if hit.path == label and hit.check not in STOPPING:
                    budget.hit(hit.check, hit.path, hit.detail)
        stop = self.contents.stop
        if stop is not None and (stop.path == label or stop.path.startswith(label + "!/")):
            budget.hit(stop.check, stop.path, stop.detail)  # the shared walk stopped in here
            raise UnpackStop

    def members(self, members: Iterator[Member], label: str, depth: int) -> None:
        for m in members:
            self.tick()
            path = f"{label}!/{m.name}"
            if m.encrypted:
                self.note(f"{path}: not read (encrypted member)")
                continue
            if m.zip_at_end:
                self.note(f"{path}: not read (ends with a zip archive, too big to keep)")
            if not m.complete:
                continue
            self.document(m.data, m.name.rsplit("/", 1)[-1], "application/octet-stream", path, depth + 1)


def keep_whole(head: bytes, name: str) -> bool:
    """Which archive members DLP reads whole (besides containers): what it extracts text from."""
    ext = _extension(name)
    return (head.startswith(b"%PDF") or ext in _TEXT_EXTENSIONS or ext in _HTML_EXTENSIONS
            or ext in _OOXML or ext in _ODF or ext == "pdf")


_KEEP = Plan(keep=(keep_whole,)).keeps


def plan(limits: ExtractLimits) -> Plan:
    """How DLP needs a message unpacked: any limits serve (it charges its own as it reads);
    unpacked with its own when nobody did."""
    return Plan(limits=limits.unpack, keep=(keep_whole,), own_budget=True)


def extract(message: Message | None, *, parts: Sequence[ScanPart] = (), headers: Sequence[str] = ("Subject",),
            limits: ExtractLimits | None = None, contents: Inventory | None = None) -> Extraction:
    """All the text of one message (``contents``: its inventory, built here when not given;
    ``parts``: payloads already decoded, by part path, for leaves the inventory lacks)."""
    limits = limits or ExtractLimits()
    if contents is None or not contents.plan.covers(plan(limits)):
        contents = build(message, plan(limits))
    walk = _Walk(limits, contents)
    if message is None:
        return walk.out
    known = {p.path: p for p in parts} if parts else None
    try:
        walk.headers(message, headers)
        walk.message(message, "", 0, known)
    except (_OutOfTime, HardDeadline):
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
