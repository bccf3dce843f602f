"""The console's areas, in navigation order: every route the app serves comes from here.

An area is a module of this package with ``ROUTES`` (Starlette routes whose endpoints are
``console.page``-wrapped handlers) and optionally ``NAV`` (its navigation links, with the roles
that see them). A new area (quarantine, holds and exports, dashboard...) is one module and one
entry in ``AREAS``.
"""

from __future__ import annotations

from types import ModuleType

from starlette.routing import BaseRoute

from qscan.web import activity, audit, auth, dashboard, discover, holds, message, quarantine
from qscan.web.console import NavItem

AREAS: tuple[ModuleType, ...] = (dashboard, audit, message, quarantine, holds, discover, activity, auth)


def routes() -> list[BaseRoute]:
    return [route for area in AREAS for route in area.ROUTES]


def nav() -> list[NavItem]:
    return [item for area in AREAS for item in getattr(area, "NAV", ())]
