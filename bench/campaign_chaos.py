"""A 100k personalised campaign under faults (issue 15, Figures: "Faults"): the long variant of
tests/bot/test_campaign_chaos.py.

The production shape on one machine, every part a real process: a PostgreSQL cluster and a
redis-server of the run's own (so they can be restarted), the emulator as LINE in its own process
at LINE's push limit (2,000 requests/s) answering 5 % of pushes 500 before executing, 5 % 500 after
executing (the acknowledgement lost) and 2 % 429, and two `kizuna worker` processes, one of which is
killed with SIGKILL every 2-5 s and replaced. The campaign is personalised (`{name}`: one push per
recipient, one text per recipient), so the emulator's record of executed pushes says who got it how
often. Scenarios, each in the same run:

- `kills`: the faults and the kills alone (the baseline of the two below);
- `redis-restart`: the same, and Redis killed mid-campaign and started again empty;
- `postgres-restart`: the same, and PostgreSQL restarted with `-m immediate` mid-campaign.

Printed per scenario: the campaign's time, the rate, workers killed, faults injected, and what the
emulator executed: recipients reached, duplicates (a recipient pushed twice) and gaps (never
pushed), beside the campaign's own stats (sent / failed / undetermined / pending). The goal is zero
duplicates and zero gaps in every scenario.

    .venv/bin/python bench/campaign_chaos.py                                 # 100k, all three
    .venv/bin/python bench/campaign_chaos.py --size 5000 --scenario redis-restart

Needs initdb, pg_ctl and redis-server (run as root: PostgreSQL runs as the postgres user).
Results: docs/benchmarks.md, "Campaigns: delivery at scale (issue 15)".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common as common  # noqa: E402
from campaign_send import CLI, admin, create_and_start, load_customers  # noqa: E402

from tests.services import PostgresCluster, RedisServer  # noqa: E402

SCENARIOS = ("kills", "redis-restart", "postgres-restart")
FAULTS = {"before": 0.05, "after": 0.05, "rate_limited": 0.02}


class Scenario:
    def __init__(self, name: str, size: int, workdir: Path, seed: int) -> None:
        self.name, self.size, self.workdir = name, size, workdir
        self.rng = random.Random(seed)
        self.secret = secrets.token_hex(16)
        self.access_token = "chaos-" + secrets.token_hex(12)
        self.workers: list[common.Server] = []
        self.started = 0
        self.kills = 0

    def env(self, database_url: str, redis_url: str, emulator_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIZUNA_", "LINE_"))
               and k not in ("DATABASE_URL", "REDIS_URL", "HOST", "PORT")}
        return env | {
            "PYTHONPATH": str(common.REPO), "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "KIZUNA_REDIS_PREFIX": "chaos", "KIZUNA_EMULATOR": "false",
            "LINE_CHANNEL_SECRET": self.secret, "LINE_CHANNEL_ACCESS_TOKEN": self.access_token,
            "LINE_API_BASE_URL": emulator_url, "LINE_DATA_API_BASE_URL": emulator_url,
            "KIZUNA_SECRET_KEY": "campaign-chaos-" + "k" * 32, "KIZUNA_LOG_LEVEL": "INFO", "HOST": "127.0.0.1",
        }

    def start_worker(self, env: dict[str, str]) -> None:
        self.started += 1
        worker = common.Server(f"worker{self.started}", [*CLI, "worker"], env=env, port=0, cwd=self.workdir,
                               log_path=self.workdir / f"worker{self.started}.log", ready_text="worker started")
        self.workers.append(worker.start())

    def kill_one(self, env: dict[str, str]) -> None:
        """SIGKILL the oldest worker (no shutdown of any kind) and start its replacement."""
        victim = self.workers.pop(0)
        victim.process.kill()
        victim.process.wait(10)
        self.kills += 1
        self.start_worker(env)

    def run(self) -> dict:
        directory = Path(tempfile.mkdtemp(prefix="kizuna-chaos-pg-"))
        postgres, redis = PostgresCluster(directory), RedisServer()
        with contextlib.ExitStack() as stack:
            postgres.init()
            postgres.start()
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            stack.callback(postgres.stop, "immediate")
            redis.start()
            stack.callback(redis.kill)
            dsn = f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
            port = common.free_port()
            emulator_url = f"http://127.0.0.1:{port}"
            env = self.env(postgres.url, redis.url, emulator_url)
            faults = ",".join(str(FAULTS[key]) for key in ("before", "after", "rate_limited"))
            emulator = common.Server("emulator", [
                common.PYTHON, "-m", "kizuna.emulator", "--port", str(port), "--channel-secret", self.secret,
                "--access-token", self.access_token, "--request-log-limit", "1000", "--faults", f"push={faults}",
                "--fault-seed", "15"], env=env, port=port, log_path=self.workdir / "emulator.log", health_path="/api/info")
            stack.callback(emulator.stop)
            emulator.start()
            common.run_checked([*CLI, "migrate"], env=env, timeout=300, cwd=self.workdir)
            asyncio.run(load_customers(dsn, self.size))
            campaign_id, _snapshot, _audience = asyncio.run(create_and_start(postgres.url, "{name}さん、冬のセール開催中！"))
            for _ in range(2):
                self.start_worker(env)
            for worker in self.workers:
                stack.callback(lambda w=worker: w.stop(5))  # the replacements are added below as they start
            started = time.monotonic()
            restarted_at = None
            next_kill = started + self.rng.uniform(2, 5)
            deadline = started + max(600.0, self.size / 100)
            while True:
                now = time.monotonic()
                if now > deadline:
                    raise RuntimeError(f"{self.name}: the campaign did not complete in time\n{self.workers[-1].log_tail()}")
                progress = _sent_share(dsn, campaign_id)
                if progress is not None and progress[0] == "completed":
                    break
                if restarted_at is None and progress is not None and progress[1] >= 0.3 and self.name != "kills":
                    restarted_at = time.monotonic() - started
                    if self.name == "redis-restart":
                        redis.kill()
                        time.sleep(1.0)  # away for a second: everything it held is gone
                        redis.start()
                    else:
                        postgres.restart_immediate()
                if now >= next_kill:
                    self.kill_one(env)
                    stack.callback(lambda w=self.workers[-1]: w.stop(5))
                    next_kill = time.monotonic() + self.rng.uniform(2, 5)
                time.sleep(0.2)
            seconds = time.monotonic() - started
            stats = asyncio.run(_stats(postgres.url, campaign_id))
            delivered = admin(emulator_url, "/api/admin/deliveries?via=push")["fingerprints"]
            injected = admin(emulator_url, "/api/admin/fault_rates")["injected"]
            logs = "\n".join(path.read_text(errors="replace") for path in sorted(self.workdir.glob("worker*.log")))
        reached = sum(group["users"] for group in delivered)
        return {
            "scenario": self.name, "size": self.size, "seconds": round(seconds, 1),
            "per_second": round(self.size / seconds), "kills": self.kills,
            "restart_at_seconds": round(restarted_at, 1) if restarted_at is not None else None,
            "faults_injected": injected, "reached": reached,
            "duplicates": sum(group["duplicated_users"] for group in delivered),
            "gaps": self.size - reached, "stats": stats, "tracebacks": logs.count("Traceback"),
        }


def _sent_share(dsn: str, campaign_id: int) -> tuple[str, float] | None:
    """(the campaign's status, the share of its batches sent); None while the database is away."""
    try:
        [(status, sent, total)] = common.pg_fetch(dsn, (
            "SELECT c.status, count(*) FILTER (WHERE b.status = 'sent'), count(b.seq) FROM campaigns c "
            f"LEFT JOIN campaign_batches b ON b.campaign_id = c.id WHERE c.id = {int(campaign_id)} GROUP BY c.status"))
    except Exception:  # noqa: BLE001 - any of asyncpg's connection errors while PostgreSQL restarts
        return None
    return status, (sent / total if total else 0.0)


async def _stats(database_url: str, campaign_id: int) -> dict:
    from kizuna.campaigns import campaigns
    from kizuna.storage.db import create_engine, session_factory

    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            stats = await campaigns.stats(session, campaign_id)
    finally:
        await engine.dispose()
    return {"sent": stats.sent, "failed": stats.failed, "undetermined": stats.undetermined, "pending": stats.pending,
            "duplicates_avoided": stats.duplicates_avoided}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="default: all three")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {common.describe_machine(common.machine_info())}", flush=True)
    results = []
    for index, name in enumerate(args.scenario or SCENARIOS):
        workdir = Path(tempfile.mkdtemp(prefix=f"kizuna-campaign-chaos-{name}-"))
        result = Scenario(name, args.size, workdir, seed=index + 1).run()
        results.append(result)
        stats = result["stats"]
        restart = "" if result["restart_at_seconds"] is None else f", restart at {result['restart_at_seconds']:.0f} s"
        print(f"{name:>16}: {result['size']:,} recipients in {result['seconds']:.1f} s ({result['per_second']:,}/s), "
              f"{result['kills']} workers killed{restart}; "
              f"faults {result['faults_injected']}; emulator: reached {result['reached']:,}, duplicates "
              f"{result['duplicates']}, gaps {result['gaps']}; campaign: sent {stats['sent']:,}, failed {stats['failed']}, "
              f"undetermined {stats['undetermined']}, pending {stats['pending']}, 409s {stats['duplicates_avoided']}; "
              f"tracebacks in worker logs {result['tracebacks']} (logs: {workdir})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0 if all(r["duplicates"] == 0 and r["gaps"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
