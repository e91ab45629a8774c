"""Refuse-on-empty token buckets, one per endpoint, like LINE's per-channel rate limits.

aiolimiter waits for capacity; LINE instead answers 429 at once, so this is a small bucket that
says yes or no. LINE does not publish burst sizes: a bucket holds one period's worth of tokens
(per-second limits: one second of requests; per-hour limits: one hour of requests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

SECOND = 1.0
MINUTE = 60.0
HOUR = 3600.0

# (requests, period seconds) per endpoint name; anything not listed gets DEFAULT.
DEFAULT = (2000.0, SECOND)
LIMITS: dict[str, tuple[float, float]] = {
    "multicast": (200.0, SECOND),
    "loading": (100.0, SECOND),
    "narrowcast": (60.0, HOUR),
    "broadcast": (60.0, HOUR),
    "richmenu_create": (100.0, HOUR),
    "richmenu_delete": (100.0, HOUR),
    "richmenu_list": (10.0, SECOND),
    # Audiences: 60 a minute each (LINE's rate-limit table).
    "audience_create": (60.0, MINUTE),
    "audience_create_by_file": (60.0, MINUTE),
    "audience_add": (60.0, MINUTE),
    "audience_add_by_file": (60.0, MINUTE),
    "audience_get": (60.0, MINUTE),
    "audience_list": (60.0, MINUTE),
    "audience_delete": (60.0, MINUTE),
    # Insight about sent messages: 60 an hour.
    "insight_message_event": (60.0, HOUR),
    "insight_unit": (60.0, HOUR),
}


@dataclass(slots=True)
class TokenBucket:
    capacity: float
    refill_per_second: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        # A clock moved backwards (tests override it) refills nothing rather than going negative.
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_second)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._overrides: dict[str, tuple[float, float]] = {}
        # Benchmarks of the sender's own ceiling lift every limit at once.
        self.unlimited = False

    def set_limit(self, endpoint: str, per_second: float, burst: float | None = None) -> None:
        """Override one endpoint's limit; the bucket starts full with ``burst`` tokens."""
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        capacity = burst if burst is not None else max(1.0, per_second)
        self._overrides[endpoint] = (per_second, capacity)
        self._buckets.pop(endpoint, None)

    def reset(self) -> None:
        self._overrides.clear()
        self._buckets.clear()
        self.unlimited = False

    def allow(self, endpoint: str) -> bool:
        if self.unlimited:
            return True
        now = self._clock()
        bucket = self._buckets.get(endpoint)
        if bucket is None:
            if endpoint in self._overrides:
                rate, capacity = self._overrides[endpoint]
            else:
                count, period = LIMITS.get(endpoint, DEFAULT)
                rate, capacity = count / period, count
            bucket = TokenBucket(capacity, rate, capacity, now)
            self._buckets[endpoint] = bucket
        return bucket.take(now)
