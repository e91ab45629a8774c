"""Pacing requests to LINE under its per-channel rate limits, in one process or across many.

LINE limits requests per channel and endpoint family (LINE_FACTS.md) and answers 429 above
the limit; it publishes no burst size, so requests are paced evenly, one every 1/rate seconds.
The algorithm is GCRA (the "generic cell rate algorithm"): one stored number per endpoint, the
theoretical arrival time (TAT) of the next request. `acquire` reserves the next slot and sleeps
until it, so callers never poll and a reservation is first come, first served.

- `InProcessRateLimiter`: embedded mode (no Redis); also the fallback of the shared one.
- `RedisRateLimiter`: every worker process shares the TAT in Redis. One Lua script per acquire
  (atomic, one round trip, Redis's own clock so hosts' clocks need not agree) returns how long
  to wait. If Redis goes away, it paces in-process at a share of the limit (so N workers
  together stay near the limit) and returns to Redis when it answers again.

Why not the `limits` library: its strategies (fixed, moving, sliding window) answer "allowed
or not" and let a whole window's worth through at once; pacing would need a second round trip
for the reset time plus polling, and the window burst is what LINE does not promise to take.

A 429 that is LINE's rate limit (not the monthly quota) is reported with `back_off`: every
process then waits until a shared "not before" time (LINE's Retry-After when it sends one, else
an exponential back-off), after which the paced slots resume from there. Unless the 429 is
sporadic: LINE's limit is a token bucket, and a bucket run dry refuses most requests beyond it;
one 429 among many accepted requests (under 10 % of this process's last second or two) says
nothing about the pace, so only that request waits and retries (its own back-off). Pausing every
sender for each one would make a 2 % share of stray 429s hold pushes at a few a second
(bench/campaign_chaos.py, tests/bot/test_campaign_chaos.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("kizuna.ratelimit")

SECOND = 1.0
HOUR = 3600.0

# Requests per second LINE allows per channel, by endpoint family (LINE_FACTS.md).
# Rich menus: "richmenu" (the list is 10/s) paces the set-up calls; create and delete are 100
# an HOUR, which `richmenu.setup` stays far below (a handful a run). Linking a menu to one user
# is one of the "other" endpoints (2,000/s). An endpoint not listed gets DEFAULT_RATE.
DEFAULT_RATE = 2000.0
LINE_RATE_LIMITS: dict[str, float] = {
    "reply": 2000.0, "push": 2000.0, "profile": 2000.0, "quota": 2000.0, "content": 2000.0,
    "mark_read": 2000.0, "richmenu_link": 2000.0,
    "multicast": 200.0, "loading": 100.0, "richmenu": 10.0,
    "narrowcast": 60.0 / HOUR, "broadcast": 60.0 / HOUR,
    # Campaign endpoints: audiences 60 a minute; message insight 60 an hour, paced at 1/s (a campaign
    # reads a handful, and a 429 is retried); progress and aggregation lists as most endpoints.
    "narrowcast_progress": 2000.0, "aggregation": 2000.0, "audience": 1.0, "insight": 1.0,
}


class RateLimiter(Protocol):
    async def acquire(self, endpoint: str) -> None:
        """Return when a request to `endpoint` may go (after sleeping for its slot)."""

    async def back_off(self, endpoint: str, retry_after: float | None) -> float:
        """LINE said 429 (rate limit): nobody sends to `endpoint` for a while. The seconds."""


@dataclass(frozen=True)
class BackOffPolicy:
    """Without Retry-After: 0.1 s, 0.2 s, 0.4 s … up to `max_seconds`; 429s seen while a
    back-off is in force (requests that were already in flight) do not lengthen it, and the
    count starts again after `reset_seconds` without one."""

    initial_seconds: float = 0.1
    max_seconds: float = 5.0
    reset_seconds: float = 10.0

    def delay(self, strikes: int) -> float:
        return min(self.max_seconds, self.initial_seconds * 2 ** max(0, strikes - 1))


def parse_rate_limits(text: str) -> dict[str, float]:
    """`multicast=200,push=2000,broadcast=60/h` → requests per second by endpoint.
    A bare number is per second; `/s`, `/min` and `/h` name the period."""
    periods = {"s": SECOND, "min": 60.0, "h": HOUR}
    limits: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"([a-z_]+)\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*(?:/\s*(s|min|h))?", item)
        if match is None:
            raise ValueError(f"{item!r} is not ENDPOINT=COUNT[/s|/min|/h]")
        name, count, period = match.group(1), float(match.group(2)), match.group(3) or "s"
        if count <= 0:
            raise ValueError(f"{item!r}: the limit must be positive")
        limits[name] = count / periods[period]
    return limits


# -- in one process ---------------------------------------------------------------------------

SPORADIC_SHARE = 0.1  # 429s below this share of recent requests are strays, not the limit
SPORADIC_MIN_REQUESTS = 50  # fewer recent requests than this: every 429 counts (a pause costs little)
WINDOW_SECONDS = 1.0


class _RecentRefusals:
    """One endpoint's requests and 429s in this process, over the current and the previous
    second: how the share of refusals is told from a rate limit reached."""

    def __init__(self) -> None:
        self._counts: dict[int, list[int]] = {}  # window number -> [requests, 429s]

    def _now(self) -> list[int]:
        window = int(time.monotonic() / WINDOW_SECONDS)
        counts = self._counts.get(window)
        if counts is None:
            self._counts = {n: c for n, c in self._counts.items() if n == window - 1}
            counts = self._counts[window] = [0, 0]
        return counts

    def requested(self) -> None:
        self._now()[0] += 1

    def refused(self) -> bool:
        """Count a 429; True when it is a stray (sporadic) one."""
        self._now()[1] += 1
        requests = sum(counts[0] for counts in self._counts.values())
        refusals = sum(counts[1] for counts in self._counts.values())
        return requests >= SPORADIC_MIN_REQUESTS and refusals < SPORADIC_SHARE * requests

# A request that wakes up this much after its slot (the event loop was busy: a stall, a starved
# CPU) would go out in a bunch with the others that overslept, a burst LINE may refuse; it takes
# a new slot instead, once (a loop that is always that late must still send).
MAX_LATE_SECONDS = 0.1


async def _paced(reserve: Callable[[], Awaitable[float | None]]) -> bool:
    """Reserve a slot and sleep until it; False when `reserve` could not (None)."""
    for _ in range(2):
        wait = await reserve()
        if wait is None:
            return False
        if wait <= 0:
            return True
        due = time.monotonic() + wait
        await asyncio.sleep(wait)
        if time.monotonic() - due <= MAX_LATE_SECONDS:
            return True
    return True


class _Gcra:
    """One endpoint's pacing state; the same arithmetic as the Lua script below."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.tat = 0.0  # when the next request may go, at the latest paced slot
        self.not_before = 0.0
        self.strikes = 0
        self.last_strike = 0.0

    def reserve(self, now: float) -> float:
        send_at = max(now, self.tat, self.not_before)
        self.tat = send_at + self.interval
        return send_at - now

    def back_off(self, now: float, retry_after: float | None, policy: BackOffPolicy) -> float:
        if retry_after is not None:
            self.not_before = max(self.not_before, now + retry_after)
            return self.not_before - now
        if self.not_before > now:  # already backing off: a request that was in flight
            return self.not_before - now
        self.strikes = self.strikes + 1 if now - self.last_strike < policy.reset_seconds else 1
        self.last_strike = now
        self.not_before = now + policy.delay(self.strikes)
        return self.not_before - now


