"""Rendering a notice: Jinja2 templates, gettext catalogs, one language per notice.

Templates live in ``templates/KIND/AUDIENCE.txt`` (blocks ``subject``, ``intro``,
``advice``; the officer reads the admin ones). The HTML alternative is
``templates/base/layout.html`` fed with the same blocks, or ``KIND/AUDIENCE.html``
where one exists; ``.html`` templates are autoescaped, text ones are not. A
``template_dir`` given by the administrator is searched first, file by file.

Everything that came from mail is cleaned before a template sees it (control
characters, bidi overrides and line breaks become spaces; lengths are bounded),
so neither the text, the HTML nor a header built from a rendered subject can be
steered by the message being reported.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    select_autoescape,
)

from compliance.notify.audience import Audience, Notice
from compliance.notify.settings import NotifySettings
from ingest.event import Action, Category, MessageScanned
from scanners.text import display_safe

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = PACKAGE_DIR / "templates"
LOCALE_DIR = PACKAGE_DIR / "locale"
DOMAIN = "messages"
# Qmail-Scanner's fourteen languages; the first is the source language of the templates.
MAX_LIST = 20  # recipients, attachments, findings shown at most
JINJA_OPTIONS: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}



def clean(value: object, limit: int = 200) -> str:
    """One line of display text (``scanners.text.display_safe``), at most ``limit`` characters."""
    return display_safe(value, limit)


class CatalogMissing(RuntimeError):
    """A language has no compiled catalog (run ``qscan notify catalogs``)."""


@cache
def translations(language: str) -> gettext.GNUTranslations:
    try:
        found = gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[language])
    except FileNotFoundError as exc:
        raise CatalogMissing(f"no compiled catalog for {language!r} in {LOCALE_DIR}") from exc
    assert isinstance(found, gettext.GNUTranslations)
    return found


def make_environment(language: str | None, template_dir: Path | None = None) -> Environment:
    """A Jinja2 environment with the i18n extension (``language=None``: no catalog, for extraction)."""
    loaders = [FileSystemLoader(str(template_dir))] if template_dir else []
    loaders.append(FileSystemLoader(str(TEMPLATES)))
    env = Environment(
        loader=ChoiceLoader(loaders),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        **JINJA_OPTIONS,
    )
    env.policies["ext.i18n.trimmed"] = True
    if language is not None:
        env.install_gettext_translations(translations(language), newstyle=True)  # type: ignore[attr-defined]
    return env


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str | None
    language: str


@dataclass
class Renderer:
    """Renders notices for one host; environments are built once per language."""

    host: str
    settings: NotifySettings = field(default_factory=NotifySettings)  # timezone, template_dir, html
    contact: str = ""
    quarantine_file: Callable[[MessageScanned], str | None] | None = None

    def __post_init__(self) -> None:
        self._envs: dict[str, Environment] = {}
        self._zone = ZoneInfo(self.settings.timezone)

    def environment(self, language: str) -> Environment:
        if language not in self._envs:
            self._envs[language] = make_environment(language, self.settings.template_dir)
        return self._envs[language]

    def context(self, event: MessageScanned, notice: Notice) -> dict[str, Any]:
        admin = notice.audience in (Audience.ADMIN, Audience.OFFICER)
        quarantined = event.action == Action.QUARANTINE
        rcpts = event.envelope.recipients
        if notice.audience == Audience.RECIPIENT:
            rcpts = [notice.address]  # a recipient is not told who else the mail was for
        viruses = [clean(f.name, 100) for f in event.findings
                   if f.verdict == Category.VIRUS and f.name][:MAX_LIST]
        rules = [clean(f.name, 100) for f in event.findings
                 if f.verdict == event.category and f.name and f.verdict != Category.CLEAN][:MAX_LIST]
        received = event.time if event.time.tzinfo else event.time.replace(tzinfo=UTC)
        findings = [{"scanner": clean(f.scanner, 40), "name": clean(f.name, 100),
                     "detail": clean(f.detail or f.error, 200)} for f in event.findings][:MAX_LIST]
        for f in findings:
            f["line"] = f"{f['scanner']}: {f['name']}" + (f" - {f['detail']}" if f["detail"] else "")
        dlp = [{"rule": clean(d.get("rule"), 100), "count": int(d.get("count") or 1)}
               for d in event.dlp_findings if isinstance(d, dict)][:MAX_LIST]
        for d in dlp:
            d["label"] = f"{d['rule']} ({d['count']})"
        client = event.client
        client_text = ""
        if client.ip:
            relay = "yes" if client.relay else "no"
            client_text = clean(f"{client.ip} {client.host or ''} relay={relay}", 300)
        elif client.local:
            client_text = "local"
        return {
            "host": clean(self.host, 255),
            "language": notice.language,
            "kind": notice.kind.value,
            "audience": notice.audience.template,
            "admin": admin,
            "action": event.action.value,
            "category": event.category.value,
            "reason": clean(event.reason, 100),
            "subject": clean(event.headers.subject, 200),
            "sender": clean(event.envelope.sender, 320) or "<>",
            "header_from": clean(event.headers.from_, 300),
            "recipients": [clean(r, 320) for r in rcpts[:MAX_LIST]],
            "more_recipients": max(0, len(rcpts) - MAX_LIST),
            "date": clean(event.headers.date, 100),
            "received": format_datetime(received, format="long", tzinfo=self._zone, locale=notice.language),
            "message_id": clean(event.headers.message_id, 250),
            "viruses": viruses,
            "rules": rules,
            "attachments": [clean(p.filename, 100) for p in event.parts if p.filename][:MAX_LIST],
            "findings": findings if admin else [],
            "dlp": dlp if admin else [],
            "spam_score": f"{event.spam_score:.1f}" if admin and event.spam_score is not None else "",
            "client": client_text if admin else "",
            "reply": clean((event.reply or "")[1:], 300) if event.action == Action.REJECT else "",
            "event_id": event.event_id,
            "quarantine_id": event.event_id if quarantined else "",
            "reference": event.event_id,
            "quarantine_file": (self.quarantine_file(event) or "") if admin and quarantined
            and self.quarantine_file else "",
            "contact": clean(self.contact, 320),
        }

    def _template(self, env: Environment, notice: Notice, ext: str) -> Template:
        return env.get_template(f"{notice.kind.value}/{notice.audience.template}.{ext}")

    def render(self, event: MessageScanned, notice: Notice) -> Rendered:
        env = self.environment(notice.language)
        ctx = self.context(event, notice)
        template = self._template(env, notice, "txt")

        def part(name: str) -> str:
            return template.render(ctx, part=name).strip()

        subject = clean(part("subject"), 250)
        text = template.render(ctx, part="text")
        html = None
        if self.settings.html:
            try:
                html_template = self._template(env, notice, "html")
            except TemplateNotFound:
                html_template = env.get_template("base/layout.html")
            html = html_template.render(ctx, title=subject, intro=part("intro"), advice=part("advice"))
        return Rendered(subject, text, html, notice.language)
