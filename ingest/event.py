"""The event schema: one ``message.scanned`` event per message attempt.

Events are self-contained so every projection (archive, SQL, notifications,
DLP) can be rebuilt by replaying the log. They are versioned
(``schema_version``); consumers must ignore fields they do not know. The JSON
Schema in ``schemas/`` is generated from these models (``qscan schema``) for
consumers written in other languages.

Addresses and header values are decoded as UTF-8 with replacement for display
and search; the byte-exact envelope travels in ``envelope.raw`` (base64) so a
release re-injects exactly what qmail handed over.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    with_config,
)
from typing_extensions import TypedDict

# Re-exported: the names events are made of, defined where they import without pydantic
from ingest.vocabulary import QUARANTINE_FOLDER_OF as QUARANTINE_FOLDER_OF
from ingest.vocabulary import QUARANTINE_FOLDERS as QUARANTINE_FOLDERS
from ingest.vocabulary import VIRUS_FOLDER as VIRUS_FOLDER
from ingest.vocabulary import Action as Action
from ingest.vocabulary import quarantine_folder as quarantine_folder
from ingest.vocabulary import utc as utc
from scanners.direction import Direction, direction
from scanners.result import Category  # the one vocabulary of verdicts (re-exported)

SCHEMA_VERSION: Literal[1] = 1


def _b64_validate(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    raise ValueError("expected base64 text")


def display_text(value: str) -> str:
    """Text every writer can take (JSON, SQL, maildir, summary line, notifications).

    Mail is parsed as ASCII with surrogate escapes, so raw 8-bit bytes from a header or a
    MIME parameter arrive as lone surrogates, which no UTF-8 writer accepts (a worker used to
    raise on them after scanning, on every retry). The escaped bytes are decoded as UTF-8 here
    (RFC 6532 mail reads right) and whatever is not UTF-8 becomes U+FFFD; the raw bytes are
    kept beside the text where they matter (``HeaderSummary.raw``)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte (e.g. "\ud800" from JSON)
        data = value.encode("utf-8", "surrogatepass")
    return data.decode("utf-8", "replace")


# Any text that may come from mail or from its sender: always valid Unicode once in an event.
MailText = Annotated[str, AfterValidator(display_text)]

