"""Command-line antivirus engines (commercial scanners without a daemon protocol).

The command is an argv list, never a shell string: ``{path}`` in an argument is
replaced by the scan directory (``target = "directory"``, one run per message) or
by each file in turn (``target = "file"``). The files are the decoded MIME parts
under names qscan makes up (``part-3-1.2``; attachment names never become paths),
plus ``message.eml`` with ``redundant``. The exit code is looked up in
``exit_codes`` (unlisted codes are errors) and the virus name is taken from the
output with ``virus_regex`` (its ``name`` group, else its first group).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from scanners import outcomes
from scanners.base import ScanContext
from scanners.outcomes import FailurePolicy, VirusAction
from scanners.result import ScanResult
from scanners.settings import SECTION, Check, setting, valid_regex

log = logging.getLogger(__name__)
PLACEHOLDER = "{path}"
_UNSAFE = re.compile(r"[^0-9A-Za-z.]")
MAX_OUTPUT = 64 * 1024
ExitMeaning = Literal["clean", "virus", "error"]


@dataclass(frozen=True, slots=True)
class CmdlineSettings:
    """A command-line antivirus program, how it is run and how its answer is read."""

    __pydantic_config__ = SECTION
    name: str = setting("cmdline", "name in findings, headers", pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    argv: tuple[str, ...] = setting(
        (), "program and arguments, no shell; '{path}' is replaced by the directory or file, e.g. "
        '["/opt/av/bin/scan", "--recursive", "{path}"]; required when cmdline is enabled')
    target: Literal["directory", "file"] = setting("directory")
    exit_codes: dict[int, ExitMeaning] = setting(
        {0: "clean", 1: "virus"}, "exit code meanings; unlisted codes are errors")
    virus_regex: Annotated[str, Check(valid_regex)] = setting(
        r"(?m)(?P<name>[^\s:]+)[ \t]+FOUND[ \t]*$",
        "finds the virus name in the output (group 'name', else the first group)")
    timeout: float = setting(60.0, gt=0)
    redundant: bool = setting(False, "also give the scanner the raw message (message.eml)")
    failure_policy: FailurePolicy = setting("tempfail")
    action: VirusAction = setting("quarantine")
    version: str = setting("", "version shown in the diagnostics header", max_length=60)
    version_argv: tuple[str, ...] = setting((), "command printing the version (first line is used)")
    tmp_dir: Path | None = setting(
        None, "where scan directories are made (default: system temp)", example="/var/tmp/qscan")


class CommandFailed(Exception):
    """The scanner program could not be run, timed out, or gave an unmapped exit code."""


@dataclass(frozen=True, slots=True)
class Run:
    code: int
    output: str


def run_argv(argv: list[str], timeout: float, cwd: str | None = None) -> Run:
    """Run without a shell, in its own process group (killed whole on timeout)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"}
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, close_fds=True, start_new_session=True,
        )
    except OSError as exc:
        raise CommandFailed(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from exc
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise CommandFailed(f"{argv[0]} timed out after {timeout:g}s") from exc
    return Run(proc.returncode, out[:MAX_OUTPUT].decode("utf-8", "replace"))


class CmdlineScanner:
    def __init__(self, options: CmdlineSettings) -> None:
        if not options.argv:
            raise ValueError("scanner 'cmdline' is enabled but cmdline.argv is empty")
        self.opt = options
        self.name = options.name
        self.regex = re.compile(options.virus_regex)
        self.version = options.version or "unknown"
        self._version_read = not options.version_argv

    def _read_version(self) -> None:
        self._version_read = True
        try:
            run = run_argv(list(self.opt.version_argv), min(self.opt.timeout, 10.0))
        except CommandFailed as exc:
            log.warning("%s: version command failed: %s", self.name, exc)
            return
        first = run.output.strip().splitlines()[:1]
        if run.code == 0 and first:
            self.version = "".join(ch for ch in first[0] if ch.isprintable())[:60]

    def _virus_names(self, output: str) -> list[str]:
        names = []
        for m in self.regex.finditer(output):
            name = m.groupdict().get("name") or (m.group(1) if m.re.groups else m.group())
            if name and name not in names:
                names.append(name)
        return names

    def _argv(self, path: Path) -> list[str]:
        return [arg.replace(PLACEHOLDER, str(path)) for arg in self.opt.argv]

    def _write(self, ctx: ScanContext, into: Path) -> list[tuple[str, Path]]:
        files: list[tuple[str, Path]] = []
        for part in ctx.parts:
            if part.payload:
                safe_name = _UNSAFE.sub("_", part.path)[:64]
                files.append((f"part {part.path}", into / f"part-{len(files) + 1}-{safe_name}"))
                files[-1][1].write_bytes(part.payload)
        if self.opt.redundant or ctx.message is None or not files:
            files.append(("message", into / "message.eml"))
            files[-1][1].write_bytes(ctx.raw)
        for _, path in files:
            path.chmod(0o600)
        return files

    def _verdict(self, run: Run, where: str) -> ScanResult | None:
        meaning = self.opt.exit_codes.get(run.code, "error")
        if meaning == "clean":
            return None
        if meaning == "virus":
            names = self._virus_names(run.output)
            return outcomes.virus(self.name, self.version, names[0] if names else "unknown", where,
                                  self.opt.action)
        tail = " ".join(run.output.strip().splitlines()[-3:])[:300]
        raise CommandFailed(f"exit code {run.code}" + (f": {tail}" if tail else ""))

    def scan(self, ctx: ScanContext) -> list[ScanResult]:
        if not self._version_read:
            self._read_version()
        workdir = Path(tempfile.mkdtemp(prefix="qscan-cmdline-", dir=self.opt.tmp_dir))
        try:
            files = self._write(ctx, workdir)
            if self.opt.target == "directory":
                runs = [("message", self._argv(workdir))]
            else:
                runs = [(where, self._argv(path)) for where, path in files]
            for where, argv in runs:
                found = self._verdict(run_argv(argv, self.opt.timeout, cwd=str(workdir)), where)
                if found is not None:
                    return [found]
        except (CommandFailed, OSError) as exc:
            log.warning("%s: %s", self.name, exc)
            return [outcomes.failed(self.name, self.version, str(exc), self.opt.failure_policy)]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return [outcomes.scanned(self.name, self.version, f"{len(files)} files scanned")]
