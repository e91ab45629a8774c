"""LINE's rate limits, kept by one limiter that every sender shares (issue 15, section 2).

Against the emulator over real HTTP (its multicast limit lowered with `set_rate_limit`), with
real Redis servers: the machine's (KIZUNA_TEST_REDIS_URL) or one of the test's own, and always
the test's own where Redis is killed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import statistics
import time
import uuid
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from bench import line_ratelimit as bench
from kizuna.bot.line import LineClient, RetryPolicy
from kizuna.bot.ratelimit import BackOffPolicy, InProcessRateLimiter, RedisRateLimiter
from tests.conftest import ACCESS_TOKEN, TEST_REDIS_URL, eventually
from tests.services import redis_server

TEXT = [{"type": "text", "text": "セールのお知らせです"}]
RATE_LIMITED = {"message": "The API rate limit has been exceeded. Try again later."}

needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@asynccontextmanager
async def a_redis_url():
    """The machine's test Redis when configured, else a redis-server of the test's own."""
    if TEST_REDIS_URL:
        yield TEST_REDIS_URL
        return
    async with redis_server() as server:
        yield server.url


def _client(emulator, limiter) -> LineClient:
    return LineClient(access_token=ACCESS_TOKEN, api_base_url=emulator.base_url, data_api_base_url=emulator.base_url,
                      timeout=5.0, limiter=limiter)


def _friend(emulator):
    user = emulator.add_user(display_name="お客様")
    user.followed = True
    return user


async def _keep_sending(client: LineClient, user_id: str, stop: asyncio.Event, concurrency: int = 16) -> None:
    async def one() -> None:
        while not stop.is_set():
            await client.multicast([user_id], TEXT, retry_key=str(uuid.uuid4()))

    await asyncio.gather(*(one() for _ in range(concurrency)))


def _accepted_between(emulator, start: float, end: float) -> list[float]:
    return sorted(r.at for r in emulator.requests_to("multicast") if r.status == 200 and start <= r.at < end)


def _busiest(times: list[float], window: float) -> int:
    most, j = 0, 0
    for i, at in enumerate(times):
        while times[j] <= at - window:
            j += 1
        most = max(most, i - j + 1)
    return most


async def _accepted_at_least(emulator, count: int, since: float, timeout: float = 10.0) -> list[float]:
    """Wait until LINE accepted `count` multicasts after `since`; their times."""
    async def enough() -> bool:
        return len(_accepted_between(emulator, since, float("inf"))) >= count

    await eventually(enough, timeout=timeout, what=f"{count} multicasts accepted")
    return _accepted_between(emulator, since, float("inf"))[:count]


def _rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0])


async def test_embedded_mode_paces_one_process_evenly_under_the_limit(emulator):
    emulator.set_rate_limit("multicast", 40)
    user = _friend(emulator)
    client = _client(emulator, InProcessRateLimiter({"multicast": 40}))
    stop = asyncio.Event()
    sending = asyncio.create_task(_keep_sending(client, user.user_id, stop))
    try:
        accepted = await _accepted_at_least(emulator, 80, since=0)
    finally:
        stop.set()
        await sending
        await client.close()
    assert [r.status for r in emulator.requests_to("multicast") if r.status != 200] == []  # no 429 at all
    assert 40 * 0.8 <= _rate(accepted) <= 40 * 1.03
    # Within any second: at most the limit, plus the few whose slots passed while the event
    # loop was busy (at most 0.1 s of them, MAX_LATE_SECONDS) and went together.
    assert _busiest(accepted, 1.0) <= 40 * 1.1 + 1
    # Evenly paced (one every 25 ms), not a second's burst then a pause: LINE publishes no
    # burst size.
    assert 0.020 <= statistics.median(b - a for a, b in zip(accepted, accepted[1:])) <= 0.030


@needs_redis_server
async def test_worker_processes_sharing_redis_stay_under_the_limit_and_without_it_they_overshoot(tmp_path, redis_prefix):
    """Three sender processes at a multicast limit of 50/s: with the shared limiter LINE accepts
    ~50/s and answers (almost) no 429; each with its own limiter (not shared), they offer 150/s."""
    limit, seconds, senders = 50.0, 3.0, 3
    emulator = await asyncio.to_thread(bench.EmulatorProcess(tmp_path / "emulator.log").start)
    try:
        [user] = (await asyncio.to_thread(emulator.admin, "users/bulk", {"count": 1}))["user_ids"]
        async with a_redis_url() as redis_url:
            shared = await asyncio.to_thread(
                bench.run_case, emulator, user, senders=senders, mode="shared", limit=limit, seconds=seconds,
                redis_url=redis_url, prefix=redis_prefix, concurrency=16, log_dir=tmp_path,
            )
        alone = await asyncio.to_thread(
            bench.run_case, emulator, user, senders=senders, mode="process", limit=limit, seconds=seconds,
            redis_url=None, prefix=redis_prefix, concurrency=16, log_dir=tmp_path,
        )
    finally:
        await asyncio.to_thread(emulator.stop)

    assert shared["share_429"] <= 0.01, shared
    # Within any second at most the limit plus 0.1 s of requests that overslept (MAX_LATE_SECONDS).
    assert shared["accepted_per_s"] <= limit * 1.05 and shared["busiest_second"] <= limit * 1.1 + 1, shared
    assert shared["accepted_per_s"] >= limit * 0.85, shared  # and the limit is used, not wasted
    assert all(counts.get("sent", 0) > 0 for counts in shared["senders"]), shared  # every process sent

    # The baseline: the same senders, each pacing only itself.
    assert alone["share_429"] > 0.2, alone


@needs_redis_server
async def test_a_429_makes_every_worker_back_off_and_the_retry_keeps_its_key(emulator, redis_prefix):
    user = _friend(emulator)
    policy = BackOffPolicy(initial_seconds=1.0)
    async with a_redis_url() as redis_url:
        redis = Redis.from_url(redis_url)
        limiters = [RedisRateLimiter(redis, prefix=redis_prefix, back_off_policy=policy) for _ in range(2)]
        first, second = (_client(emulator, limiter) for limiter in limiters)
        try:
            emulator.fail_next("multicast", 429, body=RATE_LIMITED)
            key = str(uuid.uuid4())
            retried = asyncio.create_task(first.multicast([user.user_id], TEXT, retry_key=key))

            async def refused() -> bool:
                return any(r.status == 429 for r in emulator.requests_to("multicast"))

            await eventually(refused, what="LINE's 429")
            await second.multicast([user.user_id], TEXT, retry_key=str(uuid.uuid4()))  # another worker
            await retried
        finally:
            await first.close()
            await second.close()
            await redis.aclose()
    [refusal, *accepted] = emulator.requests_to("multicast")
    assert refusal.status == 429 and [r.status for r in accepted] == [200, 200]
    # Neither the retry nor the other worker's request went before the back-off was over.
    assert min(r.at for r in accepted) - refusal.at >= 0.9
    # The refused request was retried with its key: sent once.
    assert [r.status for r in emulator.requests_to("multicast") if r.headers.get("X-Line-Retry-Key") == key] == [429, 200]
    assert len(emulator.messages_to(user.user_id)) == 2


@needs_redis_server
async def test_retry_after_is_honoured_by_every_limiter_sharing_redis(redis_prefix):
    async with a_redis_url() as redis_url:
        redis = Redis.from_url(redis_url)
        try:
            one, other = (RedisRateLimiter(redis, prefix=redis_prefix, limits={"push": 2000}) for _ in range(2))
            await one.back_off("push", retry_after=0.6)
            began = time.monotonic()
            await other.acquire("push")
            waited = time.monotonic() - began
            began = time.monotonic()
            await other.acquire("multicast")  # another endpoint is not held back
            assert time.monotonic() - began < 0.3
        finally:
            await redis.aclose()
    assert 0.5 <= waited <= 1.5


@needs_redis_server
async def test_redis_lost_mid_run_keeps_sending_at_a_share_of_the_limit_then_shares_again(emulator, redis_prefix, caplog):
    """Redis (the test's own) is killed while a process sends: sending goes on, paced in-process
    at half the limit, one warning; when Redis is back the limiter uses it again."""
    limit = 40.0
    emulator.set_rate_limit("multicast", limit)
    user = _friend(emulator)
    caplog.set_level(logging.WARNING, logger="kizuna.ratelimit")
    async with redis_server() as server:
        redis = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
        limiter = RedisRateLimiter(redis, prefix=redis_prefix, limits={"multicast": limit}, fallback_share=0.5,
                                   retry_redis_after=0.2)
        client = _client(emulator, limiter)
        stop = asyncio.Event()
        sending = asyncio.create_task(_keep_sending(client, user.user_id, stop))
        try:
            await _accepted_at_least(emulator, int(limit), since=0)
            assert limiter.using_redis

            await asyncio.to_thread(server.kill)

            async def fell_back() -> bool:
                return not limiter.using_redis

            await eventually(fell_back, what="the limiter to notice Redis is gone")
            # Past the slots reserved in Redis before it went (16 requests in flight × 25 ms).
            without = await _accepted_at_least(emulator, 30, since=time.time() + 0.5)

            await asyncio.to_thread(server.start)

            async def shared_again() -> bool:
                return limiter.using_redis

            await eventually(shared_again, what="the limiter to use Redis again")
            await _accepted_at_least(emulator, int(limit), since=time.time())
            assert await redis.exists(f"{redis_prefix}:line-rate:default:multicast")  # pacing in Redis again
        finally:
            stop.set()
            await sending
            await client.close()
            await redis.aclose()

    # Never stopped, never over the limit: half of it while Redis was away.
    assert 20 * 0.75 <= _rate(without) <= 20 * 1.05
    assert [r for r in emulator.requests_to("multicast") if r.status != 200] == []
    warnings = [r.getMessage() for r in caplog.records if r.name == "kizuna.ratelimit"]
    assert sum("Redis unreachable" in message for message in warnings) == 1, warnings
    assert sum("answers again" in message for message in warnings) == 1, warnings


@needs_redis_server
async def test_the_app_wires_clients_of_every_process_to_one_shared_limit(emulator, database_url, redis_prefix):
    """`line_client_for` (what `serve` and `worker` use) with Redis: two processes' clients
    together keep KIZUNA_LINE_RATE_LIMITS' multicast=20/s."""
    from kizuna.bot.app import line_client_for
    from tests.conftest import make_settings

    user = _friend(emulator)
    async with a_redis_url() as redis_url:
        settings = make_settings(database_url, emulator.base_url, redis_url=redis_url, redis_prefix=redis_prefix,
                                 line_rate_limits="multicast=20")
        redis = Redis.from_url(redis_url)
        clients = [line_client_for(settings, redis) for _ in range(2)]
        stop = asyncio.Event()
        sending = [asyncio.create_task(_keep_sending(client, user.user_id, stop, concurrency=8)) for client in clients]
        try:
            accepted = await _accepted_at_least(emulator, 30, since=0)
        finally:
            stop.set()
            await asyncio.gather(*sending)
            for client in clients:
                await client.close()
            await redis.aclose()
    assert 20 * 0.8 <= _rate(accepted) <= 20 * 1.05


def test_rate_limits_are_settings_and_a_bad_one_names_its_variable(database_url):
    from kizuna.bot.ratelimit import parse_rate_limits
    from kizuna.bot.settings import SettingsError, load_settings
    from tests.conftest import SECRET_KEY

    assert parse_rate_limits("multicast=100, broadcast=60/h,push=30/min") == {"multicast": 100.0, "broadcast": 60 / 3600, "push": 0.5}
    settings = load_settings(secret_key=SECRET_KEY, database_url=database_url, line_rate_limits="multicast=100")
    assert settings.line_rate_limit_table["multicast"] == 100 and settings.line_rate_limit_table["push"] == 2000
    with pytest.raises(SettingsError, match="KIZUNA_LINE_RATE_LIMITS"):
        load_settings(secret_key=SECRET_KEY, database_url=database_url, line_rate_limits="multicast=fast")


async def test_embedded_mode_backs_off_after_a_429_exponentially_and_honours_retry_after():
    limiter = InProcessRateLimiter({"multicast": 200}, back_off_policy=BackOffPolicy(initial_seconds=0.2, max_seconds=1.0))
    assert await limiter.back_off("multicast", None) == pytest.approx(0.2, abs=0.01)
    # A 429 of a request that was in flight during the back-off does not lengthen it.
    assert await limiter.back_off("multicast", None) <= 0.2
    began = time.monotonic()
    await limiter.acquire("multicast")
    assert 0.15 <= time.monotonic() - began <= 0.6
    assert await limiter.back_off("multicast", None) == pytest.approx(0.4, abs=0.01)  # the next one doubles
    assert await limiter.back_off("multicast", 0.9) == pytest.approx(0.9, abs=0.01)  # LINE's Retry-After wins



async def _stray_then_persistent_429s(limiter) -> None:
    """200 requests go; one 429 among them pauses nobody; a run of 429s (the limit really
    reached: over a tenth of recent requests) makes every sender wait; Retry-After always wins."""
    for _ in range(200):
        await limiter.acquire("push")
    assert await limiter.back_off("push", None) == 0.0
    began = time.monotonic()
    await limiter.acquire("push")
    assert time.monotonic() - began < 0.05  # nobody waited for the stray one
    waits = [await limiter.back_off("push", None) for _ in range(25)]
    assert waits[0] == 0.0 and waits[-1] >= 0.09, waits  # from 10 % of the requests refused: a pause
    began = time.monotonic()
    await limiter.acquire("push")
    assert time.monotonic() - began >= 0.05
    assert await limiter.back_off("push", 0.5) == pytest.approx(0.5, abs=0.05)


async def test_a_stray_429_pauses_nobody_a_run_of_them_pauses_every_sender_in_process():
    await _stray_then_persistent_429s(InProcessRateLimiter({"push": 2000}))


@needs_redis_server
async def test_a_stray_429_pauses_nobody_a_run_of_them_pauses_every_sender_through_redis(redis_prefix):
    async with redis_server() as server:
        redis = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=1)
        try:
            await _stray_then_persistent_429s(RedisRateLimiter(redis, prefix=redis_prefix, limits={"push": 2000}))
        finally:
            await redis.aclose()
