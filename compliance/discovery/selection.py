"""From a discovery search to a hold or an export: the whole result set, recorded.

``qscan hold create --query`` and ``qscan export --query`` take every message a search
finds (all pages, every copy of a message, not the one hit per hash a result page shows)
and record how they were chosen: the query as typed and in canonical form, the metadata
filters, the counts, and the result set as event ids with the messages' hashes
(``ingest.event.DiscoveryQuery``, ``SelectedItem``). Running the recorded search again
(``rerun``) shows what changed since: messages indexed since that match, and messages
that no longer do (deleted by retention, or the index rebuilt without them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from compliance.discovery.index import DiscoveryIndex
from compliance.discovery.query import Node, parse, render
from compliance.discovery.search import Counts, Filters, Match, Searcher
from ingest.event import DiscoveryQuery, SelectedItem


@dataclass(frozen=True, slots=True)
class Selection:
    """A search run to choose messages: what was asked, and everything it found."""

    query: str  # as typed
    tree: Node
    filters: Filters
    counts: Counts
    matches: tuple[Match, ...]

    @property
    def canonical(self) -> str:
        return render(self.tree)

    def record(self) -> DiscoveryQuery:
        return DiscoveryQuery(query=self.query, canonical=self.canonical,
                              filters=self.filters.as_json(), total=self.counts.total,
                              incomplete=self.counts.incomplete)

    def items(self) -> list[SelectedItem]:
        return [SelectedItem(event_id=m.event_id, sha256=m.sha256) for m in self.matches]

    @property
    def event_ids(self) -> list[str]:
        return [m.event_id for m in self.matches]


def select_messages(index: DiscoveryIndex, query: str, filters: Filters) -> Selection:
    """Run ``query`` (raises ``QueryError`` when it does not parse) and take every match."""
    tree = parse(query)
    searcher = Searcher(index)
    counts = searcher.search(tree, filters, page=1, page_size=1).counts
    return Selection(query, tree, filters, counts, tuple(searcher.matches(tree, filters)))


@dataclass(frozen=True, slots=True)
class Change:
    """A recorded search run again: what it finds now that it did not, and the reverse."""

    then: DiscoveryQuery
    then_items: tuple[SelectedItem, ...]
    now: Selection
    added: tuple[Match, ...]  # found now, not then (e.g. mail indexed since)
    removed: tuple[SelectedItem, ...]  # found then, not now (e.g. deleted, index rebuilt)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


def rerun(index: DiscoveryIndex, then: DiscoveryQuery, items: Sequence[SelectedItem]) -> Change:
    """Run a recorded search again, as recorded (its canonical query, its filters)."""
    now = select_messages(index, then.canonical, Filters.from_json(then.filters))
    before = {i.event_id for i in items}
    found = {m.event_id for m in now.matches}
    return Change(then=then, then_items=tuple(items), now=now,
                  added=tuple(m for m in now.matches if m.event_id not in before),
                  removed=tuple(i for i in items if i.event_id not in found))
