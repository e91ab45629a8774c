"""One LINE rate limit shared by N sender processes (issue 15, section 2).

An emulator process plays LINE with its multicast limit (200/s as LINE publishes it, or
`--limit`); N sender processes, each a `LineClient` with a limiter, multicast as fast as they
can for `--seconds`; the emulator's request log counts what LINE accepted and what it refused:

- `shared`: `RedisRateLimiter`, one GCRA bucket in Redis for every process (what the workers use);
- `old`: the baseline, what `LineClient` did before: one aiolimiter per process (rate per second,
  a second's burst), so N processes offer N × the limit;
- `process`: the new in-process limiter, one per process (embedded mode's; N > 1 overshoots too).

Also the limiter's own cost per acquire (sequential; the Redis round trip).

    .venv/bin/python bench/line_ratelimit.py                      # 1, 2, 4 senders, shared and old, 10 s each
    .venv/bin/python bench/line_ratelimit.py --senders 2 --seconds 3 --modes shared

The sender role (`sender ...`) is one sender process; tests/bot/test_ratelimit.py uses it too.
It prints "ready", waits for a line on stdin (so every sender starts together), sends, and
prints its counts as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

TEXT = [{"type": "text", "text": "セールのお知らせです"}]
ACCESS_TOKEN = "bench-access-token"
ENDPOINT = "multicast"


# --- one sender process ----------------------------------------------------------------------


class OldPerProcessLimiter:
    """What LineClient did before the shared limiter: an aiolimiter per endpoint and process,
    `rate` per one-second period (so a full second's burst), nothing done on a 429."""

    def __init__(self, rate: float) -> None:
        from aiolimiter import AsyncLimiter

        self._limiter = AsyncLimiter(rate, 1)

    async def acquire(self, endpoint: str) -> None:
        await self._limiter.acquire()

    async def back_off(self, endpoint: str, retry_after: float | None) -> float:
        return 0.0


def make_limiter(mode: str, limit: float, redis_url: str | None, prefix: str, fallback_share: float):
    from kizuna.bot.ratelimit import InProcessRateLimiter, RedisRateLimiter

    limits = {ENDPOINT: limit}
    if mode == "shared":
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=1)
        return RedisRateLimiter(redis, prefix=prefix, limits=limits, fallback_share=fallback_share, retry_redis_after=0.2)
    if mode == "process":
        return InProcessRateLimiter(limits)
    if mode == "old":
        return OldPerProcessLimiter(limit)
    raise ValueError(f"unknown mode {mode!r}")


async def run_sender(args: argparse.Namespace) -> dict:
    from kizuna.bot.line import LineClient, LineError, LineUnavailable

    limiter = make_limiter(args.mode, args.limit, args.redis, args.prefix, args.fallback_share)
    client = LineClient(access_token=ACCESS_TOKEN, api_base_url=args.emulator, data_api_base_url=args.emulator,
                        timeout=5.0, limiter=limiter)
    counts: Counter = Counter()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # the go signal
    started = time.monotonic()
    deadline = started + args.seconds

    async def keep_sending() -> None:
        while time.monotonic() < deadline:
            try:
                await client.multicast([args.user], TEXT, retry_key=str(uuid.uuid4()))
                counts["sent"] += 1
            except LineUnavailable:
                counts["unavailable"] += 1
            except LineError as error:
                counts[f"refused {error.status}"] += 1

    try:
        await asyncio.gather(*(keep_sending() for _ in range(args.concurrency)))
    finally:
        await client.close()
        redis = getattr(limiter, "redis", None)
        if redis is not None:
            await redis.aclose()
    return {"counts": dict(counts), "seconds": time.monotonic() - started,
            "used_redis_at_end": getattr(limiter, "using_redis", None)}


