"""The dashboard: traffic and verdicts over time, consumer lag and scanner health.

The charts are ``qscan report``'s (qscan.ops.report: ``gather`` over the same window and bucket
rules, ``chart_traffic``/``chart_verdicts`` drawing the same SVG), shown as ``data:`` images: an
SVG in an ``<img>`` never runs anything, and the CSP already allows ``img-src data:``. Health is
``qscan status``'s ``collect`` (daemon, journal, each consumer's position and lag, the Kafka
relay, sinks, scanners, disks) with its problems listed as the command prints them.
Staff roles see it; a ``user`` does not (the figures cover everyone's mail).
"""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from qscan.web.console import NavItem, Visit, page

ROLES = frozenset({"postmaster", "auditor", "dlp-officer", "legal"})
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PROBE_TIMEOUT = 2.0


def _svg(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def charts(visit: Visit, period: str) -> dict[str, Any]:
    from qscan.ops import report

    engine = visit.console.engine
    if period in PERIODS:
        start, end = report.window(PERIODS[period])
    else:
        start, end = report.data_window(engine)
    data = report.gather(engine, start, end, report.choose_step(end - start))
    return {"start": start, "end": end, "messages": data.messages, "totals": data.totals,
            "traffic": _svg(report.chart_traffic(data)),
            "verdicts": _svg(report.chart_verdicts(data))}


def health(visit: Visit) -> dict[str, Any]:
    from qscan.ops.status import collect

    st = collect(visit.cfg, probe_timeout=PROBE_TIMEOUT)
    return {**st.info, "problems": [p.what for p in st.problems], "exit_code": st.exit_code}


@page(ROLES)
async def dashboard(visit: Visit) -> Response:
    period = visit.request.query_params.get("period", "")
    period = period if period in PERIODS else ""
    # side by side: the charts read the SQL store while status probes the daemon and scanners
    drawn, status = await asyncio.gather(visit.run(charts, visit, period), visit.run(health, visit))
    return visit.render("dashboard.html", c=drawn, st=status, period=period, periods=list(PERIODS))


NAV = [NavItem("Dashboard", "/dashboard", ROLES)]
ROUTES = [Route("/dashboard", dashboard, name="dashboard")]