class InProcessRateLimiter:
    """Paces one process's requests. `share` scales every limit (the shared limiter's
    fallback runs at limit × share, so N workers together stay near the limit)."""

    def __init__(self, limits: Mapping[str, float] = LINE_RATE_LIMITS, *, share: float = 1.0,
                 back_off_policy: BackOffPolicy = BackOffPolicy()) -> None:
        self.limits = dict(limits)
        self.share = share
        self.policy = back_off_policy
        self._states: dict[str, _Gcra] = {}
        self._recent: dict[str, _RecentRefusals] = {}

    def recent(self, endpoint: str) -> _RecentRefusals:
        """The endpoint's recent requests and 429s in this process."""
        recent = self._recent.get(endpoint)
        if recent is None:
            recent = self._recent[endpoint] = _RecentRefusals()
        return recent

    def _state(self, endpoint: str) -> _Gcra:
        state = self._states.get(endpoint)
        if state is None:
            state = self._states[endpoint] = _Gcra(self.limits.get(endpoint, DEFAULT_RATE) * self.share)
        return state

    async def acquire(self, endpoint: str) -> None:
        state = self._state(endpoint)
        self.recent(endpoint).requested()

        async def reserve() -> float:
            # Nothing awaited between reading and moving the slot: no lock needed under asyncio.
            return state.reserve(time.monotonic())

        await _paced(reserve)

    async def back_off(self, endpoint: str, retry_after: float | None) -> float:
        if self.stray(endpoint, retry_after):
            return 0.0
        return self.pause(endpoint, retry_after)

    def stray(self, endpoint: str, retry_after: float | None) -> bool:
        """Count a 429; True when nobody need wait for it (no Retry-After, and sporadic)."""
        return self.recent(endpoint).refused() and retry_after is None

    def pause(self, endpoint: str, retry_after: float | None) -> float:
        """This process's senders wait: the seconds."""
        return self._state(endpoint).back_off(time.monotonic(), retry_after, self.policy)


# -- shared by every process through Redis ----------------------------------------------------

