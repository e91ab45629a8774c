"""Shared helpers for the benchmarks in bench/ (not part of the kizuna package).

- the machine a figure was measured on (`machine_info`);
- CPU accounting of processes from /proc (`CpuMeter`), since psutil is not a dependency;
- a server subprocess that is waited for on a health URL and always stopped (`Server`);
- a fresh PostgreSQL database created and dropped around a run (`fresh_postgres_database`);
- Redis key clean-up by prefix (`redis_delete_prefix`);
- signed LINE webhook bodies built with the emulator's public interface (`LineWebhookFactory`);
- an HTTP load generator, closed loop (fixed concurrency) or open loop (paced rate), that
  measures client-side latency per request (`closed_loop`, `open_loop`);
- percentiles and a py-spy "raw" (collapsed stacks) summary (`summarize_collapsed`).

Everything here is bounded in time and count, and talks to loopback only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_BENCH_DSN = "postgresql://postgres@127.0.0.1:5432/{name}"
REDIS_URL = "redis://127.0.0.1:6379/0"


# --- the machine -----------------------------------------------------------------------------


def machine_info() -> dict:
    model = "unknown"
    mhz = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and mhz is None:
                mhz = float(line.split(":", 1)[1])
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "cpu_mhz": mhz,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def describe_machine(info: dict) -> str:
    mhz = f" @ {info['cpu_mhz']:.0f} MHz" if info.get("cpu_mhz") else ""
    return (
        f"{info['date_utc']}; {info['nproc']} CPU ({info['cpu_model']}{mhz}), {info['ram_gib']} GiB RAM, "
        f"Linux {info['kernel']}, Python {info['python']}"
    )


# --- CPU accounting from /proc ---------------------------------------------------------------


def proc_cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """utime + stime of one process (its threads included), or None if it is gone; with
    `reaped_children`, the CPU of its children that exited and were waited for instead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    first = 13 if reaped_children else 11
    return (int(fields[first]) + int(fields[first + 1])) / CLK_TCK


