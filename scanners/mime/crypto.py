"""Which cryptographic mail formats a message uses: S/MIME and OpenPGP, signed and encrypted.

Recorded for every message (the event's ``crypto``, the summary line, the SQL row), as
Qmail-Scanner logged it in every line: an auditor asks "which mail left encrypted?"
without a DLP rule. What counts, anywhere in the MIME tree (forwarded messages included):

* ``smime-signed``: ``multipart/signed`` with ``protocol=application/(x-)pkcs7-signature``,
  a detached signature part (``application/(x-)pkcs7-signature``, ``*.p7s``), or
  ``application/(x-)pkcs7-mime`` whose ``smime-type`` is ``signed-data`` (opaque signing);
* ``smime-encrypted``: ``application/(x-)pkcs7-mime`` with ``smime-type=enveloped-data`` or
  ``authEnveloped-data``;
* ``pgp-signed``: ``multipart/signed`` with ``protocol=application/pgp-signature``, an
  ``application/pgp-signature`` part, inline ``-----BEGIN PGP SIGNED MESSAGE-----``;
* ``pgp-encrypted``: ``multipart/encrypted`` with ``protocol=application/pgp-encrypted``, inline
  ``-----BEGIN PGP MESSAGE-----`` or a binary ``*.pgp``/``*.gpg`` file, whose first OpenPGP
  packet is an encrypted session key or encrypted data.

Where a header does not say (a ``pkcs7-mime`` part without ``smime-type``, a ``*.p7m`` file,
an armored ``PGP MESSAGE``, which may be signed only), the content does: the CMS content type
OID at the start of the DER, the first OpenPGP packet's tag. An armored block that cannot be
read counts as encrypted, as the DLP extractor treats it. Inline armor counts only at the start
of a line (or after HTML tags), so a quoted ``> -----BEGIN PGP MESSAGE-----`` does not.

Cheap on the hot path: a plain-text message costs a content-type lookup and a substring test.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from email.message import Message

from scanners.base import ScanPart
from scanners.mime.parse import part_children, part_content_type, part_filename, part_payload

SMIME_SIGNED = "smime-signed"
SMIME_ENCRYPTED = "smime-encrypted"
PGP_SIGNED = "pgp-signed"
PGP_ENCRYPTED = "pgp-encrypted"
KINDS: tuple[str, ...] = (SMIME_SIGNED, SMIME_ENCRYPTED, PGP_SIGNED, PGP_ENCRYPTED)  # reported order

MAX_NODES = 1000
MAX_DEPTH = 20
ARMOR_SCAN = 4 * 1024 * 1024  # inline armor is looked for in the first 4 MiB of a text part

_PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
_PKCS7_SIGNATURE = ("application/pkcs7-signature", "application/x-pkcs7-signature")
_SMIME_TYPES = {"signed-data": SMIME_SIGNED, "enveloped-data": SMIME_ENCRYPTED,
                "authenveloped-data": SMIME_ENCRYPTED}
# DER of the CMS content type OIDs (RFC 5652, RFC 5083) as they follow ContentInfo's SEQUENCE
_CMS_OIDS = (
    (bytes.fromhex("06092a864886f70d010702"), SMIME_SIGNED),  # id-signedData
    (bytes.fromhex("06092a864886f70d010703"), SMIME_ENCRYPTED),  # id-envelopedData
    (bytes.fromhex("060b2a864886f70d0109100117"), SMIME_ENCRYPTED),  # id-ct-authEnvelopedData
)
# OpenPGP packet tags (RFC 4880, RFC 9580) that open an encrypted or a signed message
_PGP_ENCRYPTED_TAGS = frozenset((1, 3, 9, 18, 20))  # PKESK, SKESK, SED, SEIPD, AEAD
_PGP_SIGNED_TAGS = frozenset((2, 4, 8))  # signature, one-pass signature, compressed (gpg --sign)
_TAGS = rb"(?:[ \t]|<[^>\n]{0,200}>)*"  # whitespace and HTML tags around an armor line
_ARMOR = re.compile(rb"^" + _TAGS + rb"-----BEGIN PGP (SIGNED )?MESSAGE-----" + _TAGS + rb"\r?$", re.M)
_HTML_TAG = re.compile(rb"<[^>\n]{0,200}>")


def crypto_use(message: Message | None, parts: Sequence[ScanPart]) -> list[str]:
    """The kinds found in the message, each once, in ``KINDS`` order; [] when none (or no
    parsed message: too large to scan). ``parts`` are the decoded leaves by path (reused,
    not decoded again)."""
    if message is None:
        return []
    known = {p.path: p for p in parts}
    found: set[str] = set()
    stack: list[tuple[Message, str, int]] = [(message, "", 0)]
    nodes = 0
    while stack and nodes < MAX_NODES:
        node, path, depth = stack.pop()
        nodes += 1
        ctype = part_content_type(node)
        children = part_children(node)
        if children is not None:
            _container(node, ctype, found)
            if depth < MAX_DEPTH:
                stack.extend((c, f"{path}/{i}" if path else str(i), depth + 1)
                             for i, c in enumerate(children, 1))
            continue
        part = known.get(path or "1")
        _leaf(node, ctype, part.payload if part is not None else None, found)
    return [k for k in KINDS if k in found]


def _param(node: Message, name: str) -> str:
    try:
        value = node.get_param(name)
    except Exception:
        return ""
    return value.strip().lower() if isinstance(value, str) else ""


def _container(node: Message, ctype: str, found: set[str]) -> None:
    if ctype == "multipart/signed":
        protocol = _param(node, "protocol")
        if protocol in _PKCS7_SIGNATURE:
            found.add(SMIME_SIGNED)
        elif protocol == "application/pgp-signature":
            found.add(PGP_SIGNED)
    elif ctype == "multipart/encrypted" and _param(node, "protocol") == "application/pgp-encrypted":
        found.add(PGP_ENCRYPTED)


def _leaf(node: Message, ctype: str, data: bytes | None, found: set[str]) -> None:
    name = (part_filename(node) or "").strip().lower()
    ext = name.rpartition(".")[2] if "." in name else ""
    if ctype in _PKCS7_SIGNATURE or ext == "p7s":
        found.add(SMIME_SIGNED)
        return
    if ctype == "application/pgp-signature":
        found.add(PGP_SIGNED)
        return
    if ctype == "application/pgp-encrypted":
        found.add(PGP_ENCRYPTED)
        return
    if ctype in _PKCS7_MIME or ext == "p7m":
        kind = _SMIME_TYPES.get(_param(node, "smime-type")) if ctype in _PKCS7_MIME else None
        kind = kind or cms_kind(_payload(node, data))
        if kind:
            found.add(kind)
        return
    if ctype.startswith("text/") or ctype.startswith("application/pgp") or ext in ("asc", "pgp", "gpg"):
        payload = _payload(node, data)
        kind = armor_kind(payload)
        if kind is None and ext in ("pgp", "gpg"):
            kind = packet_kind(payload)
        if kind:
            found.add(kind)


def _payload(node: Message, data: bytes | None) -> bytes:
    return data if data is not None else part_payload(node)


def cms_kind(data: bytes) -> str | None:
    """smime-signed / smime-encrypted from a CMS ContentInfo's content type OID."""
    head = data[:32]
    for oid, kind in _CMS_OIDS:
        if oid in head:
            return kind
    return None


