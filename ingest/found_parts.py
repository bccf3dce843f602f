"""Folding the parts scanners found (archive members, re-typed parts) into the event's part list."""

from __future__ import annotations

from ingest.event import Part
from scanners.base import PartInfo


def merge_found_parts(parts: list[Part], found: list[PartInfo]) -> list[Part]:
    """A new list: a found path already listed refines that part's detected type (a new Part in
    its place: parts are frozen); a new path is appended (members follow the list in the order
    scanners found them). ``parts`` itself is left as it was."""
    if not found:
        return parts
    out = list(parts)
    index = {p.path: i for i, p in enumerate(out)}
    for f in found:
        at = index.get(f.path)
        if at is not None:
            if f.detected_type:
                out[at] = out[at].model_copy(update={"detected_type": f.detected_type})
            continue
        index[f.path] = len(out)
        out.append(Part(path=f.path, content_type=f.content_type, detected_type=f.detected_type,
                        filename=f.filename, size=f.size, sha256=f.sha256))
    return out