def pids_by_comm(name: str) -> list[int]:
    """Processes whose /proc/<pid>/comm is `name` (comm is cut to 15 characters)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
        except OSError:
            continue
        if comm == name[:15]:
            pids.append(int(entry.name))
    return pids


# PostgreSQL's shared helpers write the WAL and pages for every database, ours included.
PG_SHARED_PROCESSES = ("walwriter", "checkpointer", "background writer", "autovacuum", "logical replication")


def postgres_pids_for(database: str) -> list[int]:
    """PostgreSQL backends connected to `database` (their process title names it), plus the
    server's shared helpers; not the backends of other databases (other users' tests).

    A backend that exits during the measurement (a pool closing an overflow connection)
    takes its CPU time with it: that time shows as "other". (The postmaster's reaped-children
    time would hold it, but also every other database's, so it is not used.)"""
    pids = []
    for pid in pids_by_comm("postgres"):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f" {database} " in f" {title} " or any(helper in title for helper in PG_SHARED_PROCESSES):
            pids.append(pid)
    return pids


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def wait_for_quiet(max_busy_cores: float = 0.2, max_wait: float = 60.0, sample: float = 1.0) -> float:
    """Wait (at most `max_wait` s) until the machine used less than `max_busy_cores` cores
    over a `sample`-second interval; returns the last figure. Other jobs on a shared
    machine otherwise steal CPU from whichever target happens to run beside them."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, _ = machine_cpu_seconds()
        time.sleep(sample)
        busy = (machine_cpu_seconds()[0] - busy0) / sample
        if busy < max_busy_cores or time.monotonic() >= deadline:
            return busy


class CpuMeter:
    """CPU seconds used between `start()` and `stop()` by groups of processes.

    `watch` maps a label to either a list of pids or "comm:NAME" (all processes of that
    name, looked up at each snapshot, so PostgreSQL backends started in between count).
    "self" is this process (resource.getrusage) and "machine" all cores from /proc/stat.
    """

    def __init__(self, watch: dict[str, list[int] | str]) -> None:
        self.watch = watch
        self._start: dict | None = None

    def _pids(self, spec: list[int] | str) -> list[int]:
        if isinstance(spec, str) and spec.startswith("comm:"):
            return pids_by_comm(spec.removeprefix("comm:"))
        if isinstance(spec, str) and spec.startswith("pgdb:"):
            return postgres_pids_for(spec.removeprefix("pgdb:"))
        return list(spec)

    def _snapshot(self) -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        groups = {}
        for label, spec in self.watch.items():
            groups[label] = {pid: proc_cpu_seconds(pid) for pid in self._pids(spec)}
        return {
            "t": time.perf_counter(),
            "self": usage.ru_utime + usage.ru_stime,
            "machine": machine_cpu_seconds(),
            "groups": groups,
        }

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self) -> dict:
        """{"wall_s", "self_s", "machine_busy_s", "machine_total_s", "<label>_s"...}."""
        assert self._start is not None, "start() first"
        end, start = self._snapshot(), self._start
        out = {
            "wall_s": end["t"] - start["t"],
            "self_s": end["self"] - start["self"],
            "machine_busy_s": end["machine"][0] - start["machine"][0],
            "machine_total_s": end["machine"][1] - start["machine"][1],
        }
        for label, pids in end["groups"].items():
            before = start["groups"].get(label, {})
            used = 0.0
            for pid, seconds in pids.items():
                if seconds is not None:
                    used += seconds - (before.get(pid) or 0.0)
            out[f"{label}_s"] = used
        return out


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A server subprocess: started, waited for on `health_url`, always stopped.

    Output goes to `log_path`; its tail is shown if the server does not come up.
    """

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], port: int, log_path: Path,
                 health_path: str = "/healthz", cwd: Path | None = None, ready_text: str | None = None) -> None:
        self.name, self.argv, self.env, self.port, self.log_path = name, argv, env, port, log_path
        self.health_url = f"http://127.0.0.1:{port}{health_path}"
        self.cwd = cwd
        # A process without an HTTP port (`kizuna worker`) is ready when its log shows this.
        self.ready_text = ready_text
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60.0) -> "Server":
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        try:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.cwd)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.ready_text is not None:
                if self.ready_text in self.log_tail(1000):
                    return self
                time.sleep(0.1)
                continue
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        waited_for = repr(self.ready_text) if self.ready_text is not None else self.health_url
        raise RuntimeError(f"{self.name} not ready ({waited_for}) after {timeout:g} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT (aiohttp's graceful shutdown), then SIGTERM, then SIGKILL; only our own pid."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                return process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        return process.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_checked(argv: list[str], *, env: dict[str, str], timeout: float, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


# --- PostgreSQL and Redis --------------------------------------------------------------------


def _pg(dsn: str, sql: str, *, fetch: bool = False):
    import asyncpg

    async def go():
        connection = await asyncpg.connect(dsn, timeout=10)
        try:
            return await connection.fetch(sql, timeout=120) if fetch else await connection.execute(sql, timeout=120)
        finally:
            await connection.close()

    return asyncio.run(go())


def pg_fetch(dsn: str, sql: str) -> list:
    return _pg(dsn, sql, fetch=True)


@contextlib.contextmanager
def fresh_postgres_database(prefix: str = "kizuna_bench", admin_dsn: str = PG_ADMIN_DSN) -> Iterator[str]:
    """Create an empty database on the server of `admin_dsn` (its name is yielded) and drop
    it afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _pg(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _pg(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_delete_prefix(url: str, prefix: str, limit: int = 100_000) -> int:
    """Delete the keys `prefix:*` (at most `limit`); returns how many."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = []
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            keys.append(key)
            if len(keys) >= limit:
                break
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


# --- LINE webhook bodies ---------------------------------------------------------------------

TEXTS = (
    "こんにちは", "予約したいです", "今日は何時まで営業していますか？", "クーポンはありますか",
    "駐車場はありますか？", "ありがとうございました！", "明日の15時に2名で予約できますか", "メニューを見たいです",
    "ポイントカードを作りたい", "キャンセルをお願いします", "Hello, are you open on Sunday?", "了解です👍",
)


def bench_user_ids(count: int) -> list[str]:
    """`count` LINE-shaped user ids ('U' + 32 hex), the same in every run."""
    return ["U" + hashlib.md5(f"kizuna-bench-user-{i}".encode()).hexdigest() for i in range(count)]


class LineWebhookFactory:
    """Signed webhook bodies as LINE sends them: text-message events of one of `users`
    users, each with a fresh ULID webhookEventId, built by `kizuna.emulator.Emulator`.

    A fraction `redeliveries` of events are redeliveries of an event sent before (same
    webhookEventId, deliveryContext.isRedelivery true), as LINE sends after a failed or
    slow delivery: the bot must store each distinct event once.
    """

    USER_AGENT = "LineBotWebhook/2.0"

    def __init__(self, channel_secret: str, *, users: int = 1000, events_per_request: int = 1,
                 redeliveries: float = 0.0, seed: int | None = None) -> None:
        from kizuna.emulator import Emulator

        self.emulator = Emulator(channel_secret=channel_secret, access_token="bench-access-token")
        self.destination = "U" + hashlib.md5(b"kizuna-bench-bot").hexdigest()
        self.users = bench_user_ids(users)
        self.events_per_request = events_per_request
        self.redeliveries = redeliveries
        self.rng = random.Random(seed)
        self.recent: collections.deque[dict] = collections.deque(maxlen=2000)

    def make(self, *, user: str | None = None, text: str | None = None) -> tuple[bytes, dict[str, str], list[str]]:
        """(body, headers, webhookEventIds in the body). `user` and `text`, when given, are
        those of every new event (else one of `users` and of TEXTS at random)."""
        events = []
        rng = self.rng
        for _ in range(self.events_per_request):
            if self.recent and rng.random() < self.redeliveries:
                again = dict(rng.choice(self.recent))
                again["deliveryContext"] = {"isRedelivery": True}
                events.append(again)
            else:
                events.append(self.emulator.make_event("text", user or rng.choice(self.users),
                                                       text=text or rng.choice(TEXTS)))
        # Only events of earlier requests are redelivered.
        self.recent.extend(e for e in events if not e["deliveryContext"]["isRedelivery"])
        body = json.dumps({"destination": self.destination, "events": events},
                          ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self.USER_AGENT,
            "x-line-signature": self.emulator.sign(body),
        }
        return body, headers, [e["webhookEventId"] for e in events]


# --- the load generator ----------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


@dataclass
class LoadStats:
    mode: str
    concurrency: int
    target_rate: float | None
    window_s: float = 0.0
    requests: int = 0          # answered inside the measurement window (any status)
    events: int = 0            # events in those requests
    errors: int = 0            # of those, not answered 200; open loop: plus requests dropped
    latencies_ms: list[float] = field(default_factory=list)
    per_second: collections.Counter = field(default_factory=collections.Counter)
    total_requests: int = 0    # every request sent, warm-up and tail included
    total_errors: int = 0
    error_samples: collections.Counter = field(default_factory=collections.Counter)
    sent_ids: list[str] = field(default_factory=list)    # every webhookEventId sent
    acked_ids: list[str] = field(default_factory=list)   # those in requests answered 200
    cpu: dict = field(default_factory=dict)
    sched_lag_ms: list[float] = field(default_factory=list)
    make_s: float = 0.0        # generator time spent building and signing bodies

    def record_error(self, what: str) -> None:
        self.total_errors += 1
        if len(self.error_samples) < 20 or what in self.error_samples:
            self.error_samples[what] += 1

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)
        seconds = sorted(self.per_second.values())
        return {
            "mode": self.mode, "concurrency": self.concurrency, "target_rate": self.target_rate,
            "window_s": round(self.window_s, 3),
            "requests": self.requests, "events": self.events, "errors": self.errors,
            "req_per_s": self.requests / self.window_s if self.window_s else 0.0,
            "events_per_s": self.events / self.window_s if self.window_s else 0.0,
            "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
            "p999_ms": percentile(lat, 99.9), "max_ms": lat[-1] if lat else None,
            "mean_ms": sum(lat) / len(lat) if lat else None,
            "per_second_min": seconds[0] if seconds else None, "per_second_max": seconds[-1] if seconds else None,
            "total_requests": self.total_requests, "total_errors": self.total_errors,
            "error_samples": dict(self.error_samples.most_common(10)),
            "sent_events": len(self.sent_ids), "distinct_sent_events": len(set(self.sent_ids)),
            "acked_events": len(self.acked_ids),
            "sched_lag_p99_ms": percentile(sorted(self.sched_lag_ms), 99) if self.sched_lag_ms else None,
            "generator_make_us_per_req": self.make_s / self.total_requests * 1e6 if self.total_requests else None,
            "cpu": self.cpu,
        }


def _client_session(concurrency: int):
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=None)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                 timeout=aiohttp.ClientTimeout(total=30))


