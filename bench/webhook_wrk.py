"""Webhook ingest driven by wrk (issue 12): bare aiohttp + HMAC vs `kizuna serve`.

bench/webhook.py's Python load generator needs more CPU per request than the bare
handler it drives, so its bare figure is the generator's ceiling. Here the load comes
from wrk (C, LuaJIT) on a core of its own:

- the server under test is pinned to CPU 0 (`taskset -c 0`), wrk to CPU 1; PostgreSQL
  and Redis are not pinned (they run on whichever core is free, as they would beside a
  real server);
- wrk cannot sign (no HMAC in its Lua), so the bodies are built and signed beforehand by
  `_common.LineWebhookFactory` (kizuna.emulator: text-message events of 1,000 users, a
  fresh webhookEventId each, 1 % redeliveries) into a file; `bench/wrk/webhook.lua`
  gives each wrk thread a disjoint slice and counts requests issued and statuses;
- both targets, in ONE run, get the same body file and the same wrk settings: the
  "bare aiohttp" app of bench/webhook.py and `kizuna serve` in production mode
  (PostgreSQL in a fresh database, Redis with a unique prefix, no worker);
- closed loop (wrk's default: each connection sends its next request on the answer) at
  each `--connections`, then paced (open loop) at `--open-rate` with wrk's `delay()`
  hook: the achieved rate is reported beside the target, and a run whose sends went out
  late (the server did not keep up) is flagged;
- after every kizuna run the database is checked: every stored id was issued, no id is
  stored twice, and at least as many distinct events are stored as were answered 200.

    .venv/bin/python bench/webhook_wrk.py                       # 64 connections, 2,000 req/s, once
    .venv/bin/python bench/webhook_wrk.py --repeat 3 --connections 64,256 --profile --json out.json
    .venv/bin/python bench/webhook_wrk.py --render out.json     # its tables, as in docs/benchmarks.md

Needs wrk and taskset (Debian packages wrk, util-linux), PostgreSQL at 127.0.0.1:5432
(user postgres, trust, database `test`) and Redis at 127.0.0.1:6379. Results:
docs/benchmarks.md, "Webhook ingest with wrk (issue 12)".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import webhook  # noqa: E402  (its Bench starts the two targets; its bare handler is the baseline)

LUA = Path(__file__).resolve().parent / "wrk" / "webhook.lua"
GOAL_RATIO = 0.5
GOAL_P99_MS = 50.0
NOISY_OTHER_PCT = 15.0
# A paced run is "kept up" when it reached this share of the target rate and its sends
# went out at most LATE_MS after their slots for 99 % of requests.
KEPT_UP_SHARE = 0.98
LATE_MS = 5


# --- bodies ----------------------------------------------------------------------------------


class BodyFile:
    """`count` signed webhook bodies, one per line ("signature<TAB>body"), and the event ids
    of each line. A fresh factory per file: redeliveries repeat events of the same file."""

    def __init__(self, path: Path, secret: str, count: int, *, users: int, events_per_request: int,
                 redeliveries: float) -> None:
        factory = common.LineWebhookFactory(secret, users=users, events_per_request=events_per_request,
                                            redeliveries=redeliveries)
        self.path = path
        self.ids: list[list[str]] = []
        started = time.perf_counter()
        with open(path, "wb") as out:
            for _ in range(count):
                body, headers, ids = factory.make()
                out.write(headers["x-line-signature"].encode() + b"\t" + body + b"\n")
                self.ids.append(ids)
        self.seconds = time.perf_counter() - started

    def issued(self, threads: list[dict], nthreads: int) -> list[str]:
        """The event ids of every request wrk issued: thread t sent lines t, t+T, ... in order,
        starting again from its first after its last."""
        out: list[str] = []
        for thread in threads:
            mine = self.ids[thread["tid"]::nthreads]
            for i in range(thread["issued"]):
                out.extend(mine[i % len(mine)])
        return out

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# --- one wrk run -------------------------------------------------------------------------------


class WrkBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # bench/webhook.py's Bench starts the targets (and owns the temporary directory).
        self.base = webhook.Bench(argparse.Namespace(serve_script=args.serve_script, quiet_wait=args.quiet_wait,
                                                     keep=args.keep))
        self.base.server_prefix = ["taskset", "-c", str(args.server_cpu)]
        self.workdir = self.base.workdir
        self.kizuna_issued: set[str] = set()   # every event id issued to kizuna, all runs
        self.checks: list[dict] = []
        self.best_kizuna_rate = 0.0

    def bodies(self, count: int) -> BodyFile:
        a = self.args
        path = self.workdir / f"bodies-{uuid.uuid4().hex[:8]}.txt"
        return BodyFile(path, self.base.secret, count, users=a.users, events_per_request=a.events_per_request,
                        redeliveries=a.redeliveries)

    def closed_body_count(self) -> int:
        # Enough that kizuna never repeats a body (the bare handler may: it stores nothing).
        expected = max(self.args.expect_rate, 1.3 * self.best_kizuna_rate)
        return int(expected * self.args.duration * 1.3) + 1000

    def wrk(self, label: str, server: common.Server, bodies: BodyFile, *, connections: int, duration: float,
            rate: float = 0.0, database: str | None = None, profile: bool = False, quiet: bool = True) -> dict:
        a = self.args
        if quiet and a.quiet_wait > 0:
            busy = common.wait_for_quiet(max_wait=a.quiet_wait)
            if busy >= 0.2:
                print(f"  (machine still busy before {label}: {busy:.2f} cores in use by others)", flush=True)
        env = self.base.base_env() | {"KIZUNA_WRK_BODIES": str(bodies.path), "KIZUNA_WRK_THREADS": str(a.threads)}
        if rate:
            env["KIZUNA_WRK_RATE"] = f"{rate:g}"
        argv = ["taskset", "-c", str(a.wrk_cpu), "wrk", "-t", str(a.threads), "-c", str(connections),
                "-d", f"{duration:g}s", "--timeout", "30s", "-s", str(LUA), f"http://127.0.0.1:{server.port}/callback"]
        watch: dict = {"server": [server.pid], "redis": "comm:redis-server"}
        if self.base.pg_database:
            watch["postgres"] = f"pgdb:{self.base.pg_database}"
        spy = spy_out = None
        if profile:
            spy_out = self.workdir / f"py-spy-{uuid.uuid4().hex[:6]}.txt"
            spy = subprocess.Popen(
                [self.base.py_spy, "record", "--pid", str(server.pid), "--rate", "200", "--duration",
                 str(int(duration) + 2), "--format", "raw", "--output", str(spy_out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
        checkpoints = pg_checkpoints() if database else None
        meter = common.CpuMeter(watch)
        # wrk is a child of this process: its CPU is what the children reaped meanwhile add.
        children_before = children_cpu_seconds()
        meter.start()
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL)
        try:
            stdout, stderr = process.communicate(timeout=duration + 120)
            wrk_cpu = children_cpu_seconds() - children_before
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise RuntimeError(f"wrk did not finish against {label}:\n{stdout}\n{stderr}") from None
        finally:
            if spy is not None:
                try:
                    spy.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
        cpu = meter.stop() | {"wrk_s": wrk_cpu}
        lines = [line for line in stdout.splitlines() if line.startswith("KIZUNA_WRK ")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed against {label} ({process.returncode}):\n{stdout}\n{stderr}\n"
                               f"server log:\n{server.log_tail()}")
        result = summarize(json.loads(lines[-1].removeprefix("KIZUNA_WRK ")), cpu, rate=rate)
        result |= {"target": label, "connections": connections, "threads": a.threads, "bodies": len(bodies.ids)}
        if profile and spy_out is not None:
            result["profile"] = common.summarize_collapsed(spy_out) if spy_out.exists() else {
                "error": (spy.stderr.read().decode(errors="replace") if spy and spy.stderr else "")[-2000:]}
            result["profile_file"] = str(spy_out)
        if checkpoints is not None:
            # A checkpoint (PostgreSQL's, for any database on the server) stalls commits.
            result["pg_checkpoints"] = pg_checkpoints() - checkpoints
        if database is not None:
            time.sleep(1.0)  # requests cut off when wrk stopped may still be committing
            result["check"] = self.check(label, bodies, result)
        return result

    # the invariant --------------------------------------------------------------------------

    def check(self, label: str, bodies: BodyFile, result: dict) -> dict:
        """Against the whole table: every stored id was issued to kizuna, none is stored twice;
        for this run: at least as many of its distinct events are stored as it had answered 200."""
        issued = bodies.issued(result["per_thread"], self.args.threads)
        issued_set = set(issued)
        already = issued_set & self.kizuna_issued  # none unless an earlier run shared a body
        self.kizuna_issued |= issued_set
        stored = [r[0] for r in common.pg_fetch(common.PG_BENCH_DSN.format(name=self.base.pg_database),
                                                "SELECT webhook_event_id FROM inbound_events")]
        stored_set = set(stored)
        ok_requests = result["statuses"].get("200", 0)
        # Each 200'd request's events are distinct except where one repeats another's: at
        # most that many of the 200'd events are repeats.
        repeats = len(issued) - len(issued_set)
        acked_lower_bound = ok_requests * self.args.events_per_request - repeats
        stored_of_run = len(stored_set & issued_set) - len(already & stored_set)
        unexpected_statuses = {s: n for s, n in result["statuses"].items() if s != "200"}
        check = {
            "target": label, "requests_issued": result["issued"], "events_issued": len(issued),
            "distinct_events_issued": len(issued_set), "answered_200": ok_requests,
            "distinct_200_events_at_least": acked_lower_bound, "stored_of_this_run": stored_of_run,
            "rows": len(stored), "distinct_rows": len(stored_set),
            "stored_never_issued": len(stored_set - self.kizuna_issued), "duplicates": len(stored) - len(stored_set),
            "unexpected_statuses": unexpected_statuses, "socket_errors": result["socket_errors"],
        }
        check["ok"] = (not check["stored_never_issued"] and not check["duplicates"]
                       and stored_of_run >= acked_lower_bound and stored_of_run <= len(issued_set)
                       and not unexpected_statuses and not result["socket_errors"])
        self.checks.append(check)
        verdict = "OK" if check["ok"] else "FAILED"
        print(f"  invariant: {len(issued_set)} distinct events issued ({repeats} repeats), {ok_requests} answered 200 "
              f"(>= {acked_lower_bound} distinct events), {stored_of_run} of them stored; table: {len(stored)} rows, "
              f"{check['duplicates']} duplicates, {check['stored_never_issued']} never issued"
              + (f"; unexpected statuses {unexpected_statuses}" if unexpected_statuses else "") + f": {verdict}",
              flush=True)
        return check

    def pair(self, title: str, servers: dict, order: list[str], body_count, *, connections: int,
             rate: float = 0.0) -> dict:
        """One run of each target on the same bodies. Done again (up to --retry-noisy times) when
        other jobs used more than NOISY_OTHER_PCT of a core during either run."""
        a = self.args
        for attempt in range(a.retry_noisy + 1):
            bodies = self.bodies(body_count())
            print(f"\n{title} ({len(bodies.ids)} bodies, built in {bodies.seconds:.1f} s)"
                  + (f", attempt {attempt + 1}" if attempt else ""), flush=True)
            results = {}
            for label in order:
                results[label] = self.wrk(label, servers[label], bodies, connections=connections, duration=a.duration,
                                          rate=rate, database="postgres" if "kizuna" in label else None)
                print_run(results[label])
                if "kizuna" in label and not rate:
                    self.best_kizuna_rate = max(self.best_kizuna_rate, results[label]["req_per_s"])
            bodies.remove()
            if not rate:
                print_ratio(results)
            noisy = [label for label, r in results.items() if r["other_pct"] > NOISY_OTHER_PCT]
            for r in results.values():
                r["attempt"] = attempt + 1
            if not noisy:
                break
            print(f"  other jobs used CPU during {', '.join(noisy)}"
                  + (": measuring again" if attempt < a.retry_noisy else ": kept, flagged"), flush=True)
        return results

    # the whole run ----------------------------------------------------------------------------

    def run(self) -> dict:
        a = self.args
        info = common.machine_info()
        print(f"machine: {common.describe_machine(info)}")
        print(f"wrk {a.threads} thread(s) on CPU {a.wrk_cpu}, servers on CPU {a.server_cpu} (PostgreSQL, Redis unpinned); "
              f"closed loop at {', '.join(map(str, a.connections))} connections for {a.duration:g} s"
              + (f"; paced {a.open_rate:g} req/s over {a.open_connections} connections for {a.duration:g} s"
                 if a.open_rate else "")
              + f"; {a.events_per_request} event(s)/request, {a.users} users, {a.redeliveries:.0%} redeliveries", flush=True)
        report: dict = {"machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]),
                        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
                        "reps": [], "checks": self.checks}
        with contextlib.ExitStack() as stack:
            if not a.keep:
                stack.callback(shutil.rmtree, self.workdir, True)
            servers: dict[str, common.Server] = {}
            if "bare" in a.targets:
                servers["bare aiohttp"] = self.base.start_bare(stack)
            if "kizuna" in a.targets:
                database = self.base.pg_database = stack.enter_context(common.fresh_postgres_database())
                prefix = f"kizuna-bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                stack.callback(common.redis_delete_prefix, common.REDIS_URL, prefix)
                env = self.base.kizuna_env(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}", prefix)
                servers["kizuna serve"] = self.base.start_kizuna(stack, "kizuna", env)
                print(f"database {database}, redis prefix {prefix}", flush=True)
            labels = list(servers)
            pins = {label: cpu_affinity(server.pid) for label, server in servers.items()}
            print(f"server CPU affinity: {pins}", flush=True)
            # Warm-up: connections, caches, the first statements.
            warm = self.bodies(int(a.expect_rate * a.warmup) + 1000)
            for label in labels:
                self.wrk(label, servers[label], warm, connections=a.connections[0], duration=a.warmup,
                         database="postgres" if "kizuna" in label else None, quiet=False)
            warm.remove()
            for rep in range(a.repeat):
                order = labels if rep % 2 == 0 else labels[::-1]
                runs: dict = {"closed": {}, "open": {}}
                for connections in a.connections:
                    runs["closed"][str(connections)] = self.pair(
                        f"[run {rep + 1}/{a.repeat}] closed loop, {connections} connections", servers, order,
                        self.closed_body_count, connections=connections)
                if a.open_rate:
                    runs["open"] = self.pair(
                        f"[run {rep + 1}/{a.repeat}] paced {a.open_rate:g} req/s, {a.open_connections} connections",
                        servers, order, lambda: int(a.open_rate * a.duration * 1.2) + 1000,
                        connections=a.open_connections, rate=a.open_rate)
                report["reps"].append(runs)
            if a.profile and "kizuna serve" in servers:
                bodies = self.bodies(self.closed_body_count())
                print(f"\nprofile: kizuna serve under the closed loop, {a.connections[0]} connections, py-spy at 200 Hz")
                profiled = self.wrk("kizuna serve", servers["kizuna serve"], bodies, connections=a.connections[0],
                                    duration=a.duration, database="postgres", profile=True)
                bodies.remove()
                print_run(profiled)
                report["profile"] = profiled
                print_profile(profiled)
                if a.open_rate:
                    bodies = self.bodies(int(a.open_rate * a.duration * 1.2) + 1000)
                    print(f"\nprofile: kizuna serve paced at {a.open_rate:g} req/s, py-spy at 200 Hz")
                    profiled = self.wrk("kizuna serve", servers["kizuna serve"], bodies, connections=a.open_connections,
                                        duration=a.duration, rate=a.open_rate, database="postgres", profile=True)
                    bodies.remove()
                    print_run(profiled)
                    report["profile_paced"] = profiled
                    print_profile(profiled)
            for server in servers.values():
                server.stop()
        print_medians(report)
        return report


def pg_checkpoints() -> int:
    rows = common.pg_fetch(common.PG_ADMIN_DSN, "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
    return int(rows[0][0])


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_affinity(pid: int) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return "?"


def summarize(raw: dict, cpu: dict, *, rate: float) -> dict:
    """wrk's figures, the script's per-thread counts and the CPU used, in one dict."""
    seconds = raw["duration_us"] / 1e6
    statuses: dict[str, int] = {}
    lag: dict[int, int] = {}
    for thread in raw["threads"]:
        for status, n in thread["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
        for ms, n in thread["lag_ms"].items():
            lag[int(ms)] = lag.get(int(ms), 0) + n
    pct = raw["latency_us"]["percentiles"]
    errors = raw["errors"]
    out = {
        "seconds": seconds, "requests": raw["requests"], "req_per_s": raw["requests"] / seconds if seconds else 0.0,
        "issued": sum(t["issued"] for t in raw["threads"]), "wrapped": sum(t["wrapped"] for t in raw["threads"]),
        "statuses": statuses, "socket_errors": {k: v for k, v in errors.items() if k != "status" and v},
        "p50_ms": pct["50"] / 1000, "p90_ms": pct["90"] / 1000, "p99_ms": pct["99"] / 1000,
        "p999_ms": pct["99.9"] / 1000, "max_ms": raw["latency_us"]["max"] / 1000, "per_thread": raw["threads"],
        "cpu": cpu,
    }
    n = out["requests"] or 1
    wall = cpu.get("wall_s") or 1.0
    out["cpu_pct"] = {k: 100 * cpu.get(f"{k}_s", 0.0) / seconds for k in ("server", "wrk", "postgres", "redis")}
    out["cpu_us_per_req"] = {k: 1e6 * cpu.get(f"{k}_s", 0.0) / n for k in ("server", "wrk", "postgres", "redis")}
    out["other_pct"] = 100 * (cpu.get("machine_busy_s", 0.0) - sum(cpu.get(f"{k}_s", 0.0) for k in
                                                                    ("server", "wrk", "postgres", "redis", "self"))) / wall
    if rate:
        late = sorted(lag.items())
        total = sum(lag.values())
        p99_late = None
        seen = 0
        for ms, count in late:
            seen += count
            if seen >= 0.99 * total:
                p99_late = ms
                break
        out["target_rate"] = rate
        out["late_p99_ms"] = p99_late
        out["late_max_ms"] = late[-1][0] if late else None
        out["kept_up"] = out["req_per_s"] >= KEPT_UP_SHARE * rate and (p99_late or 0) <= LATE_MS
    return out


# --- printing --------------------------------------------------------------------------------


def print_run(r: dict) -> None:
    statuses = ", ".join(f"{s}: {n}" for s, n in sorted(r["statuses"].items()))
    line = (f"  {r['target']:<14} {r['req_per_s']:>8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
            f"max {r['max_ms']:7.1f} ms  [{statuses}]")
    if r.get("target_rate"):
        line += (f"  target {r['target_rate']:g}: achieved {r['req_per_s']:.0f}, sends late p99 {r['late_p99_ms']} ms / "
                 f"max {r['late_max_ms']} ms" + ("" if r["kept_up"] else "  <- DID NOT KEEP UP (coordinated omission: "
                                                  "latency understated)"))
    print(line)
    pct, us = r["cpu_pct"], r["cpu_us_per_req"]
    print(f"  {'':<14} cpu % of a core: server {pct['server']:.0f}, wrk {pct['wrk']:.0f}, postgres {pct['postgres']:.0f}, "
          f"redis {pct['redis']:.0f}, other {r['other_pct']:.0f}; us/req: server {us['server']:.0f}, "
          f"postgres {us['postgres']:.0f}, wrk {us['wrk']:.0f}"
          + ("  <- other jobs used CPU meanwhile" if r["other_pct"] > NOISY_OTHER_PCT else "")
          + (f"; {r['wrapped']} requests repeated a body" if r["wrapped"] and "kizuna" in r["target"] else "")
          + (f"; socket errors {r['socket_errors']}" if r["socket_errors"] else "")
          + (f"; PostgreSQL checkpoints meanwhile: {r['pg_checkpoints']}" if r.get("pg_checkpoints") else ""), flush=True)


def print_ratio(results: dict) -> None:
    bare, kizuna = results.get("bare aiohttp"), results.get("kizuna serve")
    if bare and kizuna and bare["req_per_s"]:
        ratio = kizuna["req_per_s"] / bare["req_per_s"]
        print(f"  ratio kizuna/bare {ratio:.3f} (goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'missed'})",
              flush=True)


def print_profile(run: dict) -> None:
    profile = run.get("profile", {})
    if "error" in profile:
        print(f"py-spy failed: {profile['error']}")
        return
    print(f"{profile['samples']} samples (busy time only), raw stacks in {run['profile_file']}. Where the time goes:")
    for name, share in profile["buckets"]:
        print(f"  {share:5.1f}%  {name}")
    print("Self time by library:")
    for name, share in profile["library_self"][:12]:
        print(f"  {share:5.1f}%  {name}")
    print("Inclusive time, top functions:")
    for name, share in profile["inclusive"][:40]:
        print(f"  {share:5.1f}%  {name}")
    print("Self time, top functions:")
    for name, share in profile["self"][:25]:
        print(f"  {share:5.1f}%  {name}")
    sys.stdout.flush()


def _spread(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}..{max(values):.{digits}f})"


def print_medians(report: dict) -> None:
    reps = report["reps"]
    if not reps:
        return
    print(f"\n== over {len(reps)} run(s): median (min..max)")
    keys = list(reps[0]["closed"])
    for connections in keys:
        print(f"closed loop, {connections} connections:")
        results = [rep["closed"][connections] for rep in reps]
        for label in results[0]:
            print(f"  {label:<14} req/s {_spread([r[label]['req_per_s'] for r in results], 0)}  "
                  f"p50 {_spread([r[label]['p50_ms'] for r in results], 2)} ms  "
                  f"p99 {_spread([r[label]['p99_ms'] for r in results], 2)} ms  "
                  f"server us/req {_spread([r[label]['cpu_us_per_req']['server'] for r in results], 0)}")
        if len(results[0]) == 2:
            ratios = [r["kizuna serve"]["req_per_s"] / r["bare aiohttp"]["req_per_s"] for r in results]
            print(f"  ratio kizuna/bare {_spread(ratios, 3)}")
    opened = [rep["open"] for rep in reps if rep["open"]]
    if opened:
        print(f"paced {opened[0][next(iter(opened[0]))]['target_rate']:g} req/s:")
        for label in opened[0]:
            print(f"  {label:<14} achieved {_spread([r[label]['req_per_s'] for r in opened], 0)}  "
                  f"p50 {_spread([r[label]['p50_ms'] for r in opened], 2)} ms  "
                  f"p99 {_spread([r[label]['p99_ms'] for r in opened], 2)} ms  "
                  f"late p99 {_spread([r[label]['late_p99_ms'] or 0 for r in opened], 0)} ms  "
                  f"kept up {sum(r[label]['kept_up'] for r in opened)}/{len(opened)}")
    failed = [c for c in report["checks"] if not c["ok"]]
    print(f"invariant: {len(report['checks']) - len(failed)}/{len(report['checks'])} kizuna runs OK")
    sys.stdout.flush()


def markdown(report: dict) -> str:
    """The figures of a report as the tables of docs/benchmarks.md (one row per run)."""
    out = []
    for connections in report["reps"][0]["closed"] if report["reps"] else []:
        out += [f"Closed loop, {connections} connections:", "",
                "| run | bare req/s | kizuna req/s | ratio | bare p50 / p99 ms | kizuna p50 / p99 ms "
                "| server µs/req bare / kizuna | other jobs, % of a core |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for i, rep in enumerate(report["reps"], 1):
            bare, kizuna = rep["closed"][connections].get("bare aiohttp"), rep["closed"][connections].get("kizuna serve")
            if not (bare and kizuna):
                continue
            out.append(
                f"| {i} | {bare['req_per_s']:,.0f} | {kizuna['req_per_s']:,.0f} | {kizuna['req_per_s'] / bare['req_per_s']:.2f} "
                f"| {bare['p50_ms']:.1f} / {bare['p99_ms']:.1f} | {kizuna['p50_ms']:.1f} / {kizuna['p99_ms']:.1f} "
                f"| {bare['cpu_us_per_req']['server']:.0f} / {kizuna['cpu_us_per_req']['server']:.0f} "
                f"| {bare['other_pct']:.0f} / {kizuna['other_pct']:.0f} |")
        out.append("")
    opened = [rep["open"] for rep in report["reps"] if rep.get("open")]
    if opened:
        rate = next(iter(opened[0].values()))["target_rate"]
        out += [f"Paced, {rate:,.0f} req/s:", "",
                "| run | target | achieved req/s | p50 ms | p99 ms | sends late p99 / max ms | kept up "
                "| server µs/req | other jobs, % of a core |",
                "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
        for i, rep in enumerate(opened, 1):
            for label, r in rep.items():
                out.append(
                    f"| {i} | {label} | {r['req_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
                    f"| {r['late_p99_ms']} / {r['late_max_ms']} | {'yes' if r['kept_up'] else '**no**'} "
                    f"| {r['cpu_us_per_req']['server']:.0f} | {r['other_pct']:.0f} |")
        out.append("")
    return "\n".join(out)


# --- entry point -------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", default="64", help="closed loop: comma-separated connection counts (default 64)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of one warm-up run per target (default 3)")
    parser.add_argument("--open-rate", type=float, default=2000.0,
                        help="paced run: requests/s over all connections (default 2000; 0 skips it)")
    parser.add_argument("--open-connections", type=int, default=256,
                        help="paced run: connections (default 256: enough that a stall of ~100 ms does not hold sends back)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads, each with its own slice (default 1)")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument("--expect-rate", type=float, default=15000.0,
                        help="req/s to size body files for before kizuna's rate is known (default 15000)")
    parser.add_argument("--events-per-request", type=int, default=1, help="events in each body (default 1)")
    parser.add_argument("--users", type=int, default=1000, help="distinct LINE users (default 1000)")
    parser.add_argument("--redeliveries", type=float, default=0.01, help="share of redelivered events (default 0.01)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each configuration (default 1)")
    parser.add_argument("--targets", default="bare,kizuna", help="comma-separated: bare,kizuna (default both)")
    parser.add_argument("--profile", action="store_true",
                        help="one more kizuna closed-loop run (and paced run) sampled by py-spy (pip install py-spy into the venv)")
    parser.add_argument("--retry-noisy", type=int, default=2,
                        help="measure a configuration again when other jobs used CPU meanwhile, up to this many "
                             "times (default 2)")
    parser.add_argument("--quiet-wait", type=float, default=60.0,
                        help="before each run wait up to this many seconds for the machine to idle (default 60)")
    parser.add_argument("--serve-script", type=Path, help="as in bench/webhook.py: run FILE instead of -m kizuna.bot.cli")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, profiles)")
    args = parser.parse_args(argv)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not set(args.targets) <= {"bare", "kizuna"} or not args.targets:
        parser.error("--targets takes bare and/or kizuna")
    if not args.connections or min(args.connections) < args.threads or args.open_connections < args.threads:
        parser.error("each connection count must be at least --threads")
    if args.repeat < 1 or args.repeat > 20 or not 0 < args.duration <= 600 or args.threads < 1:
        parser.error("bounded on purpose: 1 <= --repeat <= 20, 0 < --duration <= 600, --threads >= 1")
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install {'wrk' if tool == 'wrk' else 'util-linux'})")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--render"]:  # the tables of saved reports (--json), for docs/benchmarks.md
        for path in argv[1:]:
            print(f"{path}:\n\n{markdown(json.loads(Path(path).read_text()))}")
        return 0
    args = parse_args(argv)
    # A background job ignores SIGINT: let SIGTERM stop the servers and drop the database too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = WrkBench(args)
    if args.keep:
        print(f"temporary files: {bench.workdir}")
    report = bench.run()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"figures written to {args.json}")
    return 0 if all(c["ok"] for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
