"""Fault injection: make the next N requests to an endpoint fail or answer slowly.

A failure is either *before* execution (nothing happened; a retry is safe and needed) or
*after* execution (the message went out, the reply token is spent, the retry key is accepted,
but the answer says 5xx): the "response lost" case a sender must survive without duplicates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Failure:
    status: int
    body: Any
    after_executing: bool


@dataclass(slots=True)
class Delay:
    seconds: float
    after_executing: bool


class FaultPlan:
    def __init__(self) -> None:
        self._failures: dict[str, deque[Failure]] = {}
        self._delays: dict[str, deque[Delay]] = {}

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