B64Bytes = Annotated[
    bytes,
    PlainValidator(_b64_validate, json_schema_input_type=str),
    PlainSerializer(
        lambda b: base64.b64encode(b).decode("ascii"), return_type=str, when_used="json"
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class EnvelopeInfo(_Model):
    sender: MailText = Field(description="MAIL FROM, empty for bounces")
    recipients: list[MailText]
    raw: B64Bytes = Field(description="the envelope bytes exactly as qmail handed them (base64)")


class ClientInfo(_Model):
    ip: MailText | None = Field(None, description="TCPREMOTEIP; absent for locally injected mail")
    host: MailText | None = None
    info: MailText | None = Field(None, description="TCPREMOTEINFO (ident or AUTH user)")
    helo: MailText | None = None
    relay: bool = Field(False, description="RELAYCLIENT was set: authorised relay / outbound")
    auth_user: MailText | None = None
    local: bool = Field(False, description="no TCPREMOTEIP from a trusted SMTP peer: injected on this host")
    peer_uid: int | None = Field(
        None, description="uid of the process that handed the message to qscan (SO_PEERCRED): qmaild "
        "for SMTP, the injecting user for local mail; null in events written before qscan recorded it")
    outbound: bool | None = Field(
        None, description="the mail leaves the site: a trusted relay client sent it, or it was injected "
        "locally to a recipient outside daemon.local_domains; null in older events (read: relay)")
    untrusted: list[str] = Field(
        [], description="client attributes (TCPREMOTEIP, RELAYCLIENT, ...) a peer that is not in "
        "daemon.smtp_users claimed: ignored, names kept for the record")

    @property
    def direction(self) -> Direction:
        """inbound, outbound or local (``scanners.direction``'s rule)."""
        return direction(self.relay, self.ip, self.outbound, self.local)


class HeaderSummary(_Model):
    """The summarised headers, unfolded and RFC 2047-decoded for display and search."""

    from_: MailText | None = Field(None, alias="from")
    to: MailText | None = None
    cc: MailText | None = None
    subject: MailText | None = None
    message_id: MailText | None = None
    date: MailText | None = None
    raw: dict[str, B64Bytes] = Field(
        {}, description="the raw value bytes (as in the message, folding kept) of each summarised "
        "header that is not plain ASCII, keyed by lower-case header name ('subject', 'message-id'): "
        "the display text above decodes them as UTF-8 with replacement")

    def raw_value(self, name: str) -> bytes | None:
        """The raw bytes of a summarised header when they are not plain ASCII, else None."""
        return self.raw.get(name.lower())


class Part(_Model):
    path: MailText = Field(
        description="MIME part path, e.g. '2/1' ('1' for a single-part message); archive members, "
        "TNEF and uuencoded files continue it: '2/1/invoice.zip!/a.exe'"
    )
    content_type: MailText
    detected_type: str | None = None
    filename: MailText | None = None
    size: int = Field(description="decoded size in bytes")
    sha256: str


class Finding(_Model):
    """One scanner result (the uniform result type, flattened for the log)."""

    scanner: str
    version: str = ""
    verdict: Category
    name: MailText = Field("", description="signature, rule or check name")
    score: float = 0.0
    detail: MailText = ""
    duration_ms: float = 0.0
    error: MailText | None = Field(
        None, description="set when the scan did not happen (timeout, refused, ...)")


@with_config(ConfigDict(extra="allow"))
class DlpHit(TypedDict, total=False):
    """One DLP rule hit for one detector (scanners/dlp). A plain dict on the wire and in code;
    every key is optional for producers, and keys this version does not know are kept."""

    rule: Annotated[str, Field(description="the DLP rule that fired")]
    detector: Annotated[str, Field(description="payment_card, iban, us.ssn, a custom detector...")]
    confidence: Annotated[str, Field(description="low, medium or high (the highest counted)")]
    count: Annotated[int, Field(description="distinct values counted for the rule")]
    action: Annotated[str, Field(description="monitor, notify, quarantine, reject or allow")]
    location: Annotated[MailText, Field(description="where: part paths, 'header:Subject', archive members")]
    evidence: Annotated[MailText, Field(description="masked examples, e.g. '4111 **** **** 1111'; never a "
                                               "full value")]
    notify: Annotated[bool, Field(description="the compliance officer is to be told")]
    encrypted: Annotated[bool, Field(description="the message was S/MIME- or PGP-encrypted")]


class Timings(_Model):
    receive_ms: float = 0.0
    parse_ms: float = 0.0
    scan_ms: float = 0.0
    total_ms: float = 0.0


class MessageScanned(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["message.scanned"] = "message.scanned"
    event_id: str = Field(description="UUIDv7, time-ordered")
    time: datetime = Field(description="when the daemon received the message (UTC)")
    host: str = Field(description="the scanning host (journal host)")
    envelope: EnvelopeInfo
    client: ClientInfo
    headers: HeaderSummary
    size: int = Field(description="size of the message as received")
    sha256: str = Field(description="SHA-256 of the message as received")
    raw_sha256: str | None = Field(
        None, description="SHA-256 of the message as handed to qmail-queue (raw_message); "
        "null when it was too large to keep, and in events written before qscan hashed it"
    )
    parts: list[Part] = []
    findings: list[Finding] = []
    category: Category
    action: Action
    reason: MailText = Field("", description="short machine-friendly reason, e.g. 'clean', 'too-large'")
    reply: MailText | None = Field(None, description="reply text for reject/tempfail (D.../Z...)")
    spam_score: float | None = None
    dlp_findings: list[DlpHit] = []
    defects: list[MailText] = Field([], description="MIME defects the parser reported")
    crypto: list[str] | None = Field(
        None, description="S/MIME and PGP use anywhere in the message, each once, in this order: "
        "smime-signed, smime-encrypted, pgp-signed, pgp-encrypted (scanners/mime/crypto.py); [] when none "
        "(or the message was too large to parse); null in events written before qscan recorded it"
    )
    added_headers: list[MailText] = Field([], description="header lines qscan added")
    timings: Timings = Timings()
    raw_message: B64Bytes = Field(
        b"", description="the message as handed to qmail-queue (with added headers), base64"
    )

    @property
    def quarantine_folder(self) -> str | None:
        if self.action != Action.QUARANTINE:
            return None
        return quarantine_folder(self.category)


class QueueFailed(_Model):
    """Compensating event: qmail-queue did not accept a message whose event was written."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["message.queue_failed"] = "message.queue_failed"
    event_id: str
    time: datetime
    host: str
    ref_event_id: str = Field(description="the message.scanned event this compensates")
    exit_code: int
    reply: str | None = None


class MessageDeleted(_Model):
    """The stored copy of a message was deleted lawfully (retention, quarantine expiry).

    The SQL side keeps it as a tombstone chained into the message host's hash chain,
    so a lawful deletion is told apart from a file that went missing.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["message.deleted"] = "message.deleted"
    event_id: str
    time: datetime
    host: str = Field(description="the host the deletion ran on")
    ref_event_id: str = Field(description="the message.scanned event whose copy was deleted")
    ref_host: str = Field(description="that message's journal host (the chain the tombstone joins)")
    actor: str = Field(description="user@host that deleted it")
    reason: str
    rule: str = Field("", description="the retention rule that expired it, if any")
    location: str = Field(description="'archive' or 'quarantine/FOLDER'")
    raw_sha256: str | None = Field(None, description="SHA-256 of the deleted copy's message")
    message_hash: str | None = Field(None, description="chain hash of the message's SQL row")


class DiscoveryQuery(_Model):
    """A discovery search as recorded with the hold or export it chose messages for
    (docs/discovery.md): enough to say how the set was chosen and to run it again."""

    query: str = Field(description="the query as typed")
    canonical: str = Field(description="the query as parsed, in its canonical spelling")
    filters: dict[str, Any] = Field({}, description="the metadata filters (since, until, sender, "
                                    "recipient)")
    total: int = Field(description="distinct messages found (by hash)")
    incomplete: int = Field(0, description="of those, messages not fully indexed")


class SelectedItem(_Model):
    """One message a discovery search found: every copy (event) of it, with its hash."""

    event_id: str
    sha256: str = Field(description="of the message as received (copies share it)")


class HoldCreated(_Model):
    """A legal hold: matching messages must not be deleted until it is released.

    A hold made from a discovery search (``qscan hold create --query``) holds exactly the
    messages the search found (``items``), and records the search (``discovery``)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["hold.created"] = "hold.created"
    event_id: str = Field(description="also the hold's id")
    time: datetime
    host: str
    matter: str
    custodians: list[str] = Field(description="addresses whose mail (sent or received) is held")
    since: datetime | None = None
    until: datetime | None = None
    query: dict[str, Any] = Field({}, description="further audit-search filters")
    reason: str
    actor: str
    discovery: DiscoveryQuery | None = Field(None, description="the discovery search that chose "
                                             "the held messages (a hold by query)")
    items: list[SelectedItem] = Field([], description="a hold by query: the messages held, "
                                      "every copy, as the search found them")


class HoldReleased(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["hold.released"] = "hold.released"
    event_id: str
    time: datetime
    host: str
    hold_id: str
    matter: str
    reason: str
    actor: str


class ExportedItem(_Model):
    doc_id: str
    event_id: str
    sha256: str | None = Field(None, description="of the produced message; null when missing")


class ExportCompleted(_Model):
    """A legal-discovery export's chain-of-custody record."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["export.completed"] = "export.completed"
    event_id: str = Field(description="also the export's id")
    time: datetime = Field(description="when the export was complete")
    host: str
    matter: str
    hold_id: str | None = None
    actor: str
    started: datetime
    query: dict[str, Any] = Field(description="the exact selection: the hold, the filters and, "
                                  "for an export by query, the discovery search with its results")
    tool_version: str
    format: str
    out_dir: str
    messages: int
    missing: int
    total_bytes: int
    files: dict[str, str] = Field(description="relative path -> SHA-256 of every produced file")
    custody_sha256: str = Field(description="SHA-256 of custody.json")
    items: list[ExportedItem] = []


class MessageReleased(_Model):
    """A quarantined message was re-injected through qmail-queue (``qscan quarantine release``).

    Written after qmail-queue accepted the message; the SQL side keeps it in
    ``quarantine_releases`` and marks the quarantine entry ``released``.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["message.released"] = "message.released"
    event_id: str = Field(description="UUIDv7 of the release")
    time: datetime = Field(description="when qmail-queue accepted the released message (UTC)")
    host: str = Field(description="the host the release ran on")
    ref_event_id: str = Field(description="the message.scanned event of the quarantined message")
    ref_host: str = Field(description="that message's journal host")
    folder: str = Field(description="quarantine folder it came from: viruses, policy, spam or dlp")
    actor: str = Field(description="who released it (user@host, or --by)")
    reason: str = Field(description="why (--reason)")
    sender: str = Field(description="envelope sender handed to qmail-queue")
    recipients: list[str] = Field(description="envelope recipients handed to qmail-queue")
    original_recipients: bool = Field(
        description="true: the original envelope; false: only the recipients given with --to")
    forced: bool = Field(False, description="released with --force: a virus outside four-eyes, "
                         "or one step by a release officer where four-eyes applies")
    sha256: str = Field(description="SHA-256 of the message as handed to qmail-queue")
    operator: str | None = Field(
        None, description="the login that ran the release (the approver under four-eyes)")
    request_id: str | None = Field(
        None, description="the release.requested event this release approved (four-eyes)")
    requested_by: str | None = Field(
        None, description="the login that requested it (four-eyes: never the operator)")


class ReleaseRequested(_Model):
    """A release from a four-eyes quarantine folder was asked for (``qscan quarantine release``).

    Nothing is released yet: a different operator's ``qscan quarantine approve`` releases
    it (a ``message.released`` naming this request and both logins).
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["release.requested"] = "release.requested"
    event_id: str = Field(description="UUIDv7 of the request")
    time: datetime = Field(description="when it was requested (UTC)")
    host: str = Field(description="the host the request was made on")
    ref_event_id: str = Field(description="the message.scanned event of the quarantined message")
    ref_host: str = Field(description="that message's journal host")
    folder: str = Field(description="quarantine folder: a four-eyes folder (dlp, viruses...)")
    actor: str = Field(description="who asked (user@host, or --by)")
    operator: str = Field(description="the login that asked; it may not approve")
    reason: str = Field(description="why (--reason)")
    to: list[str] | None = Field(None, description="--to recipients, or null: the original ones")


class ReleaseDenied(_Model):
    """A pending four-eyes release request was closed without a release
    (``qscan quarantine deny``): denied by another login, or withdrawn by its requester.
    The message stays quarantined."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["release.denied"] = "release.denied"
    event_id: str = Field(description="UUIDv7 of the denial")
    time: datetime = Field(description="when it was denied (UTC)")
    host: str = Field(description="the host it was denied on")
    ref_event_id: str = Field(description="the message.scanned event of the quarantined message")
    request_id: str = Field(description="the release.requested event it closes")
    actor: str = Field(description="who denied it (user@host, or --by)")
    operator: str = Field(description="the login that denied it")
    reason: str = Field(description="why (--reason)")
    withdrawn: bool = Field(description="true: the requester withdrew it; false: another login "
                            "denied it")


class ChainAnchored(_Model):
    """The chain heads at one moment, written outside the database (compliance/anchor.py).

    Appended to the journal by the anchoring process, so the relay carries it to the
    Kafka topic too. ``anchor`` is the (optionally signed) heads document, ``trail`` the
    short hashes of the entries since the previous anchor.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["chain.anchored"] = "chain.anchored"
    event_id: str = Field(description="UUIDv7 of the anchor")
    time: datetime = Field(description="when the heads were taken (UTC)")
    host: str = Field(description="the host that wrote the anchor")
    anchor: dict[str, Any] = Field(
        description="{v, time, writer, sql: {HOST: {seq, hash}}, journal: {HOST: {seq, hash, "
        "start}}}, with sig and key when signed (Ed25519)")
    trail: dict[str, Any] | None = Field(
        None, description="{sql|journal: {HOST: {from, h: [12-hex-digit hashes]}}}")


class DiscoverySearched(_Model):
    """A discovery search was run (`qscan discover search`, docs/discovery.md): who, what, how many."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["discovery.searched"] = "discovery.searched"
    event_id: str
    time: datetime
    host: str
    actor: str = Field(description="user@host that ran it")
    query: str = Field(description="the query as typed")
    canonical: str = Field(description="the query as parsed, in its canonical spelling")
    filters: dict[str, Any] = Field({}, description="the metadata filters (since, until, sender, "
                                    "recipient)")
    total: int = Field(description="distinct messages found (by hash)")
    incomplete: int = Field(0, description="of those, messages not fully indexed")
    purpose: str | None = Field(None, description="what the search chose messages for, when not "
                                "`discover search`: 'hold MATTER', 'export MATTER', "
                                "'rerun of hold MATTER'")


class ConsoleSignIn(_Model):
    """A sign-in to the web console, or a refused one (`qscan web`, docs/web.md)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["console.signin"] = "console.signin"
    event_id: str
    time: datetime
    host: str = Field(description="the host the console runs on")
    login: MailText = Field(description="the login given (bounded, controls removed), or the SSO header's")
    outcome: Literal["ok", "failed", "throttled"] = Field(
        description="ok: signed in; failed: unknown login, wrong password or disabled account; "
        "throttled: refused unchecked, too many recent failures")
    method: Literal["password", "proxy"] = Field(description="a password, or the trusted proxy's header")
    remote: str = Field(description="the client's address as the console saw it")
    role: str | None = Field(None, description="the account's role, when signed in")


class ConsoleAccountChanged(_Model):
    """A console account was created or changed (`qscan web user add|disable`)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["console.account"] = "console.account"
    event_id: str
    time: datetime
    host: str
    login: str
    change: Literal["created", "updated", "disabled", "enabled"]
    role: str
    addresses: list[str] = Field([], description="the addresses a user-role account sees")
    domains: list[str] = Field([], description="the domains a user-role account sees")
    password: bool = Field(description="the account has a password (false: SSO only)")
    actor: str = Field(description="user@host that made the change")


class MessageRawRead(_Model):
    """Someone read a stored message's raw source (the console's raw download)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["message.raw_read"] = "message.raw_read"
    event_id: str
    time: datetime
    host: str = Field(description="the host it was read on")
    ref_event_id: str = Field(description="the message.scanned event whose message was read")
    actor: str = Field(description="login@host (web) of the reader")
    role: str = Field(description="the reader's console role")
    via: Literal["web"] = "web"
    remote: str = Field(description="the client's address as the console saw it")
    source: str = Field(description="where the bytes came from: archive, quarantine/FOLDER or journal")
    sha256: str = Field(description="SHA-256 of the bytes handed out")


class ExportDownloaded(_Model):
    """Someone downloaded a discovery export (the console's zip of the export directory)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    type: Literal["export.downloaded"] = "export.downloaded"
    event_id: str
    time: datetime
    host: str = Field(description="the host it was downloaded from")
    export_id: str = Field(description="the export.completed event of the export")
    matter: str = Field(description="the export's matter")
    actor: str = Field(description="login@host (web) of the person downloading")
    role: str = Field(description="their console role")
    via: Literal["web"] = "web"
    remote: str = Field(description="the client's address as the console saw it")
    sha256: str = Field(description="SHA-256 of the zip handed out")
    bytes: int = Field(description="size of the zip handed out")


EVENT_TYPES: dict[str, type[_Model]] = {
    "message.scanned": MessageScanned,
    "message.queue_failed": QueueFailed,
    "message.deleted": MessageDeleted,
    "hold.created": HoldCreated,
    "hold.released": HoldReleased,
    "export.completed": ExportCompleted,
    "message.released": MessageReleased,
    "release.requested": ReleaseRequested,
    "release.denied": ReleaseDenied,
    "chain.anchored": ChainAnchored,
    "discovery.searched": DiscoverySearched,
    "console.signin": ConsoleSignIn,
    "console.account": ConsoleAccountChanged,
    "message.raw_read": MessageRawRead,
    "export.downloaded": ExportDownloaded,
}

AnyEvent = (MessageScanned | QueueFailed | MessageDeleted | HoldCreated | HoldReleased
            | ExportCompleted | MessageReleased | ReleaseRequested | ReleaseDenied
            | ChainAnchored | DiscoverySearched | ConsoleSignIn | ConsoleAccountChanged
            | MessageRawRead | ExportDownloaded)


def to_json(event: _Model, *, with_raw: bool = True) -> bytes:
    exclude = None if with_raw else {"raw_message"}
    return event.model_dump_json(by_alias=True, exclude=exclude).encode()


def from_json(data: bytes | str, raw: bytes | None = None, *, type_: str | None = None
              ) -> AnyEvent:
    """Decode any known event; ``raw`` re-attaches a raw message stored beside it.

    ``type_``: the event type when the log keeps it beside the body (the journal does),
    so the body is validated straight from JSON in one pass; a body whose own ``type``
    disagrees is refused all the same (every model pins its ``type`` literal).
    """
    cls = EVENT_TYPES.get(type_) if type_ else None
    if cls is not None:
        event = cls.model_validate_json(data)
        if raw is not None and cls is MessageScanned:  # events are frozen: a copy that has it
            event = event.model_copy(update={"raw_message": raw})
        return event  # type: ignore[return-value]
    obj = json.loads(data)
    cls = EVENT_TYPES.get(obj.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown event type {obj.get('type')!r}")
    if raw is not None and cls is MessageScanned:
        obj["raw_message"] = raw
    return cls.model_validate(obj)  # type: ignore[return-value]


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) covering every event type."""
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema(
        [(m, "serialization") for m in EVENT_TYPES.values()],
        by_alias=True,
        title="qscan events",
    )
    top["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    top["description"] = (
        "Events on the qscan log. Discriminate on 'type'; check 'schema_version'. "
        "Bytes fields are base64."
    )
    top["oneOf"] = [{"$ref": f"#/$defs/{m.__name__}"} for m in EVENT_TYPES.values()]
    return top