async def _post(session, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str | None]:
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            return response.status, None if response.status == 200 else f"HTTP {response.status}"
    except Exception as exc:  # the load goes on; errors are counted and sampled
        return 0, f"{type(exc).__name__}: {exc}"[:200]


async def closed_loop(url: str, make: Callable[[], tuple[bytes, dict, list[str]]], *, concurrency: int,
                      warmup: float, duration: float | None, count: int | None, watch: dict,
                      max_seconds: float = 300.0) -> LoadStats:
    """`concurrency` connections, each sending its next request as soon as the previous is
    answered. Measures for `duration` seconds after `warmup`, or (with `count`) until `count`
    requests started after the warm-up are answered. Latency is send-to-200, per request."""
    stats = LoadStats("closed", concurrency, None)
    meter = CpuMeter(watch)
    loop_start = time.perf_counter()
    window_start = loop_start + warmup
    window_end = window_start + duration if count is None else None
    hard_stop = loop_start + warmup + (duration if count is None else max_seconds)
    measured_started = 0
    last_measured_end = window_start

    async def meter_start() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        meter.start()

    async def worker(session) -> None:
        nonlocal measured_started, last_measured_end
        while True:
            now = time.perf_counter()
            if now >= hard_stop:
                return
            measured = False
            if count is not None and now >= window_start:
                if measured_started >= count:
                    return
                measured_started += 1
                measured = True
            m0 = time.perf_counter()
            body, headers, ids = make()
            t0 = time.perf_counter()
            stats.make_s += t0 - m0
            status, error = await _post(session, url, body, headers)
            t1 = time.perf_counter()
            stats.total_requests += 1
            stats.sent_ids.extend(ids)
            if status == 200:
                stats.acked_ids.extend(ids)
            else:
                stats.record_error(error or "?")
            if count is None:
                measured = window_start <= t1 <= window_end
            else:
                last_measured_end = max(last_measured_end, t1) if measured else last_measured_end
            if measured:
                stats.requests += 1
                stats.events += len(ids)
                stats.latencies_ms.append((t1 - t0) * 1000)
                stats.per_second[int(t1 - window_start)] += 1
                if status != 200:
                    stats.errors += 1

    async with _client_session(concurrency) as session:
        starter = asyncio.create_task(meter_start())
        await asyncio.wait_for(asyncio.gather(*(worker(session) for _ in range(concurrency))),
                               timeout=warmup + (duration or max_seconds) + 60)
        await starter
        stats.cpu = meter.stop()
    stats.window_s = duration if count is None else last_measured_end - window_start
    return stats


