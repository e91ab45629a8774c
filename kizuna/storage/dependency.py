"""How one process sees a dependency it cannot work without (the database, Redis).

Outages are expected (a restart, a failover, a network blip): code that talks to a
dependency reports each failure and success here and waits `backoff()` before the
next try. The log gets one line when the dependency is lost and one when it is back,
not one per failed call.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("kizuna.dependency")


class Dependency:
    def __init__(self, name: str, *, first_backoff: float = 0.1, max_backoff: float = 5.0) -> None:
        self.name = name
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._down_since: float | None = None
        self._failures = 0
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            log.error("%s is unavailable (%s: %s); retrying with backoff", self.name, type(error).__name__, _first_line(error))
        # Many tasks share one dependency: failures that arrive within one backoff window
        # are one failed try, not many (the backoff would otherwise jump to its maximum).
        if now >= self._next_try:
            self._failures += 1
            self._next_try = now + self.backoff()

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.warning("%s is available again after %.1f s", self.name, time.monotonic() - self._down_since)
        self._down_since = None
        self._failures = 0

    def backoff(self) -> float:
        """Seconds to wait before the next try: doubling from `first_backoff` while it fails."""
        if not self._failures:
            return 0.0
        return min(self.max_backoff, self.first_backoff * 2 ** (self._failures - 1))

    def should_try(self) -> bool:
        """False while it is down and the backoff since the last failure has not passed:
        callers on a hot path (the webhook) skip the call instead of waiting on it."""
        return self._down_since is None or time.monotonic() >= self._next_try


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""
