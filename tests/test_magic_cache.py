"""libmagic's answers, remembered per worker (scanners/mime/filetype.py): the same answer as a
fresh libmagic for every payload, libmagic asked once per distinct bytes, bounded, not
carried across a fork."""

from __future__ import annotations

import os
import random

import pytest

from bench.corpus import generate
from scanners.mime import filetype
from scanners.mime.filetype import MAGIC_HEAD, TEXT_HEAD, magic_available, magic_type
from scanners.mime.parse import parse, part_payload
from tests.conftest import require
from tests.internal_corpus import ELF, pe_bytes, zip_bytes


def _payloads() -> list[bytes]:
    out = [pe_bytes(), ELF, zip_bytes({"a.txt": b"hello\n"}), b"#!/bin/sh\necho hi\n",
           b"<html><body>x</body></html>\n", b"%PDF-1.7\n", b"\0" * 2000 + b"CD001", b"x"]
    for m in generate(120):
        for part in parse(m.data).walk():
            if not part.is_multipart():
                out.append(part_payload(part))
    return [p for p in out if p]


def _libmagic(data: bytes) -> str | None:
    """A fresh libmagic handle's answer, as magic_type asks it (no memory)."""
    import magic

    size = MAGIC_HEAD if b"\0" in data[:1024] else TEXT_HEAD
    mtype = magic.Magic(mime=True).from_buffer(data[:size])
    return str(mtype) if mtype else None


@pytest.fixture(autouse=True)
def _libmagic_present() -> None:
    require("libmagic", magic_available())


def test_answers_are_libmagics_and_each_distinct_payload_is_asked_once() -> None:
    payloads = _payloads()
    filetype._MAGIC.answers.clear()
    before = filetype._MAGIC.calls
    first = [magic_type(p) for p in payloads]
    again = [magic_type(p) for p in reversed(payloads)][::-1]
    assert first == again == [_libmagic(p) for p in payloads]
    distinct = {p[: MAGIC_HEAD if b"\0" in p[:1024] else TEXT_HEAD] for p in payloads}
    assert filetype._MAGIC.calls - before == len(distinct)
    assert {"text/plain", "application/pdf", "application/zip"} <= set(first)


def test_the_memory_is_bounded_and_least_recently_used_goes_first() -> None:
    rng = random.Random(3)
    filetype._MAGIC.answers.clear()
    keep = b"#!/bin/sh\necho kept\n"
    magic_type(keep)
    for i in range(filetype.MAGIC_CACHE_SIZE + 50):
        magic_type(rng.randbytes(64) + b"\0" + str(i).encode())
        if i % 100 == 0:
            magic_type(keep)  # used again: stays
    assert len(filetype._MAGIC.answers) == filetype.MAGIC_CACHE_SIZE
    calls = filetype._MAGIC.calls
    assert magic_type(keep) == _libmagic(keep)
    assert filetype._MAGIC.calls == calls


def test_a_forked_worker_starts_with_its_own_handle_and_no_answers() -> None:
    magic_type(b"#!/bin/sh\necho parent\n")
    assert filetype._MAGIC.answers
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports how many answers it inherited after its first question
        try:
            magic_type(b"child only\n")
            os.write(w, str(len(filetype._MAGIC.answers)).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"1"
