"""The optional parts of qscan (pip extras) and the one-line hint a command gives when one is missing.

The base install is scanning, the journal, the SQLite store and the CLI; Kafka (``qscan[kafka]``),
PostgreSQL (``qscan[postgres]``) and the web console (``qscan[web]``) are extras
(docs/packaging.md). A command that reaches for a missing one stops with ``qscan: ... needs the
kafka extra: pip install 'qscan[kafka]'``, not with a traceback ending in ``ModuleNotFoundError``.
"""

from __future__ import annotations

# top-level module -> the extra that installs it
MODULES = {"kafka": "kafka", "lz4": "kafka", "zstandard": "kafka", "crc32c": "kafka",
           "psycopg": "postgres", "psycopg_binary": "postgres", "psycopg_c": "postgres",
           "cryptography": "signing",
           "starlette": "web", "uvicorn": "web", "multipart": "web", "python_multipart": "web",
           "itsdangerous": "web", "argon2": "web", "_argon2_cffi_bindings": "web"}
NEEDS = {"kafka": "Kafka (log.kafka, --source kafka)", "postgres": "PostgreSQL (a postgresql:// sql.url)",
         "signing": "Signed anchors (anchor.signing_key, anchor.public_key)",
         "web": "The web console (qscan web)"}


def missing_extra(exc: BaseException | None) -> str | None:
    """The extra whose absence raised ``exc`` (or an exception it was raised from), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            extra = MODULES.get(exc.name.split(".", 1)[0])
            if extra:
                return extra
        exc = exc.__cause__ or exc.__context__
    return None


def hint(extra: str) -> str:
    return f"{NEEDS.get(extra, extra)} needs the {extra} extra: pip install 'qscan[{extra}]'"
