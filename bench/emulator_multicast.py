"""Emulator: multicast intake (issue 15) - how many 500-id multicasts one emulator accepts.

The campaign benchmarks send 1M recipients at LINE's 200 requests/s x 500 ids, and the
engine's ceiling test lifts the limits and sends at 3x that (600 requests/s, 300,000
recipients/s): the emulator must not be what limits them. This starts `python -m
kizuna.emulator --no-rate-limits` (rate limits lifted, a short request log), creates
`--users` friends, and drives it with wrk (bench/wrk/multicast.lua: prebuilt bodies of 500
distinct ids and one text, a fresh X-Line-Retry-Key per request) for `--duration` seconds.
It prints requests/s and recipients/s accepted (answers 200), wrk's latency, the emulator's
RSS before and after and per accepted recipient, and checks the emulator's record of
accepted deliveries (`GET /api/admin/deliveries`) against the 200s wrk saw.

    .venv/bin/python bench/emulator_multicast.py                       # 100k users, 10 s
    .venv/bin/python bench/emulator_multicast.py --users 1000000 --duration 20 --connections 64

With `--pin` (default when the machine has 2+ CPUs) the emulator runs on CPU 0 and wrk on
CPU 1 (taskset). Needs wrk. Results: docs/benchmarks.md, "Emulator: multicast intake".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

LUA = Path(__file__).resolve().parent / "wrk" / "multicast.lua"
TOKEN = "bench-token"
IDS_PER_REQUEST = 500
BODIES = 400


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0])
    return values["VmRSS"], values["VmHWM"]


def http(url: str, body: dict | None = None, timeout: float = 300) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def start_emulator(port: int, pin: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "kizuna.emulator", "--port", str(port), "--access-token", TOKEN,
            "--no-rate-limits", "--request-log-limit", "1000"]
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "ready" not in line:
        process.kill()
        raise SystemExit(f"the emulator did not start: {line}{process.stdout.read()}")
    return process


def write_bodies(user_ids: list[str], path: Path) -> None:
    # Consecutive windows of 500 distinct ids, wrapping around the user list.
    with path.open("w") as out:
        for k in range(BODIES):
            start = (k * IDS_PER_REQUEST) % len(user_ids)
            window = (user_ids + user_ids[:IDS_PER_REQUEST])[start : start + IDS_PER_REQUEST]
            body = {"to": window, "messages": [{"type": "text", "text": f"キャンペーンのお知らせ {k % 7}"}]}
            out.write(json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n")


def run_wrk(port: int, bodies: Path, threads: int, connections: int, duration: int, pin: bool) -> dict:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--latency",
            "-s", str(LUA), f"http://127.0.0.1:{port}"]
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    env = {**os.environ, "KIZUNA_WRK_BODIES": str(bodies), "KIZUNA_WRK_THREADS": str(threads), "KIZUNA_WRK_TOKEN": TOKEN}
    output = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 120, check=True).stdout
    for line in output.splitlines():
        if line.startswith("KIZUNA_WRK "):
            return json.loads(line.removeprefix("KIZUNA_WRK "))
    raise SystemExit(f"wrk printed no summary:\n{output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")
    print(common.describe_machine(common.machine_info()))
    print(f"load: wrk -t{args.threads} -c{args.connections} for {args.duration} s, multicast of {IDS_PER_REQUEST} ids "
          f"(one text), a fresh retry key each; {args.users:,} friends; rate limits lifted; "
          f"{'emulator on CPU 0, wrk on CPU 1' if args.pin else 'not pinned'}")
    port = common.free_port()
    emulator = start_emulator(port, args.pin)
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        user_ids: list[str] = []
        while len(user_ids) < args.users:
            count = min(100_000, args.users - len(user_ids))
            user_ids += http(f"{base}/api/admin/users/bulk", {"count": count})["user_ids"]
        print(f"{len(user_ids):,} users created in {time.monotonic() - started:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            bodies = Path(tmp) / "bodies.jsonl"
            write_bodies(user_ids, bodies)
            del user_ids
            rss_before, _ = rss_kib(emulator.pid)
            result = run_wrk(port, bodies, args.threads, args.connections, args.duration, args.pin)
        rss_after, peak = rss_kib(emulator.pid)
        seconds = result["duration_us"] / 1e6
        accepted = result["statuses"].get("200", 0)
        others = {k: v for k, v in result["statuses"].items() if k != "200"}
        ledger = http(f"{base}/api/admin/deliveries?via=multicast")["fingerprints"]
        recorded = sum(group["deliveries"] for group in ledger)
        print(f"\naccepted: {accepted:,} requests in {seconds:.1f} s = {accepted / seconds:,.0f} requests/s, "
              f"{accepted * IDS_PER_REQUEST / seconds:,.0f} recipients/s"
              f"{'; other answers ' + json.dumps(others) if others else ''}"
              f"{'; socket errors ' + str(result['errors_connect'] + result['errors_timeout']) if result['errors_connect'] + result['errors_timeout'] else ''}")
        print(f"latency: p50 {result['p50_us'] / 1000:.1f} ms, p99 {result['p99_us'] / 1000:.1f} ms; "
              f"machine load average {os.getloadavg()[0]:.1f} at the end (other work on the same CPUs slows the emulator)")
        grown = (rss_after - rss_before) * 1024
        print(f"emulator RSS: {rss_before / 1024:,.0f} MiB before the load, {rss_after / 1024:,.0f} MiB after "
              f"(peak {peak / 1024:,.0f} MiB); {grown / max(1, recorded):,.0f} bytes per accepted recipient")
        # wrk stops counting at the end of the run while up to one request per connection is
        # still being answered: those were executed and recorded, but wrk never saw their 200.
        in_flight = recorded - accepted * IDS_PER_REQUEST
        consistent = 0 <= in_flight <= args.connections * IDS_PER_REQUEST
        print(f"record of accepted deliveries: {recorded:,} (wrk saw {accepted * IDS_PER_REQUEST:,} answered; "
              f"{in_flight // IDS_PER_REQUEST} requests still in flight when wrk stopped)"
              f"{'' if consistent else '  MISMATCH'}")
        return 0 if consistent else 1
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
