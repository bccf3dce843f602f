"""How a package declares its settings, once: a frozen dataclass whose fields say it all.

Each package that can be configured owns one settings class (``ClamdSettings`` in
scanners/clamd.py, ``DaemonSettings`` in ingest/daemon.py ...): a frozen dataclass whose every
field is written with :func:`setting`: the default, the description shown by ``qscan config
example``, an example value for a key unset by default, and the bounds. ``qscan/config.py``
composes these classes into its ``Config`` model and the wiring hands each one to its package as
it is; nothing copies them field by field.

Nothing here imports pydantic (the message path does not need it): pydantic validates a
dataclass directly, reads the metadata keys it knows (``description``, ``examples``, ``ge``,
``le``, ``gt``, ``pattern``, ``max_length``, ``json_schema_extra``) and the class's
``__pydantic_config__`` (:data:`SECTION`: an unknown key is an error), and calls the
``__get_pydantic_core_schema__`` of :class:`Check` and :class:`Secret` only when a config file
is validated.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, TypeVar

# Every settings class sets ``__pydantic_config__ = SECTION``: an unknown key in its TOML table
# is an error naming file, line and key (qscan/config.py), never silently ignored.
SECTION: dict[str, Any] = {"extra": "forbid"}
MiB = 1024 * 1024
_UNSET: Any = object()
T = TypeVar("T")


def setting(default: Any = _UNSET, about: str = "", *, example: Any = _UNSET, repr: bool = True,
            **bounds: Any) -> Any:
    """A settings field: its default, its description and, for a key unset by default, an
    example value (shown commented out by ``qscan config example``); ``bounds`` are the
    pydantic Field constraints (``ge=1``, ``pattern=...``); ``repr=False`` for a password. A
    list, dict or set default is copied for each instance."""
    meta: dict[str, Any] = dict(bounds)
    if about:
        meta["description"] = " ".join(about.split())
    if example is not _UNSET:
        meta["examples"] = [example]
    if default is _UNSET:
        return dataclasses.field(metadata=meta, repr=repr)
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta, repr=repr)
    return dataclasses.field(default=default, metadata=meta, repr=repr)


def extend(settings: Any, cls: Callable[..., T], **resolved: Any) -> T:
    """``settings`` as an instance of ``cls``, a subclass adding what is resolved at start-up
    (the uids of user names, this host's client id): every setting carried over as it is."""
    return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}, **resolved)


class Check:
    """``Annotated[T, Check(fn, *uses)]``: a field validator, run by pydantic after T's own.

    ``fn(value, **earlier)`` returns the value (normalised) or raises ValueError, which becomes
    a config error on the field's key. ``uses`` names fields declared before this one that ``fn``
    takes as keywords; when one of them failed validation itself the check is skipped (its own
    error is reported)."""

    __slots__ = ("before", "fn", "uses")

    def __init__(self, fn: Callable[..., Any], *uses: str, before: bool = False) -> None:
        self.fn = fn
        self.uses = uses
        self.before = before  # fn turns what the file says into T ('forever' -> None) first

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        from pydantic_core import core_schema

        schema = handler(source)
        if self.before:
            return core_schema.no_info_before_validator_function(self.fn, schema)
        if not self.uses:
            return core_schema.no_info_after_validator_function(self.fn, schema)
        fn, uses = self.fn, self.uses

        def run(value: Any, info: Any) -> Any:
            earlier = info.data or {}
            if any(name not in earlier for name in uses):
                return value
            return fn(value, **{name: earlier[name] for name in uses})

        return core_schema.with_info_after_validator_function(run, schema)


class Secret(str):
    """A password setting: used as the str it is, never shown (repr, ``config check``)."""

    __slots__ = ()
    MASK = "**********"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.MASK!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Callable[[Any], Any]) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda _v: cls.MASK))


# -- checks shared by several packages' settings --------------------------------------------
def valid_regex(value: str | None) -> str | None:
    """A regular expression that compiles (empty: unset)."""
    if value:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
    return value


def socket_path(value: str) -> str:
    """A unix socket path, or empty for TCP host/port."""
    if value and not value.startswith("/"):
        raise ValueError("must be an absolute path, or empty to use TCP host/port")
    return value


def domain_names(value: tuple[str, ...]) -> tuple[str, ...]:
    """Domains as matched (scanners/direction.py): lower case, no trailing dot, no blanks."""
    return tuple(v.strip().lower().rstrip(".") for v in value if v.strip())
