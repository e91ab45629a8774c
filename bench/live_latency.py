"""Live updates (issue 13): from a customer's webhook to the staff console's SSE event, across processes.

The production shape on one machine: PostgreSQL (a fresh database) and Redis (a key prefix of
the run's own), the LINE emulator as LINE (`python -m kizuna.emulator`), `kizuna serve`
receiving the webhooks ("ingest"), `kizuna worker` processes (default 2), and a second
`kizuna serve` ("console") to which a support member, created with `kizuna staff create` and
logged in through the console's login form, holds `GET /console/live` open. This script reads
that stream as a browser's EventSource would (aiohttp, streaming).

Customers with an active conversation (the emulator's users; 40 % of the conversations pending,
60 % open and owned by support members, bench/_support.py) send text messages, round robin,
as signed webhooks (`_common.LineWebhookFactory`) paced at each --rates (default 50 and 500
messages/s; open loop: the sends do not wait for the answers) for --duration s after a warm-up.
The load generator is a process of its own (`_common.open_loop`), so its work never delays the
stream's reader; it measures its own CPU and how late its sends went out.

For each message: latency = when the SSE `message` event naming its conversation was read
here, minus when its webhook request was sent (CLOCK_MONOTONIC: one clock for all processes).
The worker publishes one `message` update per customer message (conversation and customer ids;
no interaction id), and one customer's events are processed in order, so the k-th event of a
conversation is the k-th message sent in it. A message with no event after the drain is
missing, and counts as infinitely late in the percentiles.

Baselines, in the same run at the same rate:
- "webhook 200": the webhook requests' own answers (send to 200, the same requests);
- "Redis pub/sub": PUBLISH from another process to a redis-py subscriber in this process;
- "Redis → console → SSE": a `message` update PUBLISHed on the live channel from another
  process, relayed by the console process to this stream: the whole path but the webhook,
  the queue, the worker and the database.

    .venv/bin/python bench/live_latency.py                            # 50 and 500/s, 20 s each
    .venv/bin/python bench/live_latency.py --rates 50,200,500 --duration 30 --workers 2 --json /tmp/live.json
    .venv/bin/python bench/live_latency.py --render /tmp/live.json     # its table, as in docs/benchmarks.md

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust, database `test`) and Redis at
127.0.0.1:6379. Results: docs/benchmarks.md, "Live updates: webhook to the console (issue 13)".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import _support as support  # noqa: E402

GOAL_P99_S = 1.0
NOISY_OTHER_PCT = 15.0
# The generator kept up when 99 % of its sends went out within this many ms of their slot.
LATE_MS = 20.0
EMAIL = "live-bench@bench.example"
CLI = [common.PYTHON, "-m", "kizuna.bot.cli"]
RELAY_CONVERSATION = 0  # the relay probes' conversation id: no real conversation has it
now = time.monotonic  # CLOCK_MONOTONIC on Linux: the same clock in every process


# --- the load generator (a subprocess: `live_latency.py _load SPEC`) -------------------------------


def load(spec: dict) -> int:
    """Paced webhooks or PUBLISHes; writes what was sent (and when) to spec["out"]."""
    if spec["mode"] == "webhooks":
        result = send_webhooks(spec)
    else:
        result = asyncio.run(publish_paced(spec))
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


def send_webhooks(spec: dict) -> dict:
    factory = common.LineWebhookFactory(spec["secret"], users=1)
    users = spec["users"]
    sent: list[list] = []
    counter = itertools.count()

    def make():
        # open_loop calls this in its i-th send slot (unless it drops the slot: an error).
        i = next(counter)
        user = users[i % len(users)]
        body, headers, ids = factory.make(user=user, text=f"注文の件、続きです（{i}）")
        sent.append([ids[0], user, now(), i])
        return body, headers, ids

    stats = asyncio.run(common.open_loop(spec["url"], make, rate=spec["rate"], warmup=spec["warmup"],
                                         duration=spec["duration"], watch=spec["watch"]))
    acked = set(stats.acked_ids)
    return {"sent": [[event_id, user, t, event_id in acked, i] for event_id, user, t, i in sent],
            "summary": stats.summary() | {"latencies_ms": stats.latencies_ms}}


async def publish_paced(spec: dict) -> dict:
    """PUBLISH one message per slot on spec["channel"], `seq` in it; sequential, as a worker
    publishes its updates one after another."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(common.REDIS_URL)
    rate, warmup, duration = spec["rate"], spec["warmup"], spec["duration"]
    meter = common.CpuMeter(spec["watch"])
    sent: list[list] = []
    lag_ms: list[float] = []
    metered = False
    start = now() + 0.05
    try:
        for seq in range(int(rate * (warmup + duration))):
            scheduled = start + seq / rate
            if not metered and seq / rate >= warmup:
                meter.start()
                metered = True
            delay = scheduled - now()
            if delay > 0:
                await asyncio.sleep(delay)
            t = now()
            lag_ms.append((t - scheduled) * 1000)
            if spec["mode"] == "relay":
                update = {"type": "message", "conversation_id": RELAY_CONVERSATION, "customer_id": 0, "interaction_id": seq}
            else:
                update = {"seq": seq}
            await client.publish(spec["channel"], json.dumps(update))
            sent.append([seq, t])
        await asyncio.sleep(max(0.0, start + warmup + duration - now()))
        cpu = meter.stop() if metered else {}
    finally:
        await client.aclose()
    window = sorted(lag_ms[int(rate * warmup):])
    return {"sent": sent, "summary": {"cpu": cpu, "sched_lag_p99_ms": common.percentile(window, 99),
                                      "total_requests": len(sent), "total_errors": 0}}