async def open_loop(url: str, make: Callable[[], tuple[bytes, dict, list[str]]], *, rate: float,
                    warmup: float, duration: float, watch: dict, max_in_flight: int = 512) -> LoadStats:
    """Requests at a fixed `rate` whatever the answers (LINE's traffic does not wait for
    the bot). Latency counts from the scheduled send time, so time spent waiting in the
    client (for a free connection, or a late scheduler) is included."""
    stats = LoadStats("open", max_in_flight, rate)
    meter = CpuMeter(watch)
    total = int(rate * (warmup + duration))
    in_flight: set[asyncio.Task] = set()
    start = time.perf_counter() + 0.05
    window_start, window_end = start + warmup, start + warmup + duration

    async def one(session, scheduled: float, body: bytes, headers: dict, ids: list[str]) -> None:
        status, error = await _post(session, url, body, headers)
        t1 = time.perf_counter()
        stats.total_requests += 1
        stats.sent_ids.extend(ids)
        if status == 200:
            stats.acked_ids.extend(ids)
        else:
            stats.record_error(error or "?")
        if window_start <= scheduled < window_end:
            stats.requests += 1
            stats.events += len(ids)
            stats.latencies_ms.append((t1 - scheduled) * 1000)
            stats.per_second[int(scheduled - window_start)] += 1
            if status != 200:
                stats.errors += 1

    metered = False
    async with _client_session(max_in_flight) as session:
        for i in range(total):
            scheduled = start + i / rate
            if not metered and scheduled >= window_start:
                meter.start()
                metered = True
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = time.perf_counter() - scheduled
            if window_start <= scheduled < window_end:
                stats.sched_lag_ms.append(lag * 1000)
            if len(in_flight) >= max_in_flight:
                # The target is that far behind: the request is dropped (an error, never a completion).
                stats.record_error("generator: too many requests in flight, not sent")
                if window_start <= scheduled < window_end:
                    stats.errors += 1
                continue
            m0 = time.perf_counter()
            body, headers, ids = make()
            stats.make_s += time.perf_counter() - m0
            task = asyncio.create_task(one(session, scheduled, body, headers, ids))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        cpu_end_wait = max(0.0, window_end - time.perf_counter())
        await asyncio.sleep(cpu_end_wait)
        stats.cpu = meter.stop() if metered else {}
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)
    stats.window_s = duration
    return stats