# Times are integer microseconds of Redis's clock (TIME), so every host reads the same clock.
# KEYS[1] the endpoint's TAT, KEYS[2] its not-before time. ARGV[1] the interval in µs.
# Returns the µs to wait before sending.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
local not_before = tonumber(redis.call('GET', KEYS[2])) or 0
local send_at = math.max(now, tat, not_before)
local next_tat = send_at + tonumber(ARGV[1])
-- Kept a second past the last reservation, then it is as good as absent.
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return send_at - now
"""

# KEYS[1] not-before, KEYS[2] strike count. ARGV: retry-after µs (-1: none), initial µs,
# max µs, strikes' lifetime ms. Returns the µs of the back-off in force.
_BACK_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local not_before = tonumber(redis.call('GET', KEYS[1])) or 0
local retry_after = tonumber(ARGV[1])
local target
if retry_after >= 0 then
  target = math.max(not_before, now + retry_after)
elseif not_before > now then
  return not_before - now
else
  local strikes = redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  target = now + math.min(tonumber(ARGV[3]), tonumber(ARGV[2]) * 2 ^ (strikes - 1))
end
redis.call('SET', KEYS[1], string.format('%.0f', target), 'PX', math.ceil((target - now) / 1000) + 1000)
return target - now
"""

_REDIS_DOWN = (RedisError, OSError, asyncio.TimeoutError)


class RedisRateLimiter:
    """Paces the requests of every process sharing `redis` for one channel.

    Keys: `{prefix}:line-rate:{channel}:{endpoint}` (+ `:not-before`, `:strikes`); `channel`
    names the LINE channel, so a second official account gets limits of its own.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        channel: str = "default",
        limits: Mapping[str, float] = LINE_RATE_LIMITS,
        fallback_share: float = 0.25,
        back_off_policy: BackOffPolicy = BackOffPolicy(),
        command_timeout: float = 2.0,
        retry_redis_after: float = 1.0,
    ) -> None:
        self.redis = redis
        self.limits = dict(limits)
        self.policy = back_off_policy
        self.command_timeout = command_timeout
        self.retry_redis_after = retry_redis_after
        self.fallback = InProcessRateLimiter(limits, share=fallback_share, back_off_policy=back_off_policy)
        self._base = f"{prefix}:line-rate:{channel}"
        self._acquire_script = redis.register_script(_ACQUIRE)
        self._back_off_script = redis.register_script(_BACK_OFF)
        # While Redis is away: when to try it again; one caller tries, the others use the fallback.
        self._down_until: float | None = None
        self._probing = False

    @property
    def using_redis(self) -> bool:
        return self._down_until is None

    def _keys(self, endpoint: str) -> tuple[str, str, str]:
        key = f"{self._base}:{endpoint}"
        return key, f"{key}:not-before", f"{key}:strikes"

    def _interval_us(self, endpoint: str) -> int:
        return max(1, round(1_000_000 / self.limits.get(endpoint, DEFAULT_RATE)))

    async def acquire(self, endpoint: str) -> None:
        tat, not_before, _ = self._keys(endpoint)
        interval_us = self._interval_us(endpoint)
        self.fallback.recent(endpoint).requested()

        async def reserve() -> float | None:
            wait_us = await self._shared(self._acquire_script, [tat, not_before], [interval_us])
            return None if wait_us is None else wait_us / 1_000_000

        if not await _paced(reserve):
            await self.fallback.acquire(endpoint)

    async def back_off(self, endpoint: str, retry_after: float | None) -> float:
        if self.fallback.stray(endpoint, retry_after):  # (the module's docstring): nobody else waits
            return 0.0
        # Recorded in-process too, so a Redis that vanishes right after still sees it honoured here.
        local = self.fallback.pause(endpoint, retry_after)
        _, not_before, strikes = self._keys(endpoint)
        policy = self.policy
        args = [
            -1 if retry_after is None else round(retry_after * 1_000_000),
            round(policy.initial_seconds * 1_000_000), round(policy.max_seconds * 1_000_000),
            round(policy.reset_seconds * 1000),
        ]
        shared_us = await self._shared(self._back_off_script, [not_before, strikes], args)
        seconds = local if shared_us is None else shared_us / 1_000_000
        log.warning("LINE rate limit (429) on %s: every sender waits %.2f s", endpoint, seconds)
        return seconds

    async def _shared(self, script, keys: list[str], args: list) -> int | None:
        """The script's answer, or None when Redis cannot be used now (use the fallback)."""
        if self._down_until is not None and (self._probing or time.monotonic() < self._down_until):
            return None
        probing = self._down_until is not None
        self._probing = probing
        try:
            result = await asyncio.wait_for(script(keys=keys, args=args), self.command_timeout)
        except _REDIS_DOWN as error:
            if self._down_until is None:
                log.warning(
                    "Redis unreachable for the LINE rate limit (%s): pacing in this process at %.0f %% of the limits until it answers",
                    type(error).__name__, self.fallback.share * 100,
                )
            self._down_until = time.monotonic() + self.retry_redis_after
            return None
        finally:
            if probing:
                self._probing = False
        if self._down_until is not None:
            log.warning("Redis answers again: the LINE rate limit is shared across workers again")
            self._down_until = None
        return int(result)
