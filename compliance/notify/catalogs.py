"""The gettext catalogs of the notifications: extract, update, compile, check (Babel).

``locale/messages.pot`` is extracted from the templates; ``locale/LANG/LC_MESSAGES/
messages.po`` holds each language's translations and ``messages.mo`` its compiled
form. Both .po and .mo are committed, so a fresh checkout renders without a
build step; ``qscan notify catalogs`` re-extracts, merges new messages into every
.po and recompiles, and ``check()`` (run by the test suite and by
``qscan notify catalogs --check``) fails when any catalog misses a message, has a
fuzzy or empty one, breaks a placeholder, or when a .mo is older than its .po.
"""

from __future__ import annotations

import gettext
import io
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from compliance.notify.render import DOMAIN, JINJA_OPTIONS, LOCALE_DIR, TEMPLATES
from compliance.notify.settings import LANGUAGES

POT = LOCALE_DIR / f"{DOMAIN}.pot"
_FIXED_DATE = datetime(2026, 11, 27, tzinfo=UTC)  # stable headers: regenerating changes no byte
_JINJA = {"trimmed": "true", "silent": "false", "newstyle_gettext": "true",
          **{k: str(v).lower() for k, v in JINJA_OPTIONS.items() if k != "keep_trailing_newline"}}


def po_path(language: str, root: Path = LOCALE_DIR) -> Path:
    return root / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def mo_path(language: str, root: Path = LOCALE_DIR) -> Path:
    return po_path(language, root).with_suffix(".mo")


def extract(templates: Path = TEMPLATES) -> Catalog:
    """Every translatable message of the templates."""
    catalog = Catalog(project="qscan notifications", version="1", charset="utf-8",
                      creation_date=_FIXED_DATE, fuzzy=False)
    method_map = [("**.txt", "jinja2.ext:babel_extract"), ("**.html", "jinja2.ext:babel_extract")]
    options_map = {"**.txt": _JINJA, "**.html": _JINJA}
    for filename, lineno, message, comments, context in extract_from_dir(
        str(templates), method_map, options_map, keywords={"_": None, "gettext": None,
                                                           "ngettext": (1, 2)},
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def read(path: Path, language: str | None = None) -> Catalog:
    with path.open("rb") as f:
        return read_po(f, locale=language)


def write(path: Path, catalog: Catalog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    write_po(buf, catalog, width=100, sort_output=True, include_previous=False)
    path.write_bytes(buf.getvalue())


def compiled(catalog: Catalog) -> bytes:
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    return buf.getvalue()


def update_all() -> list[str]:
    """Re-extract the .pot, merge it into every .po, compile every .mo; returns what changed."""
    template = extract()
    write(POT, template)
    changed = []
    for lang in LANGUAGES:
        path = po_path(lang)
        catalog = read(path, lang) if path.exists() else Catalog(locale=lang, project="qscan notifications",
                                                                 version="1", creation_date=_FIXED_DATE)
        catalog.update(template, update_header_comment=False)
        catalog.revision_date = _FIXED_DATE
        catalog.obsolete.clear()
        write(path, catalog)
        mo = compiled(catalog)
        if not mo_path(lang).exists() or mo_path(lang).read_bytes() != mo:
            mo_path(lang).write_bytes(mo)
            changed.append(str(mo_path(lang)))
    return changed


def _mo_messages(data: bytes) -> dict[object, str]:
    catalog = gettext.GNUTranslations(io.BytesIO(data))._catalog  # type: ignore[attr-defined]
    return {k: v for k, v in catalog.items() if k != ""}


def check(root: Path = LOCALE_DIR) -> list[str]:
    """Everything wrong with the catalogs, one line each (empty: complete and compiled)."""
    problems: list[str] = []
    template = extract()
    wanted = {m.id if isinstance(m.id, str) else m.id[0]: m for m in template if m.id}
    pot_path = root / POT.name
    if not pot_path.exists():
        problems.append(f"{pot_path}: missing (run `qscan notify catalogs`)")
    else:
        pot = {m.id if isinstance(m.id, str) else m.id[0] for m in read(pot_path) if m.id}
        if pot != set(wanted):
            problems.append(f"{pot_path}: stale (run `qscan notify catalogs`)")
    for lang in LANGUAGES:
        path = po_path(lang, root)
        if not path.exists():
            problems.append(f"{lang}: no catalog {path}")
            continue
        catalog = read(path, lang)
        for key, msg in wanted.items():
            found = catalog.get(msg.id)
            if found is None:
                problems.append(f"{lang}: missing {key!r}")
                continue
            strings = found.string if isinstance(found.string, (list, tuple)) else [found.string]
            if found.fuzzy:
                problems.append(f"{lang}: fuzzy {key!r}")
            if isinstance(msg.id, tuple) and len(strings) != catalog.num_plurals:
                problems.append(f"{lang}: {key!r} has {len(strings)} plural forms, needs "
                                f"{catalog.num_plurals}")
            if not all(strings):
                problems.append(f"{lang}: untranslated {key!r}")
        for msg, errors in catalog.check():
            for err in errors:
                problems.append(f"{lang}: {msg.id!r}: {err}")
        mo = mo_path(lang, root)
        if not mo.exists():
            problems.append(f"{lang}: not compiled ({mo} missing)")
        elif _mo_messages(mo.read_bytes()) != _mo_messages(compiled(catalog)):
            problems.append(f"{lang}: {mo} is older than its .po (run `qscan notify catalogs`)")
    return problems
