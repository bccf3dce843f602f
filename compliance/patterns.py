"""The ``*`` wildcard of audit and quarantine filters, as SQL ``LIKE`` (escape character ``\\``).

A user's ``*`` matches any run of characters; ``%``, ``_`` and ``\\`` are taken literally.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, SQLColumnExpression


def like_pattern(value: str, *, contains: bool = False) -> str:
    """``value`` as a LIKE pattern (use with ``escape="\\\\"``); ``contains``: anywhere in the text."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = escaped.replace("*", "%")
    return f"%{pattern}%" if contains else pattern


def wildcard_match(column: SQLColumnExpression[str | None] | SQLColumnExpression[str], value: str
                   ) -> ColumnElement[bool]:
    """``column`` equals ``value``, or matches it as a pattern when it has a ``*``."""
    return column.like(like_pattern(value), escape="\\") if "*" in value else column == value
