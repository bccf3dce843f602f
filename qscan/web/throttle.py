"""Sign-in throttling: recent failures per login and per client address, in this process."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable

MAX_KEYS = 10_000  # failures remembered for at most this many logins and addresses


class Throttle:
    """Recent failures per key; a key with ``limit`` of them within ``window`` s must wait."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._fails.get(key) or deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def blocked(self, keys: Iterable[str]) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def fail(self, keys: Iterable[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                times = self._recent(key, now)
                times.append(now)
                self._fails[key] = times
                self._fails.move_to_end(key)
            while len(self._fails) > MAX_KEYS:
                self._fails.popitem(last=False)

    def clear(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)