# --- py-spy output ---------------------------------------------------------------------------

_LINE_NO = re.compile(r":\d+\)$")


def summarize_collapsed(path: Path, top: int = 25) -> dict:
    """Inclusive and self sample shares per function (line numbers dropped) and per library
    from py-spy's `--format raw` output (one `frame;frame;... count` per line)."""
    inclusive: collections.Counter = collections.Counter()
    self_time: collections.Counter = collections.Counter()
    library: collections.Counter = collections.Counter()
    buckets: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_LINE_NO.sub(")", f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        self_time[frames[-1]] += n
        library[_library_of(frames[-1])] += n
        buckets[_bucket_of(frames)] += n

    def share(counter):
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "inclusive": share(inclusive), "self": share(self_time), "library_self": share(library),
            "buckets": [(name, round(100 * n / total, 1)) for name, n in buckets.most_common()] if total else []}


def _io(frames: list[str]) -> bool:
    return "(asyncio/selector_events.py" in frames[-1] or "(selectors.py" in frames[-1] or "(socket.py" in frames[-1]


# Where a sample's time goes, first match wins. Stacks run inside SQLAlchemy's greenlets have
# no event-loop root in py-spy's view, so buckets look at the frames, not at the root.
BUCKETS: tuple[tuple[str, Callable[[list[str]], bool]], ...] = (
    ("socket syscalls: PostgreSQL connection", lambda f: _io(f) and any("(asyncpg/" in x for x in f)),
    ("socket syscalls: Redis connection", lambda f: _io(f) and any("(redis/" in x for x in f)),
    ("socket syscalls: HTTP and other", _io),
    ("SQLAlchemy: compiling the statement", lambda f: any("(sqlalchemy/sql/compiler.py" in x for x in f)),
    ("asyncpg (protocol, prepared statements)", lambda f: "(asyncpg/" in f[-1]),
    ("SQLAlchemy: session, transaction, pool, execute, result", lambda f: any("(sqlalchemy/" in x for x in f)),
    ("redis-py (queue XADD pipeline)", lambda f: any("(redis/" in x for x in f)),
    ("JSON decode/encode", lambda f: "(json/" in f[-1]),
    ("kizuna code (webhook, event_row, middleware)", lambda f: "(kizuna/" in f[-1]),
    ("aiohttp (HTTP parsing, routing, response)", lambda f: any("(aiohttp/" in x for x in f)),
    ("event loop, other", lambda f: True),
)


def _bucket_of(frames: list[str]) -> str:
    for name, matches in BUCKETS:
        if matches(frames):
            return name
    return "event loop, other"


def _library_of(frame: str) -> str:
    # py-spy names files relative to their sys.path entry: "sqlalchemy/orm/session.py:2373".
    where = frame[frame.rfind("(") + 1 :].rstrip(")")
    top = where.split("/", 1)[0] if "/" in where else where.split(":", 1)[0]
    if top in ("asyncio", "json", "concurrent", "logging", "email", "http", "importlib"):
        return f"{top} (stdlib)"
    if top.endswith(".py") or top.startswith("<"):
        return f"stdlib: {top}"
    return top
