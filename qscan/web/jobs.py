"""Long work the console starts and does not wait for: an export of a large matter runs in a
thread of the console's process while its page shows how far it got.

A request that starts a job waits up to ``QUICK`` seconds for it (a small export answers as
before, straight with its result); a longer one is shown on its own page, which reloads itself
(``<meta http-equiv="refresh">``: no script) until the job ends. The work is what the CLI runs,
with the same events; a job records only its progress, result and error, in memory: a console
restarted meanwhile forgets it (its page then says so), and the work it was doing is cut off
as a killed ``qscan export`` is (nothing is recorded for an export that did not finish).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

QUICK = 1.0  # seconds the starting request waits before it shows the progress page instead
KEEP = 200  # finished jobs remembered (their pages keep pointing to the result)

Progress = Callable[[int, int], None]


class JobFailed(Exception):
    """The work's own refusal (an ExportError...): shown to the person, not logged as a bug."""


@dataclass
class Job:
    id: str
    kind: str
    label: str
    owner: str  # login@host of the person who started it
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    done: int = 0
    total: int = 0
    state: Literal["running", "done", "failed"] = "running"
    result: str | None = None  # what the page goes to when done (an export id)
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


class Jobs:
    """The console's jobs: started in threads, looked up by id."""

    def __init__(self, keep: int = KEEP) -> None:
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._keep = keep

    def start(self, kind: str, label: str, owner: str, work: Callable[[Progress], str]) -> Job:
        job = Job(id=str(uuid.uuid4()), kind=kind, label=label, owner=owner)

        def run() -> None:
            try:
                job.result = work(job.progress)
                job.state = "done"
            except JobFailed as exc:
                job.error, job.state = str(exc), "failed"
            except Exception as exc:  # a bug: the page says so; the console's log has the trace
                import logging

                logging.getLogger("qscan.web").exception("%s job %s failed", kind, job.id)
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"
            finally:
                job.finished.set()
                self._forget_old()

        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=run, name=f"console-{kind}-{job.id[:8]}", daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _forget_old(self) -> None:
        with self._lock:
            ended = [j for j in self._jobs.values() if j.state != "running"]
            for j in ended[: max(0, len(ended) - self._keep)]:
                del self._jobs[j.id]
