"""Campaign delivery at scale (issue 15, Figures): the audience snapshot of a large segment and the
send phase of a multicast campaign by `kizuna worker` processes against the LINE emulator.

The production shape on one machine: PostgreSQL (a fresh database per size), Redis (a key prefix of
the run's own), the emulator as LINE in a process of its own (`python -m kizuna.emulator`), and
--workers `kizuna worker` processes. Customers are LINE friends written with COPY (ids as LINE's:
'U' + 32 hex). The campaign (identical text to everyone who follows: multicast, 500 a request) is
created and started in this process: the start is the audience snapshot, timed on its own. Then the
workers are started and send; the send phase is from the first batch's first attempt to the last
batch's acknowledgement (from the batches' own times), and ends with every batch sent.

Anchors, in the same run:
- LINE's ceiling for multicast: 200 requests/s × 500 = 100,000 recipients/s (the emulator enforces
  LINE's limits, as LINE does, answering 429 beyond them): the send phase against ≥ 0.9 × that;
- "limits lifted": the emulator's and Kizuna's limits raised out of the way, so the figure is the
  engine's own ceiling (goal ≥ 3 × LINE's ceiling), with 1 and 2 workers.
Also: 429s answered (share of requests), peak RSS per worker process (VmHWM) at each size (flat as
the audience grows), the snapshot's time (goal ≤ 10 s at 1M), and the CPU the workers and the
emulator spent per recipient from the start to the end with the machine's busy share (what bounds
a lifted run on a small machine).

    .venv/bin/python bench/campaign_send.py                                  # 100k and 1M, LINE's limits, 2 workers
    .venv/bin/python bench/campaign_send.py --sizes 1000000 --lifted --workers 1,2
    .venv/bin/python bench/campaign_send.py --sizes 100000 --personalised      # {name}: one push each, vs 2,000/s

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust) and Redis at 127.0.0.1:6379.
Results: docs/benchmarks.md, "Campaigns: delivery at scale (issue 15)".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

CLI = [common.PYTHON, "-m", "kizuna.bot.cli"]
LINE_CEILING = 100_000  # multicast recipients/s: 200 requests/s × 500
PUSH_CEILING = 2_000  # push: one recipient a request, 2,000 requests/s
LIFTED = 1_000_000.0  # requests/s: out of the way


def rss_peak_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def admin(emulator_url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{emulator_url}{path}", data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


async def load_customers(dsn: str, count: int) -> float:
    import asyncpg

    started = time.perf_counter()
    connection = await asyncpg.connect(dsn)
    try:
        now = datetime.now(timezone.utc)
        users = common.bench_user_ids(count)
        await connection.copy_records_to_table(
            "customers", columns=["line_user_id", "display_name", "followed", "blocked", "registered", "marketing_opt_in",
                                  "created_at"],
            records=((user, f"客{n}", True, False, False, False, now) for n, user in enumerate(users)))
        await connection.execute("ANALYZE customers")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def create_and_start(database_url: str, text: str) -> tuple[int, float, dict]:
    """The campaign, created and started (the snapshot) in this process: (id, snapshot seconds, counts)."""
    from kizuna.campaigns import campaigns
    from kizuna.storage.db import create_engine, session_factory, transaction

    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        # One transaction, so the running workers cannot start the campaign themselves (it is due
        # at once); the snapshot and its commit are timed.
        async with transaction(sessions) as session:
            campaign = await campaigns.create(
                session, name="bench", segment_id=None, rule={"field": "followed", "op": "eq", "value": True},
                variants=[campaigns.VariantIn(messages=[{"type": "text", "text": text}], percent=100)],
                send_at=None, quiet_hours=False, frequency_cap=True, now=datetime.now(timezone.utc),
                delivery="multicast")  # (`auto` narrowcasts from 100,000 recipients: a bench of its own)
            await session.flush()
            started = time.perf_counter()
            started_campaign = await campaigns.start_due(session, now=datetime.now(timezone.utc))
        seconds = time.perf_counter() - started
        assert started_campaign is not None and started_campaign.status == "running", started_campaign
        return campaign.id, seconds, dict(started_campaign.audience or {})
    finally:
        await engine.dispose()


def send_phase(dsn: str, campaign_id: int) -> dict:
    rows = common.pg_fetch(dsn, (
        "SELECT count(*) FILTER (WHERE status = 'sent'), count(*), sum(recipients) FILTER (WHERE status = 'sent'), "
        "extract(epoch FROM max(sent_at) - min(first_attempt_at)), count(*) FILTER (WHERE duplicate) "
        f"FROM campaign_batches WHERE campaign_id = {int(campaign_id)}"))
    sent_batches, batches, recipients, seconds, duplicates = rows[0]
    return {"batches": batches, "sent_batches": sent_batches, "recipients": int(recipients or 0),
            "seconds": float(seconds or 0), "duplicates": duplicates}


class Run:
    def __init__(self, size: int, workers: int, lifted: bool, workdir: Path, personalised: bool = False) -> None:
        self.size, self.workers, self.lifted, self.workdir = size, workers, lifted, workdir
        self.personalised = personalised
        self.endpoint = "push" if personalised else "multicast"
        self.secret = secrets.token_hex(16)
        self.access_token = "bench-" + secrets.token_hex(12)
        self.prefix = f"kizuna-campaign-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def env(self, database: str, emulator_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIZUNA_", "LINE_"))
               and k not in ("DATABASE_URL", "REDIS_URL", "HOST", "PORT")}
        env |= {
            "PYTHONPATH": "/tmp/gcspy:" + str(common.REPO), "GCSPY_MODE": "freeze,threshold", "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
            "REDIS_URL": common.REDIS_URL, "KIZUNA_REDIS_PREFIX": self.prefix, "KIZUNA_EMULATOR": "false",
            "LINE_CHANNEL_SECRET": self.secret, "LINE_CHANNEL_ACCESS_TOKEN": self.access_token,
            "LINE_API_BASE_URL": emulator_url, "LINE_DATA_API_BASE_URL": emulator_url,
            "KIZUNA_SECRET_KEY": "campaign-bench-" + "k" * 32, "KIZUNA_LOG_LEVEL": "INFO", "HOST": "127.0.0.1",
        }
        if self.lifted:
            env["KIZUNA_LINE_RATE_LIMITS"] = f"{self.endpoint}={LIFTED:.0f}"
        return env

    def run(self) -> dict:
        with common.fresh_postgres_database("kizuna_campaign") as database, contextlib.ExitStack() as stack:
            dsn = common.PG_BENCH_DSN.format(name=database)
            port = common.free_port()
            emulator_url = f"http://127.0.0.1:{port}"
            env = self.env(database, emulator_url)
            emulator = common.Server("emulator", [common.PYTHON, "-m", "kizuna.emulator", "--port", str(port),
                                                  "--channel-secret", self.secret, "--access-token", self.access_token,
                                                  "--request-log-limit", "200000"],
                                     env=env, port=port, log_path=self.workdir / "emulator.log", health_path="/api/info")
            stack.callback(emulator.stop)
            emulator.start()
            if self.lifted:
                admin(emulator_url, "/api/admin/rate_limit", {"endpoint": self.endpoint, "per_second": LIFTED, "burst": LIFTED})
            common.run_checked([*CLI, "migrate"], env=env, timeout=300, cwd=self.workdir)
            load_seconds = asyncio.run(load_customers(dsn, self.size))
            text = "{name}さん、冬のセール開催中！" if self.personalised else "冬のセール開催中！"
            # The workers are up before the campaign starts, as in production (they run all along; a
            # worker's start, 1-2 s of CPU on a 2-vCPU machine, is no part of the send phase).
            workers = []
            for index in range(self.workers):
                worker = common.Server(f"worker{index + 1}", [*CLI, "worker"], env=env, port=0, cwd=self.workdir,
                                       log_path=self.workdir / f"worker{index + 1}.log", ready_text="worker started")
                stack.callback(worker.stop)
                workers.append(worker.start())
            # CPU from here to the campaign's end: the workers', the emulator's and the machine's
            # (what bounds the engine once LINE's limits are lifted: docs/benchmarks.md).
            cpu_before = [common.proc_cpu_seconds(worker.pid) or 0.0 for worker in workers]
            emulator_cpu_before = common.proc_cpu_seconds(emulator.pid) or 0.0
            machine_before = common.machine_cpu_seconds()
            campaign_id, snapshot_seconds, audience = asyncio.run(create_and_start(env["DATABASE_URL"], text))
            deadline = time.monotonic() + max(120.0, self.size / 5000)
            while time.monotonic() < deadline:
                status = common.pg_fetch(dsn, f"SELECT status FROM campaigns WHERE id = {campaign_id}")[0][0]
                if status == "completed":
                    break
                time.sleep(0.2)
            else:
                state = common.pg_fetch(dsn, f"SELECT status, note FROM campaigns WHERE id = {campaign_id}")
                batches = common.pg_fetch(dsn, "SELECT status, count(*), max(last_error) FROM campaign_batches GROUP BY status")
                raise RuntimeError(f"the campaign did not complete in time: {state} {batches}\n{workers[0].log_tail()}")
            worker_cpu = sum((common.proc_cpu_seconds(worker.pid) or 0.0) - before for worker, before in zip(workers, cpu_before))
            emulator_cpu = (common.proc_cpu_seconds(emulator.pid) or 0.0) - emulator_cpu_before
            busy, total = (after - before for after, before in zip(common.machine_cpu_seconds(), machine_before))
            phase = send_phase(dsn, campaign_id)
            if phase["sent_batches"] != phase["batches"]:
                batches = common.pg_fetch(dsn, "SELECT status, count(*), max(last_error) FROM campaign_batches GROUP BY status")
                raise RuntimeError(f"the campaign completed with batches not sent: {batches}\n{workers[0].log_tail()}")
            stats = admin(emulator_url, "/api/admin/stats")["requests"]
            requests = sum(count for key, count in stats.items() if key.startswith(f"{self.endpoint} "))
            refused = stats.get(f"{self.endpoint} 429", 0)
            rss = [rss_peak_mb(worker.pid) for worker in workers]
            common.redis_delete_prefix(common.REDIS_URL, self.prefix)
        return {
            "endpoint": self.endpoint, "size": self.size, "workers": self.workers, "lifted": self.lifted, "load_seconds": round(load_seconds, 1),
            "snapshot_seconds": round(snapshot_seconds, 2), "audience": audience, **phase,
            "recipients_per_second": round(phase["recipients"] / phase["seconds"]) if phase["seconds"] else None,
            "requests": requests, "answered_429": refused,
            "share_429": round(refused / requests, 4) if requests else None, "worker_rss_peak_mb": rss,
            # CPU from the start (snapshot) to completion, per recipient sent; the machine's busy share
            "worker_cpu_us_per_recipient": round(worker_cpu / phase["recipients"] * 1e6, 2) if phase["recipients"] else None,
            "emulator_cpu_us_per_recipient": round(emulator_cpu / phase["recipients"] * 1e6, 2) if phase["recipients"] else None,
            "machine_busy": round(busy / total, 2) if total else None,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--workers", default="2", help="comma-separated worker counts")
    parser.add_argument("--lifted", action="store_true", help="the engine's own ceiling: every limit lifted")
    parser.add_argument("--personalised", action="store_true",
                        help="{name} in the text: one push per recipient (LINE's ceiling 2,000/s)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print(f"machine: {common.describe_machine(common.machine_info())}")
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-campaign-"))
    for workers in (int(w) for w in args.workers.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            result = Run(size, workers, args.lifted, workdir, args.personalised).run()
            results.append(result)
            anchor = PUSH_CEILING if args.personalised else LINE_CEILING
            rate = result["recipients_per_second"] or 0
            print(f"{size:>9,} recipients, {workers} worker(s){' (limits lifted)' if args.lifted else ''}: "
                  f"snapshot {result['snapshot_seconds']:.2f} s; send {result['seconds']:.2f} s = {rate:,.0f}/s "
                  f"({rate / anchor:.2f}× LINE's ceiling of {anchor:,}/s); 429 {result['answered_429']} of {result['requests']} "
                  f"requests; worker RSS peak {', '.join(f'{mb:.0f}' for mb in result['worker_rss_peak_mb'] if mb)} MB; "
                  f"{result['sent_batches']}/{result['batches']} batches sent, {result['duplicates']} with 409s; "
                  f"CPU per recipient: workers {result['worker_cpu_us_per_recipient']} µs, emulator "
                  f"{result['emulator_cpu_us_per_recipient']} µs; machine busy {result['machine_busy']:.0%}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
