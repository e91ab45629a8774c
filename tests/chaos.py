"""Fault scenarios in production mode: `kizuna serve` + two `kizuna worker` processes on
PostgreSQL and Redis while customers chat (tests/chat_load.py), with one fault in the
middle. Used by tests/bot/test_chaos.py (short loads, asserted) and bench/chaos.py
(longer loads, figures beside a run without a fault).

Scenarios:
- "none": no fault (the baseline);
- "redis-restart": Redis killed (everything it held is gone: stream, group, locks), down
  for a second, started again;
- "redis-flush": FLUSHALL;
- "postgres-restart": PostgreSQL restarted with `-m immediate` (a crash: every connection
  cut, unfinished transactions lost);
- "kills": kill -9 of one worker, then of the other, then of serve, each replaced.
No Kizuna process is restarted after a dependency fault: each must recover on its own.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from kizuna.emulator import Emulator
from kizuna.storage.migrate import upgrade
from tests.chat_load import ChatLoad, Outcome, settle_and_check
from tests.conftest import eventually
from tests.services import KizunaProcess, free_port, kizuna_env, kizuna_process, postgres_cluster, redis_server

SCENARIOS = ("none", "redis-restart", "redis-flush", "postgres-restart", "kills")


@dataclass
class Result:
    outcome: Outcome
    logs: str  # every process's log
    still_running: bool  # no process died on its own


class Production:
    """serve + workers on one database and Redis, their logs in `logs_dir`."""

    def __init__(self, database_url: str, redis_url: str, emulator: Emulator, logs_dir: Path, redis_prefix: str) -> None:
        self.port = free_port()
        self.env = kizuna_env(database_url, emulator.base_url, self.port, redis_url, redis_prefix)
        self.logs_dir = logs_dir
        self.processes: list[KizunaProcess] = []
        emulator.webhook_url = f"http://127.0.0.1:{self.port}/callback"

    async def start(self, stack: AsyncExitStack, command: str, name: str) -> KizunaProcess:
        health_port = self.port if command == "serve" else None
        process = await stack.enter_async_context(kizuna_process(command, self.env, self.logs_dir / f"{name}.log", health_port=health_port))
        self.processes.append(process)
        return process

    async def workers_ready(self, *workers: KizunaProcess) -> None:
        """Wait until the workers have swept the database once and read the queue."""
        async def ready() -> bool:
            return all("worker ready" in worker.log() for worker in workers)

        await eventually(ready, timeout=30, what="the workers to be ready")

    def logs(self) -> str:
        return "\n".join(f"== {path.name}\n{path.read_text(errors='replace')}" for path in sorted(self.logs_dir.glob("*.log")))


async def run_scenario(
    scenario: str, emulator: Emulator, logs_dir: Path, *, database_url: str | None, redis_prefix: str,
    customers: int, messages_each: int, gap: float, settle_timeout: float,
) -> Result:
    """Run one scenario; `database_url` is a migrated database (None: "postgres-restart"
    makes a cluster of its own). Raises AssertionError (with the logs) if anything was
    lost or doubled, or it did not settle in time."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}")
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server())
        postgres = None
        if scenario == "postgres-restart":
            postgres = await stack.enter_async_context(postgres_cluster())
            await asyncio.to_thread(upgrade, postgres.url)
            database_url = postgres.url
        assert database_url is not None
        production = Production(database_url, redis.url, emulator, logs_dir, redis_prefix)
        serve = await production.start(stack, "serve", "serve-1")
        first = await production.start(stack, "worker", "worker-1")
        second = await production.start(stack, "worker", "worker-2")
        await production.workers_ready(first, second)
        load = ChatLoad(emulator, customers, messages_each, gap=gap)
        chatting = asyncio.create_task(load.run())

        await load.acknowledged(load.total // 3)
        # Blocking steps run in a thread: the emulator shares this event loop.
        if scenario == "redis-restart":
            await asyncio.to_thread(redis.kill)
            await asyncio.sleep(1.0)  # down for a moment: every process sees connection errors
            await asyncio.to_thread(redis.start)
        elif scenario == "redis-flush":
            await asyncio.to_thread(redis.flushall)
        elif scenario == "postgres-restart":
            await asyncio.to_thread(postgres.restart_immediate)
        elif scenario == "kills":
            first.kill()
            await production.start(stack, "worker", "worker-3")
            await load.acknowledged(load.total // 2)
            second.kill()
            await production.start(stack, "worker", "worker-4")
            await load.acknowledged(2 * load.total // 3)
            serve.kill()  # LINE gets no answer and redelivers until the new serve answers
            await production.start(stack, "serve", "serve-2")
        fault_ended = time.monotonic()

        await asyncio.wait_for(chatting, 300)
        try:
            outcome = await settle_and_check(load, database_url, fault_ended=fault_ended, timeout=settle_timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{production.logs()[-20000:]}") from None
        killed = {first, second, serve} if scenario == "kills" else set()
        still_running = all(process.running for process in production.processes if process not in killed)
        return Result(outcome=outcome, logs=production.logs(), still_running=still_running)
