"""Chaos tests with real processes (tests/chaos.py): production mode while customers chat,
and a fault in the middle - Redis restarted or flushed, PostgreSQL restarted with
`-m immediate`, workers and serve killed with SIGKILL. No Kizuna process is restarted
after a dependency fault: each recovers on its own.

Each test asserts that every message that got a 200 was processed exactly once and
answered exactly once (from the emulator's record), and that everything settled within
SETTLE_SECONDS after the fault ended. bench/chaos.py runs longer loads and prints figures.
"""

from __future__ import annotations

import pytest

from tests.chaos import run_scenario
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL

pytestmark = pytest.mark.skipif(
    TEST_DATABASE_URL is None or TEST_REDIS_URL is None,
    reason="production mode: runs in the PostgreSQL + Redis suite (KIZUNA_TEST_DATABASE_URL, KIZUNA_TEST_REDIS_URL)",
)

# With a sweep every 0.5 s and source locks of 2 s (the test settings) a fault costs a few
# seconds; the bound leaves room for a slow, shared CI machine.
SETTLE_SECONDS = 30
# 96 messages; each customer writes every 0.4 s, so the load lasts a few seconds around the fault.
LOAD = dict(customers=12, messages_each=8, gap=0.4, settle_timeout=SETTLE_SECONDS)


async def _run(scenario: str, emulator, tmp_path, redis_prefix, database_url=None):
    result = await run_scenario(scenario, emulator, tmp_path, database_url=database_url, redis_prefix=redis_prefix, **LOAD)
    assert result.outcome.seconds_to_settle < SETTLE_SECONDS
    assert result.still_running, result.logs
    return result


async def test_redis_restarted_mid_load_nothing_lost_nothing_doubled(database_url, emulator, tmp_path, redis_prefix):
    logs = (await _run("redis-restart", emulator, tmp_path, redis_prefix, database_url)).logs
    # Each process says once that Redis went and once that it came back, not once per try.
    assert 1 <= logs.count("Redis is unavailable") <= 3, logs
    assert logs.count("Redis is available again") == logs.count("Redis is unavailable"), logs
    assert "Traceback" not in logs, logs


async def test_redis_flushed_mid_load_nothing_lost_nothing_doubled(database_url, emulator, tmp_path, redis_prefix):
    logs = (await _run("redis-flush", emulator, tmp_path, redis_prefix, database_url)).logs
    assert "Redis lost the work stream" in logs and "Traceback" not in logs, logs


async def test_postgresql_restarted_immediately_mid_load_nothing_lost_nothing_doubled(emulator, tmp_path, redis_prefix):
    logs = (await _run("postgres-restart", emulator, tmp_path, redis_prefix)).logs
    assert 1 <= logs.count("the database is unavailable") <= 3, logs
    assert logs.count("the database is available again") == logs.count("the database is unavailable"), logs
    assert "Traceback" not in logs, logs


async def test_workers_and_serve_killed_mid_load_nothing_lost_nothing_doubled(database_url, emulator, tmp_path, redis_prefix):
    """The killed workers' customers move on (their locks lapse), LINE's redeliveries to
    the dead serve are answered by the new one, and no lock is renewed by nobody working
    (the stuck customer of the issue)."""
    await _run("kills", emulator, tmp_path, redis_prefix, database_url)