def packet_kind(data: bytes) -> str | None:
    """pgp-encrypted / pgp-signed from the first OpenPGP packet's tag; None if it is none."""
    if not data:
        return None
    first = data[0]
    if not first & 0x80:
        return None
    tag = first & 0x3F if first & 0x40 else (first >> 2) & 0x0F
    if tag in _PGP_ENCRYPTED_TAGS:
        return PGP_ENCRYPTED
    if tag in _PGP_SIGNED_TAGS:
        return PGP_SIGNED
    return None


def armor_kind(data: bytes) -> str | None:
    """The kind of the first inline PGP block in a text: a cleartext signature is signed;
    a PGP MESSAGE is what its first packet says, encrypted when it cannot be read."""
    text = data[:ARMOR_SCAN]
    if b"-----BEGIN PGP " not in text:
        return None
    m = _ARMOR.search(text)
    if m is None:
        return None
    if m.group(1):
        return PGP_SIGNED
    first = _armored_start(text[m.end():])
    if not first or not first[0] & 0x80:  # unreadable: it may well be encrypted
        return PGP_ENCRYPTED
    return packet_kind(first)  # None for literal data only (gpg --store): neither


def _armored_start(rest: bytes) -> bytes | None:
    """The first decoded bytes of an armored body (after its armor headers); None if the
    base64 does not decode."""
    lines = rest.replace(b"\r", b"").split(b"\n", 64)[1:64]
    body: list[bytes] = []
    in_headers = True
    for raw in lines:
        line = _HTML_TAG.sub(b"", raw).strip()  # the block may sit inside HTML
        if in_headers:
            if not line:
                in_headers = False
            elif b": " not in line:  # no armor headers at all
                in_headers = False
                body.append(line)
            continue
        if not line or line.startswith((b"=", b"-----")):
            break
        body.append(line)
        if sum(len(b) for b in body) >= 8:
            break
    chunk = b"".join(body)
    chunk = chunk[: len(chunk) // 4 * 4]
    try:
        return base64.b64decode(chunk, validate=True)
    except (binascii.Error, ValueError):
        return None
