"""Webhook ingest benchmark (issue 2): signed LINE webhooks per second into `kizuna serve`.

Compares, in one run and with one load generator:

- "bare aiohttp": an aiohttp app whose POST /callback only checks the HMAC-SHA256
  signature of the raw body (hmac.compare_digest) and answers 200 `{}`;
- "kizuna serve": `python -m kizuna.bot.cli serve` in production mode (PostgreSQL in a
  fresh database this script creates and drops, Redis with a unique key prefix, no
  worker: serve only verifies, stores and queues).

The load generator is a separate process (asyncio + aiohttp client): a closed loop with a
fixed number of connections (default 32) for a fixed time after a warm-up, then an open
loop at a fixed rate (default 200 req/s) for latency under normal load. Each request is a
signed LINE text-message event built by kizuna.emulator, with a unique webhookEventId and
one of 1,000 users; 1 % are redeliveries of an earlier event. Afterwards the set of
webhookEventIds in inbound_events is compared with the set sent.

    .venv/bin/python bench/webhook.py                    # defaults: 32 connections, 2 s + 10 s
    .venv/bin/python bench/webhook.py --repeat 3 --profile --sqlite
    .venv/bin/python bench/webhook.py --requests 20000   # a fixed count instead of a duration

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust, database `test`) and Redis at
127.0.0.1:6379. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0
# A run during which processes other than the loader, the server, PostgreSQL and Redis used
# more than this share of a core is flagged: on a shared 2-core machine it is not comparable.
NOISY_OTHER_PCT = 15.0
SETTINGS_ENV_PREFIXES = ("KIZUNA_", "LINE_")
SETTINGS_ENV_NAMES = {"DATABASE_URL", "REDIS_URL", "HOST", "PORT"}


# --- the bare handler (a subprocess: `webhook.py _bare PORT`, secret in BENCH_SECRET) --------


def bare_server(port: int) -> int:
    from aiohttp import web

    key = os.environ["BENCH_SECRET"].encode()

    async def callback(request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get("x-line-signature", "")
        expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest())
        if not hmac.compare_digest(expected, signature.encode()):
            return web.json_response({"message": "invalid signature"}, status=401)
        return web.json_response({})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=1_000_000)
    app.router.add_post("/callback", callback)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
    return 0


# --- the load generator (a subprocess: `webhook.py _loadgen JSON`) ---------------------------


def loadgen(spec: dict) -> int:
    import asyncio

    factory = common.LineWebhookFactory(
        spec["secret"], users=spec["users"], events_per_request=spec["events_per_request"],
        redeliveries=spec["redeliveries"], seed=spec.get("seed"),
    )
    watch = {label: value for label, value in spec["watch"].items()}
    if spec["mode"] == "closed":
        stats = asyncio.run(common.closed_loop(
            spec["url"], factory.make, concurrency=spec["concurrency"], warmup=spec["warmup"],
            duration=spec["duration"], count=spec["count"], watch=watch,
        ))
    else:
        stats = asyncio.run(common.open_loop(
            spec["url"], factory.make, rate=spec["rate"], warmup=spec["warmup"],
            duration=spec["duration"], watch=watch,
        ))
    if spec.get("ids_out"):
        Path(spec["ids_out"]).write_text(json.dumps({"sent": stats.sent_ids, "acked": stats.acked_ids}))
    print(json.dumps(stats.summary()))
    return 0


# --- the run ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="kizuna-bench-"))
        self.secret = secrets.token_hex(16)
        self.access_token = "bench-" + secrets.token_hex(12)
        self.runs: list[dict] = []
        self.id_files: dict[str, list[Path]] = {}
        self.started = time.monotonic()
        self.pg_database: str | None = None
        # Put before each server's argv, e.g. ["taskset", "-c", "0"] to pin it (webhook_wrk.py).
        self.server_prefix: list[str] = []

    # environment ------------------------------------------------------------------------

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(SETTINGS_ENV_PREFIXES) and k not in SETTINGS_ENV_NAMES}
        env["PYTHONPATH"] = str(common.REPO)
        return env

    def kizuna_env(self, database_url: str, redis_prefix: str | None) -> dict[str, str]:
        env = self.base_env() | {
            "DATABASE_URL": database_url,
            "LINE_CHANNEL_SECRET": self.secret,
            "LINE_CHANNEL_ACCESS_TOKEN": self.access_token,
            "KIZUNA_SECRET_KEY": secrets.token_hex(20),  # 40 characters
            "KIZUNA_LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
        }
        if redis_prefix is not None:
            # Production mode. serve never calls LINE there; a dead loopback port makes sure.
            env |= {"REDIS_URL": common.REDIS_URL, "KIZUNA_REDIS_PREFIX": redis_prefix, "KIZUNA_EMULATOR": "false",
                    "LINE_API_BASE_URL": "http://127.0.0.1:9", "LINE_DATA_API_BASE_URL": "http://127.0.0.1:9"}
        else:
            # Embedded mode as `make run` has it: the in-process worker answers through the
            # mounted emulator (loopback), so nothing leaves the machine.
            env |= {"KIZUNA_EMULATOR": "true"}
        return env

    def start_kizuna(self, stack: contextlib.ExitStack, name: str, env: dict[str, str]) -> common.Server:
        cli = [common.PYTHON, str(self.args.serve_script.resolve())] if self.args.serve_script else [
            common.PYTHON, "-m", "kizuna.bot.cli"]
        common.run_checked([*cli, "migrate"], env=env, timeout=300, cwd=self.workdir)
        port = common.free_port()
        server = common.Server(name, [*self.server_prefix, *cli, "serve", "--port", str(port)],
                               env=env, port=port, log_path=self.workdir / f"{name}.log", cwd=self.workdir)
        stack.callback(server.stop)
        return server.start()

    def start_bare(self, stack: contextlib.ExitStack) -> common.Server:
        port = common.free_port()
        env = self.base_env() | {"BENCH_SECRET": self.secret}
        server = common.Server("bare", [*self.server_prefix, common.PYTHON, str(Path(__file__).resolve()), "_bare", str(port)],
                               env=env, port=port, log_path=self.workdir / "bare.log", cwd=self.workdir)
        stack.callback(server.stop)
        return server.start()

    # one load-generator run ---------------------------------------------------------------

    def load(self, label: str, server: common.Server, mode: str, *, database: str | None,
             profile: bool = False) -> dict:
        """One load-generator run against `server`; `database` is "postgres", "sqlite" or None
        (None: no invariant to check, as for the bare handler)."""
        a = self.args
        if a.quiet_wait > 0:
            busy = common.wait_for_quiet(max_wait=a.quiet_wait)
            if busy >= 0.2:
                print(f"  (machine still busy before {label} {mode}: {busy:.2f} cores in use by others)", flush=True)
        ids_out = self.workdir / f"ids-{uuid.uuid4().hex[:8]}.json"
        watch: dict = {"server": [server.pid], "redis": "comm:redis-server"}
        if database == "postgres":
            watch["postgres"] = f"pgdb:{self.pg_database}"
        elif label == "bare aiohttp" and self.pg_database:
            watch["postgres"] = f"pgdb:{self.pg_database}"  # idle: shows the comparison is clean
        spec = {
            "url": f"http://127.0.0.1:{server.port}/callback", "secret": self.secret, "mode": mode,
            "concurrency": a.concurrency, "warmup": a.warmup, "duration": a.duration,
            "count": a.requests if mode == "closed" else None, "rate": a.open_rate,
            "users": a.users, "events_per_request": a.events_per_request, "redeliveries": a.redeliveries,
            "seed": None, "watch": watch, "ids_out": str(ids_out) if database else None,
        }
        budget = a.warmup + (a.duration if spec["count"] is None else 600) + 120
        sessions_before = self.pg_sessions() if database == "postgres" else None
        spy = None
        if profile:
            spy_out = self.workdir / f"py-spy-{label.replace(' ', '-')}.txt"
            spy = subprocess.Popen(
                [self.py_spy, "record", "--pid", str(server.pid), "--rate", "200",
                 "--duration", str(int(a.warmup + a.duration)), "--format", "raw", "--output", str(spy_out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        try:
            result = subprocess.run([common.PYTHON, str(Path(__file__).resolve()), "_loadgen", json.dumps(spec)],
                                    env=self.base_env(), capture_output=True, text=True, timeout=budget,
                                    stdin=subprocess.DEVNULL)
        finally:
            if spy is not None:
                try:
                    spy.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
        if result.returncode != 0:
            raise RuntimeError(f"load generator failed against {label}:\n{result.stdout}\n{result.stderr}\n"
                               f"server log:\n{server.log_tail()}")
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        summary |= {"target": label, "events_per_request": a.events_per_request}
        if sessions_before is not None:
            # PostgreSQL connections opened meanwhile (its statistics lag by up to a second).
            time.sleep(1.2)
            summary["pg_connections_opened"] = self.pg_sessions() - sessions_before
        if database:
            self.id_files.setdefault(label, []).append(ids_out)
        if profile:
            summary["profile"] = common.summarize_collapsed(spy_out) if spy_out.exists() else {
                "error": (spy.stderr.read() if spy and spy.stderr else "")[-2000:]}
            summary["profile_file"] = str(spy_out)
        self.runs.append(summary)
        return summary

    # the invariant ------------------------------------------------------------------------

    def check_ids(self, label: str, stored: list[str]) -> dict:
        sent: set[str] = set()
        acked: set[str] = set()
        sent_total = 0
        for path in self.id_files.get(label, []):
            data = json.loads(path.read_text())
            sent_total += len(data["sent"])
            sent.update(data["sent"])
            acked.update(data["acked"])
        rows = set(stored)
        check = {
            "target": label, "events_sent": sent_total, "distinct_events_sent": len(sent),
            "distinct_events_acked": len(acked), "rows": len(stored), "distinct_rows": len(rows),
            "acked_but_missing": len(acked - rows), "stored_but_never_sent": len(rows - sent),
        }
        # Requests that failed without an answer may or may not have been stored.
        check["ok"] = (len(stored) == len(rows) and not check["acked_but_missing"]
                       and not check["stored_but_never_sent"] and (len(rows) == len(sent) or len(acked) < len(sent)))
        check["exact"] = len(stored) == len(sent) and rows == sent
        return check

    def pg_sessions(self) -> int:
        rows = common.pg_fetch(common.PG_ADMIN_DSN,
                               f"SELECT sessions FROM pg_stat_database WHERE datname = '{self.pg_database}'")
        return int(rows[0][0]) if rows else 0

    @property
    def py_spy(self) -> str:
        local = Path(common.PYTHON).parent / "py-spy"
        return str(local) if local.exists() else (shutil.which("py-spy") or "py-spy")

    # the whole run --------------------------------------------------------------------------

    def run(self) -> dict:
        a = self.args
        info = common.machine_info()
        print(f"machine: {common.describe_machine(info)}")
        print(f"load: {a.concurrency} connections closed loop, "
              + (f"{a.requests} requests" if a.requests else f"{a.warmup:g} s warm-up + {a.duration:g} s")
              + (f"; open loop {a.open_rate:g} req/s for {a.warmup:g} s + {a.duration:g} s" if a.open_rate else "")
              + f"; {a.events_per_request} event(s)/request, {a.users} users, {a.redeliveries:.0%} redeliveries",
              flush=True)
        report: dict = {"machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]),
                        "args": vars(a), "reps": [], "checks": []}
        targets = [t for t in ("bare", "kizuna") if t in a.targets]
        with contextlib.ExitStack() as stack:
            if not a.keep:
                stack.callback(shutil.rmtree, self.workdir, True)
            servers: dict[str, common.Server] = {}
            if "bare" in targets:
                servers["bare aiohttp"] = self.start_bare(stack)
            if "kizuna" in targets:
                database = self.pg_database = stack.enter_context(common.fresh_postgres_database())
                prefix = f"kizuna-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                stack.callback(common.redis_delete_prefix, common.REDIS_URL, prefix)
                env = self.kizuna_env(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}", prefix)
                servers["kizuna serve"] = self.start_kizuna(stack, "kizuna", env)
                print(f"database {database}, redis prefix {prefix}", flush=True)
            labels = list(servers)
            for rep in range(a.repeat):
                # Alternate the order so that drift (a checkpoint, a warm cache) does not favour one.
                order = labels if rep % 2 == 0 else labels[::-1]
                closed = {label: self.load(label, servers[label], "closed",
                                           database="postgres" if "kizuna" in label else None) for label in order}
                print_table(f"closed loop, run {rep + 1}/{a.repeat}", closed)
                opened = {}
                if a.open_rate:
                    opened = {label: self.load(label, servers[label], "open",
                                               database="postgres" if "kizuna" in label else None)
                              for label in order}
                    print_table(f"open loop {a.open_rate:g} req/s, run {rep + 1}/{a.repeat}", opened)
                report["reps"].append({"closed": closed, "open": opened})
            if a.profile and "kizuna serve" in servers:
                profiled = self.load("kizuna serve", servers["kizuna serve"], "closed", database="postgres", profile=True)
                report["profile"] = {"run": {k: v for k, v in profiled.items() if k != "profile"},
                                     **profiled["profile"]}
                print_profile(profiled)
            if "kizuna serve" in servers:
                servers["kizuna serve"].stop()
                stored = [r[0] for r in common.pg_fetch(common.PG_BENCH_DSN.format(name=database),
                                                        "SELECT webhook_event_id FROM inbound_events")]
                report["checks"].append(print_check(self.check_ids("kizuna serve", stored)))
            if a.sqlite:
                report["sqlite"] = self.run_sqlite(stack, servers.get("bare aiohttp"))
        if a.repeat > 1 and len(labels) == 2:
            print_medians(report)
        return report

    def run_sqlite(self, stack: contextlib.ExitStack, bare: common.Server | None) -> dict:
        """Embedded mode (SQLite, in-process queue AND worker, emulator mounted): labelled
        apart; its worker competes with ingest for the one process, so no claims about it."""
        path = self.workdir / "embedded" / "kizuna.db"
        label = "kizuna embedded"
        server = self.start_kizuna(stack, "embedded", self.kizuna_env(f"sqlite+aiosqlite:///{path}", None))
        out: dict = {"closed": {label: self.load(label, server, "closed", database="sqlite")}}
        print_table("SQLite embedded mode (serve + in-process worker), closed loop", out["closed"])
        if self.args.open_rate:
            out["open"] = {label: self.load(label, server, "open", database="sqlite")}
            print_table(f"SQLite embedded mode, open loop {self.args.open_rate:g} req/s", out["open"])
        server.stop()
        with contextlib.closing(sqlite3.connect(path)) as connection:
            stored = [r[0] for r in connection.execute("SELECT webhook_event_id FROM inbound_events")]
        out["check"] = print_check(self.check_ids(label, stored))
        return out


# --- printing ---------------------------------------------------------------------------------


def _f(value, digits: int = 1, width: int = 9) -> str:
    return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def print_table(title: str, results: dict[str, dict]) -> None:
    print(f"\n== {title}")
    print(f"{'target':<18}{'req/s':>9}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for label, r in results.items():
        print(f"{label:<18}{_f(r['req_per_s'])}{_f(r['events_per_s'], width=10)}{_f(r['p50_ms'], 2)}"
              f"{_f(r['p99_ms'], 2)}{r['errors']:>8}")
    bare, kizuna = results.get("bare aiohttp"), results.get("kizuna serve")
    if bare and kizuna and bare["req_per_s"]:
        ratio = kizuna["req_per_s"] / bare["req_per_s"]
        p50 = kizuna["p50_ms"] / bare["p50_ms"] if bare["p50_ms"] else None
        p99 = kizuna["p99_ms"] / bare["p99_ms"] if bare["p99_ms"] else None
        print(f"{'ratio kizuna/bare':<18}{_f(ratio, 3)}{_f(kizuna['events_per_s'] / bare['events_per_s'], 3, 10)}"
              f"{_f(p50, 2)}{_f(p99, 2)}")
        if results[next(iter(results))]["mode"] == "closed":
            verdict_rate = "meets" if ratio >= GOAL_RATIO else f"misses (needs x{GOAL_RATIO / ratio:.1f})"
            verdict_p99 = "meets" if (kizuna["p99_ms"] or 1e9) < GOAL_P99_MS else "misses"
            print(f"goal: rate >= {GOAL_RATIO:.0%} of bare: {ratio:.1%}, {verdict_rate}; "
                  f"p99 < {GOAL_P99_MS:g} ms: {kizuna['p99_ms']:.1f} ms, {verdict_p99}")
    print(f"{'cpu % of one core':<18}{'gen':>6}{'server':>8}{'postgres':>10}{'redis':>7}{'other':>7}"
          f"{'   cpu us/req: gen':>19}{'server':>8}{'postgres':>10}{'  req/s each second':>21}")
    for label, r in results.items():
        cpu, n = r.get("cpu") or {}, r["requests"] or 1
        wall = cpu.get("wall_s") or 1.0
        pct = {k: 100 * cpu.get(f"{k}_s", 0.0) / wall for k in ("self", "server", "postgres", "redis")}
        # Whatever else ran on the machine meanwhile (other users' jobs, the kernel, the loader's parent).
        other = 100 * cpu.get("machine_busy_s", 0.0) / wall - sum(pct.values())
        us = {k: 1e6 * cpu.get(f"{k}_s", 0.0) / n for k in ("self", "server", "postgres")}
        print(f"{label:<18}{pct['self']:>6.0f}{pct['server']:>8.0f}{pct['postgres']:>10.0f}{pct['redis']:>7.0f}"
              f"{other:>7.0f}{us['self']:>19.0f}{us['server']:>8.0f}{us['postgres']:>10.0f}"
              f"{str(r.get('per_second_min')) + '..' + str(r.get('per_second_max')):>21}"
              + ("  <- other jobs used CPU meanwhile" if other > NOISY_OTHER_PCT else ""))
        r["other_cpu_pct"] = other
    for label, r in results.items():
        if r.get("pg_connections_opened"):
            print(f"  {label}: {r['pg_connections_opened']} PostgreSQL connection(s) opened during the run "
                  f"(warm-up included)")
    for label, r in results.items():
        if r["total_errors"]:
            print(f"  {label}: {r['total_errors']} error(s): {r['error_samples']}")
    sys.stdout.flush()


def print_check(check: dict) -> dict:
    verdict = "OK" if check["exact"] else ("OK (some requests failed)" if check["ok"] else "FAILED")
    print(f"\ninvariant ({check['target']}): {check['events_sent']} events sent, {check['distinct_events_sent']} distinct"
          f" ({check['events_sent'] - check['distinct_events_sent']} redeliveries), {check['distinct_events_acked']} acked;"
          f" inbound_events has {check['rows']} rows ({check['distinct_rows']} distinct); acked but missing "
          f"{check['acked_but_missing']}, stored but never sent {check['stored_but_never_sent']}: {verdict}", flush=True)
    return check


def print_profile(run: dict) -> None:
    profile = run["profile"]
    print(f"\n== py-spy profile of kizuna serve under the closed loop ({run['req_per_s']:.0f} req/s while sampled; "
          f"raw stacks in {run['profile_file']})")
    if "error" in profile:
        print(f"py-spy failed: {profile['error']}")
        return
    print(f"{profile['samples']} samples (busy time only). Where the time goes:")
    for name, share in profile["buckets"]:
        print(f"  {share:5.1f}%  {name}")
    print("Self time by library:")
    for name, share in profile["library_self"][:12]:
        print(f"  {share:5.1f}%  {name}")
    print("Inclusive time, top functions:")
    for name, share in profile["inclusive"][:30]:
        print(f"  {share:5.1f}%  {name}")
    print("Self time, top functions:")
    for name, share in profile["self"][:20]:
        print(f"  {share:5.1f}%  {name}")
    sys.stdout.flush()


def print_medians(report: dict) -> None:
    for mode in ("closed", "open"):
        reps = [rep[mode] for rep in report["reps"] if rep.get(mode)]
        if not reps:
            continue
        print(f"\n== {mode} loop over {len(reps)} runs: median (min..max)")
        print(f"{'target':<18}{'req/s':>24}{'p50 ms':>24}{'p99 ms':>26}")
        for label in reps[0]:
            cols = []
            for key, digits in (("req_per_s", 0), ("p50_ms", 2), ("p99_ms", 2)):
                values = [rep[label][key] for rep in reps if rep[label][key] is not None]
                cols.append(f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})")
            print(f"{label:<18}{cols[0]:>24}{cols[1]:>24}{cols[2]:>26}")
        ratios = [rep["kizuna serve"]["req_per_s"] / rep["bare aiohttp"]["req_per_s"] for rep in reps]
        ratio = f"{statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f})"
        print(f"{'ratio kizuna/bare':<18}{ratio:>24}")


# --- entry point ------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=32, help="closed loop: connections (default 32)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each run (default 2)")
    parser.add_argument("--requests", type=int, default=None,
                        help="closed loop: measure this many requests instead of a duration")
    parser.add_argument("--open-rate", type=float, default=200.0,
                        help="open loop: paced requests per second (default 200; 0 skips the open loop)")
    parser.add_argument("--events-per-request", type=int, default=1, help="events in each webhook body (default 1)")
    parser.add_argument("--users", type=int, default=1000, help="distinct LINE users (default 1000)")
    parser.add_argument("--redeliveries", type=float, default=0.01,
                        help="fraction of events that are redeliveries of an earlier one (default 0.01)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement (default 1)")
    parser.add_argument("--targets", default="bare,kizuna", help="comma-separated: bare,kizuna (default both)")
    parser.add_argument("--sqlite", action="store_true", help="also run kizuna in embedded mode (SQLite + worker)")
    parser.add_argument("--profile", action="store_true",
                        help="after the measured runs, one more kizuna run sampled by py-spy (pip install py-spy)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each run wait up to this many seconds for the machine to idle (default 60)")
    parser.add_argument("--serve-script", type=Path,
                        help="a Python file run as `FILE migrate` / `FILE serve --port P` instead of "
                             "`-m kizuna.bot.cli` (to measure a candidate change without editing the repo)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, ids, profiles)")
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(args.targets) <= {"bare", "kizuna"} or not args.targets:
        parser.error("--targets takes bare and/or kizuna")
    if args.concurrency < 1 or args.duration <= 0 or args.warmup < 0 or args.events_per_request < 1 or args.repeat < 1:
        parser.error("--concurrency, --duration, --events-per-request and --repeat must be positive")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be positive")
    if args.repeat > 20 or args.duration > 600 or (args.requests or 0) > 2_000_000:
        parser.error("bounded on purpose: --repeat <= 20, --duration <= 600, --requests <= 2,000,000")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_bare"]:
        return bare_server(int(argv[1]))
    if argv[:1] == ["_loadgen"]:
        return loadgen(json.loads(argv[1]))
    args = parse_args(argv)
    bench = Bench(args)
    if args.keep:
        print(f"temporary files: {bench.workdir}")
    report = bench.run()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"\nfigures written to {args.json}")
    failed = [c for c in report["checks"] + ([report["sqlite"]["check"]] if "sqlite" in report else []) if not c["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