# --- the receiving side (this process) -------------------------------------------------------------


class Stream:
    """The console's SSE stream, read line by line; `message` events are noted with their time."""

    def __init__(self, response) -> None:
        self.response = response
        self.messages: list[tuple[float, int, int | None]] = []  # (time, conversation_id, interaction_id)
        self.kinds: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.ended = False

    async def read(self) -> None:
        kind, data = "message", ""
        try:
            while True:
                line = await self.response.content.readline()
                if not line:
                    break
                t = now()
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
                elif line == "" and data:
                    self.kinds[kind] = self.kinds.get(kind, 0) + 1
                    if kind == "ready":
                        self.ready.set()
                    elif kind == "message":
                        update = json.loads(data)
                        self.messages.append((t, update.get("conversation_id"), update.get("interaction_id")))
                    kind, data = "message", ""
        finally:
            self.ended = True


async def open_stream(base_url: str):
    """(client, stream, reader task) for a support member logged in through the form."""
    client = await support.console_login(base_url, EMAIL)
    response = await client.get(f"{base_url}/console/live", allow_redirects=False)
    if response.status != 200 or response.content_type != "text/event-stream":
        await client.close()
        raise RuntimeError(f"GET /console/live: {response.status} {response.content_type}")
    stream = Stream(response)
    task = asyncio.create_task(stream.read())
    await asyncio.wait_for(stream.ready.wait(), 15)  # subscribed: nothing published from here on is missed
    return client, stream, task


