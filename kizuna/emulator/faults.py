"""Fault injection: make the next N requests to an endpoint fail or answer slowly, or a share
of all of them, at random.

A failure is either *before* execution (nothing happened; a retry is safe and needed) or
*after* execution (the message went out, the reply token is spent, the retry key is accepted,
but the answer says 5xx): the "response lost" case a sender must survive without duplicates.

Random faults (``set_rates``) are for benchmarks: e.g. 5 % answered 500 before executing, 5 %
executed then answered 500, 2 % answered 429. Each endpoint draws from its own generator seeded
from the plan's seed, so a run's sequence of faults per endpoint is the same every time.
Scripted faults (``fail_next``) take precedence over random ones.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

RATE_LIMITED_BODY = {"message": "The API rate limit has been exceeded. Try again later."}
INJECTED_BODY = {"message": "Internal server error (injected)"}


@dataclass(slots=True)
class Failure:
    status: int
    body: Any
    after_executing: bool


@dataclass(slots=True)
class Delay:
    seconds: float
    after_executing: bool


@dataclass(slots=True)
class FaultRates:
    """Shares (0-1) of requests to answer 500 before executing, 500 after executing, and 429."""

    before: float = 0.0
    after: float = 0.0
    rate_limited: float = 0.0

    def __post_init__(self) -> None:
        for name in ("before", "after", "rate_limited"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.before + self.after + self.rate_limited > 1.0:
            raise ValueError("the fault rates add up to more than 1")

    def to_json(self) -> dict[str, float]:
        return {"before": self.before, "after": self.after, "rate_limited": self.rate_limited}


class FaultPlan:
    def __init__(self, seed: int = 0) -> None:
        self._failures: dict[str, deque[Failure]] = {}
        self._delays: dict[str, deque[Delay]] = {}
        self._rates: dict[str, FaultRates] = {}
        self._randoms: dict[str, random.Random] = {}
        self.seed = seed
        # What the random faults did, per "endpoint kind" (kind: before, after, rate_limited).
        self.injected: Counter[str] = Counter()

    def set_rates(self, endpoint: str, rates: FaultRates, seed: int | None = None) -> None:
        """Random faults for ``endpoint`` ("*": every endpoint without rates of its own).
        All-zero rates remove them. A new seed restarts every endpoint's sequence."""
        if seed is not None:
            self.seed = seed
            self._randoms.clear()
        if rates.before == rates.after == rates.rate_limited == 0.0:
            self._rates.pop(endpoint, None)
        else:
            self._rates[endpoint] = rates

    def rates(self) -> dict[str, dict[str, float]]:
        return {endpoint: rates.to_json() for endpoint, rates in self._rates.items()}

    def draw(self, endpoint: str) -> Failure | None:
        """A random failure for this request, or None."""
        rates = self._rates.get(endpoint) or self._rates.get("*")
        if rates is None:
            return None
        generator = self._randoms.get(endpoint)
        if generator is None:
            generator = self._randoms[endpoint] = random.Random(f"{self.seed}:{endpoint}")
        roll = generator.random()
        if roll < rates.before:
            self.injected[f"{endpoint} before"] += 1
            return Failure(500, INJECTED_BODY, False)
        roll -= rates.before
        if roll < rates.after:
            self.injected[f"{endpoint} after"] += 1
            return Failure(500, INJECTED_BODY, True)
        roll -= rates.after
        if roll < rates.rate_limited:
            self.injected[f"{endpoint} rate_limited"] += 1
            return Failure(429, RATE_LIMITED_BODY, False)
        return None

    def fail_next(
        self, endpoint: str, status: int, count: int, body: Any, after_executing: bool
    ) -> None:
        queue = self._failures.setdefault(endpoint, deque())
        for _ in range(count):
            queue.append(Failure(status, body, after_executing))

    def delay_next(self, endpoint: str, seconds: float, count: int, after_executing: bool) -> None:
        queue = self._delays.setdefault(endpoint, deque())
        for _ in range(count):
            queue.append(Delay(seconds, after_executing))

    def take_failure(self, endpoint: str) -> Failure | None:
        queue = self._failures.get(endpoint)
        return queue.popleft() if queue else None

    def take_delay(self, endpoint: str) -> Delay | None:
        queue = self._delays.get(endpoint)
        return queue.popleft() if queue else None

    def pending(self) -> dict[str, int]:
        out = {k: len(v) for k, v in self._failures.items() if v}
        for k, v in self._delays.items():
            if v:
                out[f"{k}:delay"] = len(v)
        return out

    def clear(self) -> None:
        self._failures.clear()
        self._delays.clear()
        self._rates.clear()
        self._randoms.clear()
