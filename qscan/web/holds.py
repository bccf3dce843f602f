"""Legal holds and exports: create a hold from an audit search, list and release holds, start
an export of a matter, download it as a zip, check it (``export verify``) and run ``qscan verify``.

Each goes through what the CLI runs: ``compliance.holds.create``/``release`` (``qscan hold``),
``compliance.export.run`` and ``verify_export`` (``qscan export``, ``export verify``), and
``qscan.cli.compliance.run_verify`` (``qscan verify``); their events (``hold.created``,
``hold.released``, ``export.completed``) name the signed-in ``login@host``; a zip download is an
``export.downloaded`` event (who, from where, the zip's hash) before its first byte is sent. A hold made here
selects with the audit search's filters exactly as ``qscan hold create`` does with the same
options (the time range becomes the hold's own dates). Roles: ``legal`` and ``postmaster``;
``auditor`` may also run the verification.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from compliance import audit as store
from compliance import export as ex
from compliance import holds
from ingest.event import ExportDownloaded
from ingest.ids import uuid7
from qscan.web.audit import FIELDS as AUDIT_FIELDS
from qscan.web.audit import read_filters
from qscan.web.console import NavItem, Refused, Visit, page
from qscan.web.jobs import QUICK, Job, JobFailed, Progress

LEGAL = frozenset({"legal", "postmaster"})
VERIFIERS = LEGAL | {"auditor"}
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
DONE = {"created": "The hold is in place.", "released": "The hold is released.",
        "exported": "The export is complete."}


def export_dir(visit: Visit) -> Path:
    return visit.cfg.web.export_dir or visit.cfg.data_dir / "exports"


def _audit_query(params: Any) -> str:
    return urlencode([(f.name, params[f.name]) for f in AUDIT_FIELDS if params.get(f.name)])


@page(LEGAL)
async def listing(visit: Visit) -> Response:
    include = visit.request.query_params.get("all") == "1"
    rows = await visit.run(holds.listing, visit.console.engine, include_released=include)
    exports = await visit.run(ex.listing, visit.console.engine)
    done = DONE.get(visit.request.query_params.get("done", ""))
    for r in rows:
        r["filters"] = holds.query_text(r["query"])
    return visit.render("holds.html", rows=rows, include=include, exports=exports, done=done,
                        fields=AUDIT_FIELDS, error=None)


def _spec_parts(params: Any) -> tuple[store.Filters, dict[str, str]]:
    try:
        return read_filters(params)
    except store.FilterError as exc:
        raise Refused(400, str(exc)) from exc


@page(LEGAL)
async def new(visit: Visit) -> Response:
    """The hold form for an audit search (its query string)."""
    params = visit.request.query_params
    filters, typed = _spec_parts(params)
    count = await visit.run(store.count, visit.console.engine, filters, cap=100_001)
    return visit.render("hold_new.html", typed={k: v for k, v in typed.items() if v},
                        query=_audit_query(params), count=count, error=None, form={})


@page(LEGAL)
async def create(visit: Visit) -> Response:
    from urllib.parse import parse_qsl

    account = visit.account
    assert account is not None and visit.form is not None
    form = {k: str(visit.form.get(k, "")).strip() for k in ("matter", "custodians", "reason", "q")}
    params = dict(parse_qsl(form["q"]))
    filters, typed = _spec_parts(params)
    query = type(filters)(**{**filters.__dict__, "since": None, "until": None})
    custodians = tuple(c for c in re.split(r"[\s,]+", form["custodians"]) if c)

    def run() -> None:
        from qscan.wiring.compliance import log_appender

        spec = holds.HoldSpec(matter=form["matter"], custodians=custodians, since=filters.since,
                              until=filters.until, query=query)
        with log_appender(visit.cfg) as append:
            holds.create(visit.console.engine, append, spec, reason=form["reason"],
                         actor=visit.console.actor(account), host=visit.cfg.hostname)

    try:
        await visit.run(run)
    except (holds.HoldError, store.FilterError) as exc:
        count = await visit.run(store.count, visit.console.engine, filters, cap=100_001)
        return visit.render("hold_new.html", status=409, typed={k: v for k, v in typed.items() if v},
                            query=form["q"], count=count, error=str(exc), form=form)
    return RedirectResponse("/holds?done=created", status_code=303)


@page(LEGAL)
async def release(visit: Visit) -> Response:
    from qscan.wiring.compliance import log_appender

    account = visit.account
    assert account is not None and visit.form is not None
    hold_id = str(visit.request.path_params["hold_id"])
    reason = str(visit.form.get("reason", "")).strip()

    def run() -> None:
        with log_appender(visit.cfg) as append:
            holds.release(visit.console.engine, append, hold_id, reason=reason,
                          actor=visit.console.actor(account), host=visit.cfg.hostname)

    try:
        await visit.run(run)
    except holds.HoldError as exc:
        raise Refused(409, str(exc)) from exc
    return RedirectResponse("/holds?done=released", status_code=303)


@page(LEGAL)
async def start_export(visit: Visit) -> Response:
    from qscan import __version__
    from qscan.wiring.compliance import archived, copy_store, journal_raw, log_appender

    account = visit.account
    assert account is not None and visit.form is not None
    matter = str(visit.form.get("matter", "")).strip()
    fmt: Literal["eml", "mbox"] = "mbox" if visit.form.get("format") == "mbox" else "eml"
    prefix = str(visit.form.get("prefix", "") or "QSCAN").strip()
    base = export_dir(visit)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", matter).strip("-")[:40] or "matter"
    out = base / f"{slug}-{datetime.now(UTC):%Y%m%dT%H%M%S}"

    def run(progress: Progress) -> str:
        from compliance.copystore import CopyError

        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        req = ex.ExportRequest(matter=matter, out=out, actor=visit.console.actor(account),
                               host=visit.cfg.hostname, tool_version=__version__, fmt=fmt,
                               prefix=prefix)
        try:
            with log_appender(visit.cfg) as append, journal_raw(visit.cfg) as raw:
                ev = ex.run(visit.console.engine, copy_store(visit.cfg), append, req,
                            raw_from_log=raw, archived=archived(visit.cfg), progress=progress)
        except (ex.ExportError, CopyError) as exc:
            raise JobFailed(f"The export was not made: {exc}") from exc
        return ev.event_id

    # A big matter takes minutes: past QUICK seconds the export goes on in a thread of the
    # console and the person watches its progress page (no request outlives a proxy's timeout).
    job = visit.console.jobs.start("export", matter, visit.console.actor(account), run)
    await run_in_threadpool(job.finished.wait, QUICK)
    if job.state == "failed":
        raise Refused(409, job.error or "The export was not made.")
    return RedirectResponse(_job_next(job) or f"/exports/jobs/{job.id}", status_code=303)


def _job_next(job: Job) -> str | None:
    """Where a finished export job leads: its export's page; None while it runs or if it failed."""
    if job.state == "done" and job.result:
        return f"/exports/{job.result}?done=exported"
    return None