class RedisListener:
    """The raw pub/sub baseline's subscriber: a redis-py subscription in this process."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.received: list[tuple[float, int]] = []

    async def __aenter__(self) -> "RedisListener":
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(common.REDIS_URL)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.subscribe(self.channel)
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message.get("type") == "message":
                self.received.append((now(), json.loads(message["data"])["seq"]))

    async def __aexit__(self, *exc) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()


# --- one measured phase ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="kizuna-live-"))
        self.secret = secrets.token_hex(16)
        self.access_token = "bench-" + secrets.token_hex(12)
        self.prefix = f"kizuna-live-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.database = ""
        self.processes: dict[str, common.Server] = {}
        self.users: list[str] = []
        self.conversation_of: dict[str, int] = {}

    def env(self, emulator_url: str, *, log_level: str = "WARNING") -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KIZUNA_", "LINE_"))
               and k not in ("DATABASE_URL", "REDIS_URL", "HOST", "PORT")}
        return env | {
            "PYTHONPATH": str(common.REPO), "DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{self.database}",
            "REDIS_URL": common.REDIS_URL, "KIZUNA_REDIS_PREFIX": self.prefix, "KIZUNA_EMULATOR": "false",
            "LINE_CHANNEL_SECRET": self.secret, "LINE_CHANNEL_ACCESS_TOKEN": self.access_token,
            "LINE_API_BASE_URL": emulator_url, "LINE_DATA_API_BASE_URL": emulator_url,
            "KIZUNA_SECRET_KEY": "live-bench-" + "k" * 32, "KIZUNA_LOG_LEVEL": log_level, "HOST": "127.0.0.1",
        }

    def start(self, stack: contextlib.ExitStack, name: str, argv: list[str], env: dict, *, port: int = 0,
              health_path: str = "/healthz", ready_text: str | None = None) -> common.Server:
        server = common.Server(name, argv, env=env, port=port, log_path=self.workdir / f"{name}.log",
                               health_path=health_path, cwd=self.workdir, ready_text=ready_text)
        stack.callback(server.stop)
        self.processes[name] = server.start()
        return server

    def set_up(self, stack: contextlib.ExitStack) -> str:
        """Everything but the stream; returns the console's base URL."""
        a = self.args
        port = common.free_port()
        emulator_url = f"http://127.0.0.1:{port}"
        self.start(stack, "emulator", [common.PYTHON, "-m", "kizuna.emulator", "--port", str(port),
                                       "--channel-secret", self.secret, "--access-token", self.access_token,
                                       "--request-log-limit", "10000"],
                   self.env(emulator_url), port=port, health_path="/api/info")
        self.users = emulator_users(emulator_url, a.customers)
        env = self.env(emulator_url)
        common.run_checked([*CLI, "migrate"], env=env, timeout=300, cwd=self.workdir)
        staff_id = support.create_staff(CLI, env, EMAIL, cwd=self.workdir)
        shape = support.Shape(customers=a.customers, active=a.customers, resolved=0, timeline=10, background=0)
        dsn = common.PG_BENCH_DSN.format(name=self.database)
        asyncio.run(support.load_support_data(dsn, shape, staff_id, line_user_ids=self.users))
        self.conversation_of = {row[1]: row[0] for row in common.pg_fetch(dsn, (
            "SELECT c.id, cu.line_user_id FROM conversations c JOIN customers cu ON cu.id = c.customer_id "
            "WHERE c.status <> 'resolved'"))}
        ingest_port, console_port = common.free_port(), common.free_port()
        self.start(stack, "ingest", [*CLI, "serve", "--port", str(ingest_port)], env, port=ingest_port)
        for i in range(a.workers):
            # INFO: the worker says "worker ready" when its consumers run.
            self.start(stack, f"worker{i + 1}", [*CLI, "worker"], self.env(emulator_url, log_level="INFO"),
                       ready_text="worker ready")
        self.start(stack, "console", [*CLI, "serve", "--port", str(console_port)], env, port=console_port)
        self.ingest_url = f"http://127.0.0.1:{ingest_port}/callback"
        return f"http://127.0.0.1:{console_port}"

    def watch(self) -> dict:
        watch: dict = {name: [server.pid] for name, server in self.processes.items() if not name.startswith("worker")}
        watch["workers"] = [server.pid for name, server in self.processes.items() if name.startswith("worker")]
        watch["reader"] = [os.getpid()]
        watch["postgres"] = f"pgdb:{self.database}"
        watch["redis"] = "comm:redis-server"
        return watch

    async def generate(self, mode: str, rate: float, **extra) -> dict:
        """Run the load generator for one phase (it exits when done); what it sent."""
        a = self.args
        out = self.workdir / f"sent-{uuid.uuid4().hex[:8]}.json"
        spec = {"mode": mode, "rate": rate, "warmup": a.warmup, "duration": a.duration if mode == "webhooks" else
                a.baseline_duration, "watch": self.watch(), "out": str(out), **extra}
        process = await asyncio.create_subprocess_exec(
            common.PYTHON, str(Path(__file__).resolve()), "_load", json.dumps(spec), env=os.environ | {
                "PYTHONPATH": str(common.REPO)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), spec["warmup"] + spec["duration"] + 120)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"the {mode} generator did not finish") from None
        if process.returncode != 0:
            raise RuntimeError(f"the {mode} generator failed ({process.returncode}):\n{stdout.decode()}\n{stderr.decode()}")
        sent = json.loads(out.read_text())
        out.unlink()
        return sent

    async def drain(self, arrived, expected: int) -> float:
        """Wait until `arrived()` reaches `expected` or --drain-timeout passes; the seconds waited."""
        started = now()
        while arrived() < expected and now() - started < self.args.drain_timeout:
            await asyncio.sleep(0.05)
        return now() - started

    async def transactions(self) -> int:
        """Transactions committed or rolled back in the benchmark's database so far (every process)."""
        rows = await asyncio.to_thread(common.pg_fetch, common.PG_ADMIN_DSN, (
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '" + self.database + "'"))
        return int(rows[0][0])

    async def wait_for_backlog(self) -> int:
        """Until the workers have processed every stored event (a phase's stragglers must not
        land in the next phase); the events still pending after --drain-timeout."""
        import asyncpg

        conn = await asyncpg.connect(common.PG_BENCH_DSN.format(name=self.database))
        try:
            started = now()
            while True:
                pending = await conn.fetchval("SELECT count(*) FROM inbound_events WHERE status = 'pending'")
                if pending == 0 or now() - started >= self.args.drain_timeout:
                    return pending
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    # the three kinds of phase ----------------------------------------------------------------

    async def live(self, stream: Stream, rate: float, *, profile: bool = False) -> dict:
        backlog = await self.wait_for_backlog()
        stream.messages.clear()
        spy = await self.start_profile() if profile else None
        transactions = await self.transactions()
        sent = await self.generate("webhooks", rate, url=self.ingest_url, secret=self.secret, users=self.users)
        profiled = await self.finish_profile(spy) if spy else None
        acked = [m for m in sent["sent"] if m[3]]
        drained = await self.drain(lambda: sum(1 for m in stream.messages if m[1] != RELAY_CONVERSATION), len(acked))
        await asyncio.sleep(1.5)  # PostgreSQL backends report their statistics once a second at most
        transactions = (await self.transactions() - transactions) / max(1, len(sent["sent"]))
        # The k-th event of a conversation is the k-th acknowledged message sent in it.
        events: dict[int, list[float]] = {}
        for t, conversation_id, _ in stream.messages:
            events.setdefault(conversation_id, []).append(t)
        latencies, unexpected = [], 0
        by_conversation: dict[int, list[list]] = {}
        for m in sorted(acked, key=lambda m: m[2]):
            by_conversation.setdefault(self.conversation_of[m[1]], []).append(m)
        for conversation_id, messages in by_conversation.items():
            received = events.pop(conversation_id, [])
            unexpected += max(0, len(received) - len(messages))
            for k, (_, _, t_sent, _, slot) in enumerate(messages):
                if self.in_window(slot, rate, self.args.duration):
                    latencies.append(received[k] - t_sent if k < len(received) else float("inf"))
        unexpected += sum(len(v) for v in events.values())
        webhook = sent["summary"]
        # What the workers got through: events read while the load was on, per second.
        first = min(m[2] for m in sent["sent"])
        on = (first + self.args.warmup, first + self.args.warmup + self.args.duration)
        through = sum(1 for t, c, _ in stream.messages if c != RELAY_CONVERSATION and on[0] <= t < on[1])
        return {"latency_s": latencies, "drained_s": drained, "unexpected_events": unexpected,
                "backlog_before": backlog, "profile": profiled, "transactions_per_message": transactions, "events_per_s_under_load": through / self.args.duration,
                "generator": generator_check(webhook, rate),
                "webhook_200_s": sorted(x / 1000 for x in webhook.get("latencies_ms", [])),
                "webhook": {k: v for k, v in webhook.items() if k not in ("latencies_ms",)}, "cpu": webhook["cpu"]}

    async def start_profile(self):
        """py-spy on the first worker for the phase's warm-up and load (`--profile`)."""
        py_spy = Path(common.PYTHON).parent / "py-spy"
        out = self.workdir / "py-spy-worker1.txt"
        seconds = int(self.args.warmup + self.args.duration)
        process = await asyncio.create_subprocess_exec(
            str(py_spy) if py_spy.exists() else "py-spy", "record", "--pid", str(self.processes["worker1"].pid),
            "--rate", "100", "--duration", str(seconds), "--format", "raw", "--nonblocking", "--output", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        return process, out

    async def finish_profile(self, spy) -> dict:
        process, out = spy
        try:
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            stderr = b"py-spy did not finish"
        if not out.exists():
            return {"error": stderr.decode(errors="replace")[-2000:]}
        if self.args.profile_raw:
            shutil.copyfile(out, self.args.profile_raw)  # py-spy's collapsed stacks, for a closer look
        return common.summarize_collapsed(out, top=40)

    async def redis_baseline(self, rate: float) -> dict:
        channel = f"{self.prefix}:bench-baseline"
        async with RedisListener(channel) as listener:
            sent = await self.generate("publish", rate, channel=channel)
            drained = await self.drain(lambda: len(listener.received), len(sent["sent"]))
            received = dict((seq, t) for t, seq in listener.received)
        return self._matched(sent, received, rate, drained)

    async def relay_baseline(self, stream: Stream, rate: float) -> dict:
        stream.messages.clear()
        sent = await self.generate("relay", rate, channel=f"{self.prefix}:live")
        drained = await self.drain(lambda: sum(1 for m in stream.messages if m[1] == RELAY_CONVERSATION),
                                   len(sent["sent"]))
        received = {seq: t for t, conversation_id, seq in stream.messages if conversation_id == RELAY_CONVERSATION}
        return self._matched(sent, received, rate, drained)

    def in_window(self, slot: int, rate: float, duration: float) -> bool:
        """Whether send slot `slot` is measured (after the warm-up), as open_loop decides."""
        return self.args.warmup <= slot / rate < self.args.warmup + duration

    def _matched(self, sent: dict, received: dict[int, float], rate: float, drained: float) -> dict:
        latencies = [received[seq] - t if seq in received else float("inf")
                     for seq, t in sent["sent"] if self.in_window(seq, rate, self.args.baseline_duration)]
        return {"latency_s": latencies, "drained_s": drained, "generator": generator_check(sent["summary"], rate),
                "cpu": sent["summary"]["cpu"]}

    # the whole run -----------------------------------------------------------------------------

    async def measure(self, console_url: str) -> dict:
        a = self.args
        client, stream, reader = await open_stream(console_url)
        results: dict = {}
        try:
            for rate in a.rates:
                print(f"\n== {rate:g} messages/s", flush=True)
                phases = {}
                # The baselines first: a live phase may leave the workers a backlog to drain.
                await self.wait_for_backlog()
                for name in ("redis", "relay", "live"):
                    if a.quiet_wait > 0:
                        busy = await asyncio.to_thread(common.wait_for_quiet, 0.3, a.quiet_wait)
                        if busy >= 0.3:
                            print(f"  (machine still busy before {name}: {busy:.2f} cores in use by others)", flush=True)
                    if name == "live":
                        phases[name] = await self.live(stream, rate, profile=a.profile and rate == a.rates[-1])
                    elif name == "redis":
                        phases[name] = await self.redis_baseline(rate)
                    else:
                        phases[name] = await self.relay_baseline(stream, rate)
                    print_phase(name, phases[name], self.watch())
                    if phases[name].get("profile"):
                        print_profile(phases[name]["profile"])
                    if stream.ended:
                        raise RuntimeError("the SSE stream ended")
                results[f"{rate:g}"] = phases
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            stream.response.close()
            await client.close()
        results["_stream_events"] = dict(stream.kinds)
        return results

    def run(self) -> dict:
        a = self.args
        info = common.machine_info()
        print(f"machine: {common.describe_machine(info)}")
        print(f"{a.customers:,} customers in active conversations, {a.workers} worker(s); paced "
              f"{', '.join(f'{r:g}' for r in a.rates)} messages/s for {a.warmup:g} s + {a.duration:g} s "
              f"(baselines {a.warmup:g} s + {a.baseline_duration:g} s)", flush=True)
        report: dict = {"machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]),
                        "args": {k: v for k, v in vars(a).items()}}
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, self.workdir, True)
            self.database = stack.enter_context(common.fresh_postgres_database("kizuna_live"))
            stack.callback(common.redis_delete_prefix, common.REDIS_URL, self.prefix)
            console_url = self.set_up(stack)
            print(f"database {self.database}, redis prefix {self.prefix}; processes: "
                  + ", ".join(f"{name} {server.pid}" for name, server in self.processes.items()), flush=True)
            report["results"] = asyncio.run(self.measure(console_url))
            for server in reversed(list(self.processes.values())):
                server.stop()
            report["logs"] = {name: server.log_tail(5) for name, server in self.processes.items()}
        print_summary(report, a)
        return report


def emulator_users(emulator_url: str, count: int) -> list[str]:
    """`count` friends made in the emulator (it then knows every customer, as LINE would)."""
    request = urllib.request.Request(f"{emulator_url}/api/admin/users/bulk", data=json.dumps({"count": count}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["user_ids"]


def generator_check(summary: dict, rate: float) -> dict:
    """Whether the generator kept its pace (sends late p99) and what CPU it used."""
    cpu = summary.get("cpu") or {}
    wall = cpu.get("wall_s") or 1.0
    late = summary.get("sched_lag_p99_ms")
    return {"late_p99_ms": late, "cpu_pct": 100 * cpu.get("self_s", 0.0) / wall,
            "kept_up": late is not None and late <= LATE_MS and not summary.get("total_errors"),
            "errors": summary.get("total_errors", 0), "error_samples": summary.get("error_samples", {})}


# --- printing ------------------------------------------------------------------------------------


def pct(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    missing = sum(1 for x in ordered if x == float("inf"))
    return {"n": len(ordered), "arrived": len(ordered) - missing, "missing": missing,
            **{f"p{q}": common.percentile(ordered, q) for q in (50, 95, 99)}, "max": ordered[-1] if ordered else None}


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value == float("inf"):
        return "missing"
    return f"{value * 1000:,.0f}" if value >= 1.0 else f"{value * 1000:.1f}"


def cpu_pct(cpu: dict, watch: dict) -> dict:
    wall = cpu.get("wall_s") or 1.0
    out = {"generator": 100 * cpu.get("self_s", 0.0) / wall}
    for label in watch:
        out[label] = 100 * cpu.get(f"{label}_s", 0.0) / wall
    out["other"] = 100 * cpu.get("machine_busy_s", 0.0) / wall - sum(out.values())
    return out


LABELS = {"live": "webhook → SSE", "redis": "Redis pub/sub", "relay": "Redis → console → SSE"}


def print_phase(name: str, phase: dict, watch: dict) -> None:
    p = pct(phase["latency_s"])
    gen = phase["generator"]
    print(f"  {LABELS[name]:<24} p50 {ms(p['p50']):>8} ms  p95 {ms(p['p95']):>8} ms  p99 {ms(p['p99']):>8} ms  "
          f"max {ms(p['max']):>8} ms  arrived {p['arrived']:,}/{p['n']:,}"
          + (f", {phase['unexpected_events']} unexpected events" if phase.get("unexpected_events") else ""), flush=True)
    if name == "live":
        w = pct(phase["webhook_200_s"])
        print(f"  {'  (webhook 200)':<24} p50 {ms(w['p50']):>8} ms  p95 {ms(w['p95']):>8} ms  p99 {ms(w['p99']):>8} ms  "
              f"max {ms(w['max']):>8} ms  answered {phase['webhook']['requests']:,}, errors {phase['webhook']['errors']}",
              flush=True)
    shares = cpu_pct(phase.get("cpu") or {}, watch)
    phase["cpu_pct"] = shares
    print(f"  {'':<24} cpu % of a core: " + ", ".join(f"{k} {v:.0f}" for k, v in shares.items())
          + f"; generator sends late p99 {gen['late_p99_ms'] or 0:.1f} ms"
          + ("" if gen["kept_up"] else "  <- THE GENERATOR DID NOT KEEP UP")
          + (f"; drained in {phase['drained_s']:.1f} s" if phase["drained_s"] > 0.5 else "")
          + (f"; events read under load {phase['events_per_s_under_load']:.0f}/s, workers' CPU "
             f"{worker_ms_per_event(phase):.1f} ms per event, PostgreSQL transactions "
             f"{phase['transactions_per_message']:.1f} per message" if "events_per_s_under_load" in phase else "")
          + ("  <- other jobs used CPU meanwhile" if shares["other"] > NOISY_OTHER_PCT else ""), flush=True)
    if gen["errors"]:
        print(f"  {'':<24} generator errors: {gen['errors']} {gen['error_samples']}", flush=True)


def print_profile(profile: dict) -> None:
    if "error" in profile:
        print(f"  py-spy failed: {profile['error']}")
        return
    print(f"  py-spy, worker 1 ({profile['samples']} busy samples at 100 Hz), inclusive share of its busy time:")
    for name, share in profile["inclusive"][:40]:
        print(f"    {share:5.1f}%  {name}")
    print("  self time by library:")
    for name, share in profile["library_self"][:10]:
        print(f"    {share:5.1f}%  {name}")
    sys.stdout.flush()


def worker_ms_per_event(phase: dict) -> float:
    """The workers' CPU per event they got through while the load was on."""
    events = phase["events_per_s_under_load"] * (phase["cpu"].get("wall_s") or 0.0)
    return 1000 * phase["cpu"].get("workers_s", 0.0) / events if events else 0.0


def print_summary(report: dict, args: argparse.Namespace) -> None:
    results = report["results"]
    print("\n== latency, ms (p50 / p95 / p99 / max; arrived of sent in the window)")
    print(f"{'rate/s':>7}  {'webhook → SSE':>34}  {'webhook 200':>28}  {'Redis pub/sub':>28}  {'Redis → console → SSE':>28}")
    verdicts = []
    for rate in args.rates:
        phases = results[f"{rate:g}"]
        cells = []
        for p in (pct(phases["live"]["latency_s"]), pct(phases["live"]["webhook_200_s"]),
                  pct(phases["redis"]["latency_s"]), pct(phases["relay"]["latency_s"])):
            cells.append(f"{ms(p['p50'])} / {ms(p['p95'])} / {ms(p['p99'])} / {ms(p['max'])}")
        live = pct(phases["live"]["latency_s"])
        cells[0] += f" ({live['arrived']:,}/{live['n']:,})"
        print(f"{rate:>7g}  {cells[0]:>34}  {cells[1]:>28}  {cells[2]:>28}  {cells[3]:>28}")
        verdicts.append(f"{rate:g}/s: p99 {ms(live['p99'])} ms, " + ("met" if live["p99"] is not None and live["p99"] < GOAL_P99_S else "MISSED"))
    print(f"goal p99 < {GOAL_P99_S * 1000:.0f} ms: " + "; ".join(verdicts))
    print(f"stream events read: {results['_stream_events']}")
    sys.stdout.flush()


def markdown(report: dict) -> str:
    """The figures of a saved report (--json) as the table of docs/benchmarks.md."""
    out = ["| rate/s | webhook → SSE p50 / p95 / p99 / max ms | arrived / sent | webhook 200 p50 / p99 ms "
           "| Redis pub/sub p50 / p99 ms | Redis → console → SSE p50 / p99 ms | events/s read under load "
           "| workers' CPU ms/event | PostgreSQL transactions/message | generator CPU %, sends late p99 ms "
           "| other jobs, % of a core (live / baselines) |",
           "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for rate, phases in report["results"].items():
        if rate.startswith("_"):
            continue
        live, redis, relay = phases["live"], phases["redis"], phases["relay"]
        p, w, r, c = pct(live["latency_s"]), pct(live["webhook_200_s"]), pct(redis["latency_s"]), pct(relay["latency_s"])
        gen = live["generator"]
        out.append(
            f"| {float(rate):,.0f} | {ms(p['p50'])} / {ms(p['p95'])} / {ms(p['p99'])} / {ms(p['max'])} "
            f"| {p['arrived']:,} / {p['n']:,} | {ms(w['p50'])} / {ms(w['p99'])} | {ms(r['p50'])} / {ms(r['p99'])} "
            f"| {ms(c['p50'])} / {ms(c['p99'])} | {live['events_per_s_under_load']:.0f} | {worker_ms_per_event(live):.1f} "
            f"| {live['transactions_per_message']:.1f} | {gen['cpu_pct']:.0f}, {gen['late_p99_ms'] or 0:.1f} "
            f"| {live['cpu_pct']['other']:.0f} / {redis['cpu_pct']['other']:.0f}, {relay['cpu_pct']['other']:.0f} |")
    return "\n".join(out)


# --- entry point -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,500", help="comma-separated messages/s (default 50,500)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per rate (default 20)")
    parser.add_argument("--baseline-duration", type=float, default=10.0,
                        help="measured seconds of each baseline per rate (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each (default 2)")
    parser.add_argument("--customers", type=int, default=1000,
                        help="customers in an active conversation, sending round robin (default 1,000)")
    parser.add_argument("--workers", type=int, default=2, help="`kizuna worker` processes (default 2)")
    parser.add_argument("--drain-timeout", type=float, default=90.0,
                        help="after a phase, wait at most this long for its events (default 90)")
    parser.add_argument("--quiet-wait", type=float, default=10.0,
                        help="before each phase wait up to this many seconds for the machine to idle (default 10)")
    parser.add_argument("--profile", action="store_true",
                        help="sample worker 1 with py-spy during the last rate's load (pip install py-spy into the venv)")
    parser.add_argument("--profile-raw", type=Path, help="with --profile: keep py-spy's collapsed stacks in this file")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r.strip()]
    if not args.rates or not all(0 < r <= 5000 for r in args.rates) or len(args.rates) > 6:
        parser.error("--rates: 1 to 6 rates of at most 5,000/s")
    if not (0 < args.duration <= 300 and 0 < args.baseline_duration <= 300 and 0 <= args.warmup <= 30
            and 1 <= args.customers <= 100_000 and 1 <= args.workers <= 8 and 1 <= args.drain_timeout <= 600):
        parser.error("bounded on purpose: --duration <= 300, --customers <= 100,000, --workers <= 8, "
                     "--drain-timeout <= 600")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_load"]:
        return load(json.loads(argv[1]))
    if argv[:1] == ["--render"]:  # the tables of saved reports (--json), for docs/benchmarks.md
        for path in argv[1:]:
            report = json.loads(Path(path).read_text())
            print(f"{path}: {common.describe_machine(report['machine'])}\n\n{markdown(report)}\n")
        return 0
    args = parse_args(argv)
    # A background job ignores SIGINT: let SIGTERM stop the processes and drop the database too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = Bench(args).run()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
