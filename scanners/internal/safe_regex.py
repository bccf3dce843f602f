"""Regexes for rules: RE2 (google-re2), linear in the input, because mail text is hostile.

Python's ``re`` backtracks: a rule like ``(a+)+$`` against a crafted subject
can pin a worker for minutes. RE2 guarantees linear time and bounded memory;
the price is no backreferences or lookaround, which ``qscan policy check``
reports as a bad regex. Globs (attachment names, types, addresses) are
translated to RE2 too, so no rule ever reaches a backtracking engine.
"""

from __future__ import annotations

from typing import Any, Protocol

import re2

MAX_PROGRAM_MEM = 8 << 20  # bytes of RE2 program memory per pattern


class RegexError(ValueError):
    """A pattern RE2 will not compile (syntax, backreference, lookaround, too big)."""


class Pattern(Protocol):
    def search(self, text: str) -> Any: ...
    def fullmatch(self, text: str) -> Any: ...


def _options(ignore_case: bool) -> Any:
    opts = re2.Options()
    opts.log_errors = False
    opts.case_sensitive = not ignore_case
    opts.max_mem = MAX_PROGRAM_MEM
    return opts


_CI = _options(True)
_CS = _options(False)


def compile_regex(pattern: str, ignore_case: bool = True) -> Pattern:
    try:
        return re2.compile(pattern, _CI if ignore_case else _CS)
    except Exception as exc:  # re2.error carries bytes
        msg = exc.args[0] if exc.args else str(exc)
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise RegexError(f"{pattern!r}: {msg}") from None


def glob_to_regex(glob: str) -> str:
    """``*`` any run, ``?`` one character, ``[abc]``/``[!abc]`` a class; everything else literal."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = glob.find("]", i + 2 if glob[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(r"\[")
            else:
                body = glob[i + 1 : j]
                neg = body.startswith("!")
                body = body[1:] if neg else body
                body = body.replace("\\", r"\\").replace("^", r"\^").replace("[", r"\[")
                out.append(f"[{'^' if neg else ''}{body}]")
                i = j
        else:
            out.append(re2.escape(c))
        i += 1
    return "".join(out)


def compile_globs(globs: list[str], ignore_case: bool = True) -> Pattern:
    """One pattern matching a whole string against any of the globs."""
    body = "|".join(f"(?:{glob_to_regex(g)})" for g in globs)
    return compile_regex(f"(?s)^(?:{body})$", ignore_case)
