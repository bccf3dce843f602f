"""Folding the parts scanners found (archive members, re-typed parts) into the event's part list."""

from __future__ import annotations

from ingest.event import Part
from scanners.base import PartInfo


def merge_found_parts(parts: list[Part], found: list[PartInfo]) -> list[Part]:
    """A found path already listed refines that part's detected type; a new path is appended
    (members follow the list in the order scanners found them)."""
    if not found:
        return parts
    index = {p.path: p for p in parts}
    for f in found:
        known = index.get(f.path)
        if known is not None:
            if f.detected_type:
                known.detected_type = f.detected_type
            continue
        part = Part(path=f.path, content_type=f.content_type, detected_type=f.detected_type,
                    filename=f.filename, size=f.size, sha256=f.sha256)
        parts.append(part)
        index[f.path] = part
    return parts