def sender_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="line_ratelimit.py sender")
    parser.add_argument("--emulator", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--mode", choices=["shared", "process", "old"], required=True)
    parser.add_argument("--limit", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis", default=None)
    parser.add_argument("--prefix", default="kizuna-bench-rate")
    parser.add_argument("--fallback-share", type=float, default=0.5)
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    print(json.dumps(asyncio.run(run_sender(args))), flush=True)


# --- driving senders against an emulator -----------------------------------------------------


class EmulatorProcess:
    """`python -m kizuna.emulator` on a free port, its admin API at hand."""

    def __init__(self, log_path: Path) -> None:
        self.port = common.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "EmulatorProcess":
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [common.PYTHON, "-m", "kizuna.emulator", "--port", str(self.port), "--access-token", ACCESS_TOKEN,
             "--request-log-limit", "1000000"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=common.REPO,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while "LINE emulator ready" not in self.log_path.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"emulator did not start:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        return self

    def admin(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/api/admin/" + path, data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def request_count(self) -> int:
        return sum(self.admin("stats")["requests"].values())

    def requests_since(self, start: int) -> tuple[list[dict], int]:
        answer = self.admin(f"requests?start={start}")
        return answer["requests"], answer["next"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_senders(emulator: EmulatorProcess, user: str, *, count: int, mode: str, limit: float, seconds: float,
                  redis_url: str | None, prefix: str, concurrency: int = 16, fallback_share: float = 0.5,
                  log_dir: Path) -> list[subprocess.Popen]:
    """N sender processes, each ready (imports done, client built) before it returns."""
    senders = []
    for index in range(count):
        argv = [common.PYTHON, str(Path(__file__).resolve()), "sender", "--emulator", emulator.url, "--user", user,
                "--mode", mode, "--limit", str(limit), "--seconds", str(seconds), "--prefix", prefix,
                "--concurrency", str(concurrency), "--fallback-share", str(fallback_share)]
        if redis_url:
            argv += ["--redis", redis_url]
        stderr = open(log_dir / f"sender-{mode}-{count}-{index}.log", "ab")  # noqa: SIM115 - owned by the child
        senders.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                        text=True, cwd=common.REPO))
        stderr.close()
    for sender in senders:
        line = sender.stdout.readline()
        if line.strip() != "ready":
            for other in senders:
                other.kill()
            raise RuntimeError(f"a sender did not start (said {line!r})")
    return senders


def go(senders: list[subprocess.Popen]) -> None:
    for sender in senders:
        sender.stdin.write("go\n")
        sender.stdin.flush()


def finish(senders: list[subprocess.Popen], timeout: float) -> list[dict]:
    results = []
    for sender in senders:
        out, _ = sender.communicate(timeout=timeout)
        if sender.returncode != 0:
            raise RuntimeError(f"a sender exited with {sender.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def summarize(requests: list[dict], seconds: float) -> dict:
    """What LINE (the emulator) saw of multicast: accepted per second overall, in the steady
    part (after the first second, when a full bucket's burst is over) and in the busiest second."""
    calls = [r for r in requests if r["endpoint"] == ENDPOINT]
    if not calls:
        return {"requests": 0}
    first = min(r["at"] for r in calls)
    last = max(r["at"] for r in calls)
    accepted = sorted(r["at"] for r in calls if r["status"] == 200)
    refused = sum(1 for r in calls if r["status"] == 429)
    span = max(last - first, 1e-9)
    steady = [at for at in accepted if at >= first + 1.0]
    busiest = 0
    j = 0
    for i, at in enumerate(accepted):  # the most accepted within any one second
        while accepted[j] < at - 1.0:
            j += 1
        busiest = max(busiest, i - j + 1)
    return {
        "requests": len(calls),
        "accepted": len(accepted),
        "refused_429": refused,
        "share_429": refused / len(calls),
        "span_s": span,
        "accepted_per_s": len(accepted) / span,
        "steady_accepted_per_s": len(steady) / max(span - 1.0, 1e-9) if span > 1.5 else None,
        "busiest_second": busiest,
        "other_statuses": dict(Counter(r["status"] for r in calls if r["status"] not in (200, 429))),
    }


def run_case(emulator: EmulatorProcess, user: str, *, senders: int, mode: str, limit: float, seconds: float,
             redis_url: str | None, prefix: str, concurrency: int, log_dir: Path) -> dict:
    processes = start_senders(emulator, user, count=senders, mode=mode, limit=limit, seconds=seconds,
                              redis_url=redis_url, prefix=prefix, concurrency=concurrency, log_dir=log_dir)
    start = emulator.request_count()
    # The emulator's bucket starts full again, as LINE's would after a quiet while.
    emulator.admin("rate_limit", {"endpoint": ENDPOINT, "per_second": limit})
    go(processes)
    results = finish(processes, timeout=seconds + 120)
    requests, _ = emulator.requests_since(start)
    summary = summarize(requests, seconds)
    summary["senders"] = [r["counts"] for r in results]
    return summary


async def acquire_cost(redis_url: str, prefix: str, count: int) -> dict:
    """µs per acquire, one after another, with a limit too high to ever wait."""
    from redis.asyncio import Redis

    from kizuna.bot.ratelimit import InProcessRateLimiter, RedisRateLimiter

    redis = Redis.from_url(redis_url)
    figures = {}
    try:
        for name, limiter in (
            ("redis", RedisRateLimiter(redis, prefix=f"{prefix}:cost", limits={"cost": 1e12})),
            ("in_process", InProcessRateLimiter({"cost": 1e12})),
        ):
            await limiter.acquire("cost")  # loads the script
            samples = []
            for _ in range(count):
                began = time.perf_counter()
                await limiter.acquire("cost")
                samples.append((time.perf_counter() - began) * 1e6)
            samples.sort()
            figures[name] = {"mean_us": statistics.fmean(samples), "p50_us": common.percentile(samples, 50),
                             "p99_us": common.percentile(samples, 99)}
    finally:
        await redis.aclose()
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "sender":
        sender_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", default="1,2,4", help="comma-separated sender process counts")
    parser.add_argument("--modes", default="shared,old", help="comma-separated: shared, old, process")
    parser.add_argument("--limit", type=float, default=200.0, help="multicast requests/s (LINE: 200)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per sender")
    parser.add_argument("--redis", default=common.REDIS_URL)
    parser.add_argument("--acquires", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    prefix = f"kizuna-bench-rate-{uuid.uuid4().hex[:8]}"
    log_dir = Path("/tmp") / prefix
    log_dir.mkdir()
    info = common.machine_info()
    print("machine:", common.describe_machine(info), flush=True)
    report: dict = {"machine": info, "limit": args.limit, "seconds": args.seconds, "concurrency": args.concurrency, "cases": []}
    emulator = EmulatorProcess(log_dir / "emulator.log").start()
    try:
        [user] = emulator.admin("users/bulk", {"count": 1})["user_ids"]
        for mode in args.modes.split(","):
            for count in (int(n) for n in args.senders.split(",")):
                common.wait_for_quiet(max_busy_cores=0.5, max_wait=20)
                case = run_case(emulator, user, senders=count, mode=mode, limit=args.limit, seconds=args.seconds,
                                redis_url=args.redis, prefix=f"{prefix}:{mode}-{count}", concurrency=args.concurrency,
                                log_dir=log_dir)
                case |= {"mode": mode, "processes": count}
                report["cases"].append(case)
                steady = case.get("steady_accepted_per_s")
                print(f"{mode:8s} {count} sender(s): accepted {case['accepted_per_s']:.1f}/s "
                      f"(steady {steady:.1f}/s, busiest second {case['busiest_second']}), "
                      f"429 {case['refused_429']}/{case['requests']} = {case['share_429']:.2%}", flush=True)
        report["acquire_cost"] = asyncio.run(acquire_cost(args.redis, prefix, args.acquires))
        print("acquire cost (µs, sequential):", json.dumps(report["acquire_cost"]), flush=True)
    finally:
        emulator.stop()
        common.redis_delete_prefix(args.redis, prefix)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