@page(LEGAL)
async def export_job(visit: Visit) -> Response:
    """An export under way: its progress, reloading every 2 s until it is done or failed."""
    job = visit.console.jobs.get(str(visit.request.path_params["job_id"]))
    if job is None or job.kind != "export":
        raise Refused(404, "There is no such export under way. If the console was restarted "
                           "meanwhile, the export was cut off: start it again from the holds page.")
    if (goto := _job_next(job)) is not None:
        return RedirectResponse(goto, status_code=303)
    return visit.render("export_job.html", status=409 if job.state == "failed" else 200, job=job)


def _export(visit: Visit) -> dict[str, Any]:
    export_id = str(visit.request.path_params["export_id"]).lower()
    found = ex.get(visit.console.engine, export_id) if _ID.match(export_id) else None
    if found is None:
        raise Refused(404, "There is no such export.")
    return found


@page(LEGAL)
async def show_export(visit: Visit) -> Response:
    row = await visit.run(_export, visit)
    problems: list[str] | None = None
    if visit.request.query_params.get("verify") == "1":
        problems = await visit.run(ex.verify_export, Path(row["out_dir"]), visit.console.engine)
    done = DONE.get(visit.request.query_params.get("done", ""))
    return visit.render("export.html", e=row, problems=problems, done=done,
                        present=Path(row["out_dir"]).is_dir())


def _zip(directory: Path) -> tuple[IO[bytes], str, int]:
    """The export directory as a zip (stored, not compressed: the files are hashed as made),
    with its SHA-256 and size."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 (closed by download() once streamed)
    with zipfile.ZipFile(spool, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and not path.is_symlink():
                z.write(path, f"{directory.name}/{path.relative_to(directory).as_posix()}")
    size = spool.tell()
    spool.seek(0)
    digest = hashlib.file_digest(spool, "sha256").hexdigest()
    spool.seek(0)
    return spool, digest, size


@page(LEGAL)
async def download(visit: Visit) -> Response:
    row = await visit.run(_export, visit)
    directory = Path(row["out_dir"])
    if not directory.is_dir():
        raise Refused(404, f"The export's directory is gone ({directory}).")
    account = visit.account
    assert account is not None
    spool, digest, size = await visit.run(_zip, directory)
    event = ExportDownloaded(event_id=str(uuid7()), time=datetime.now(UTC), host=visit.cfg.hostname,
                             export_id=row["export_id"], matter=row["matter"],
                             actor=visit.console.actor(account), role=account.role,
                             remote=visit.remote, sha256=digest, bytes=size)
    try:
        await visit.run(visit.console.append, event)  # recorded before a byte is handed out
    except BaseException:
        spool.close()
        raise

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while True:
                data = await run_in_threadpool(spool.read, 1 << 20)
                if not data:
                    break
                yield data
        finally:
            spool.close()

    return StreamingResponse(chunks(), media_type="application/zip", headers={
        "content-disposition": f'attachment; filename="{directory.name}.zip"'})


@page(VERIFIERS)
async def verify_page(visit: Visit) -> Response:
    report: Any = None
    error = None
    if visit.request.method == "POST":
        import click

        from qscan.cli.compliance import run_verify
        from qscan.cli.progress import progress_bar

        def run() -> Any:
            with progress_bar(disable=True) as bar:
                return run_verify(visit.cfg, visit.console.engine, bar)

        try:
            report = await visit.run(run)
        except click.ClickException as exc:
            error = exc.format_message()
    return visit.render("verify.html", report=report, error=error,
                        run_at=datetime.now(UTC) if report is not None else None)


NAV = [NavItem("Holds & exports", "/holds", LEGAL), NavItem("Verify", "/verify", VERIFIERS)]
ROUTES = [
    Route("/holds", listing, name="holds"),
    Route("/holds/new", new, name="hold_new"),
    Route("/holds/new", create, methods=["POST"], name="hold_create"),
    Route("/holds/{hold_id}/release", release, methods=["POST"], name="hold_release"),
    Route("/exports", start_export, methods=["POST"], name="export_start"),
    Route("/exports/jobs/{job_id}", export_job, name="export_job"),
    Route("/exports/{export_id}", show_export, name="export"),
    Route("/exports/{export_id}/download", download, methods=["POST"], name="export_download"),
    Route("/verify", verify_page, methods=["GET", "POST"], name="verify"),
]
