"""Which way a message goes: the one rule, for scanners' rules, events, SQL, metrics and reports.

- **outbound**: the mail leaves the site: a trusted relay client sent it (RELAYCLIENT), or it was
  injected on this host to a recipient outside the local domains. Events record this fact as
  ``client.outbound``; where it is unknown (events written before it, archived copies) ``relay``
  stands for it.
- **local**: injected on this host (no client IP from a trusted SMTP peer), and nothing leaves.
- **inbound**: everything else: mail an SMTP client hands in for local recipients.
"""

from __future__ import annotations

from typing import Literal

Direction = Literal["inbound", "outbound", "local"]
DIRECTIONS: tuple[Direction, ...] = ("inbound", "outbound", "local")


def leaves_site(relay: bool, outbound: bool | None = None) -> bool:
    """The mail leaves the site: ``outbound`` where it is known, else ``relay``."""
    return relay if outbound is None else outbound


def direction(relay: bool, client_ip: str | None, outbound: bool | None = None,
              local: bool = False) -> Direction:
    """``outbound``, ``local`` (injected here: ``local`` set or no client IP) or ``inbound``."""
    if leaves_site(relay, outbound):
        return "outbound"
    return "local" if local or not client_ip else "inbound"


def in_domains(domain: str, domains: tuple[str, ...]) -> bool:
    """``domain`` (lower case, no trailing dot) is one of ``domains``: exact names, and
    '.example.com' for every subdomain of example.com (qmail's rcpthosts convention)."""
    return any(domain == d or (d.startswith(".") and domain.endswith(d)) for d in domains)
