"""Inbox first page (issue 13): the console's 1:1チャット inbox on a large PostgreSQL database.

A fresh database gets (bench/_support.py, server-side INSERT ... SELECT FROM generate_series)
1,000,000 customers, 10,000 active conversations (40 % pending, 60 % open among five support
members, one of them the measured one), 40,000 resolved conversations of other customers,
30 timeline rows for each customer with an active conversation (bot exchanges, the handoff,
then customer and staff messages; pending ones have no staff reply) and 1,000,000 other
timeline rows spread over all customers. Then, for the tabs pending, mine and all, N times
each, interleaved:

- in-process, as the console calls them (one session each, the engine kizuna uses):
  `storage.conversations.inbox(tab, staff, limit=51)` and `tab_counts(staff)`;
- the baseline: a plain indexed SELECT of a page of the same tab's conversations
  (`WHERE <tab filter> ORDER BY waiting_since, id LIMIT 50`, ORM objects, no join);
- the whole page over HTTP: `GET /console/conversations?tab=...` from a running `kizuna serve`
  (production mode), by a staff member logged in through the login form; loopback, so the
  client's time is the server's plus well under a millisecond.

EXPLAIN (ANALYZE, BUFFERS) of the inbox query of each tab (the statement the ORM sends, with
its parameters) is summarised, and written in full with --explain FILE. With --compare-ref REV,
inbox() as it was at that git revision is timed (and explained) too, interleaved with today's,
so that a change is measured against its predecessor under the same load from other jobs.

    .venv/bin/python bench/inbox_page.py                                # the defaults above, 30 repetitions
    .venv/bin/python bench/inbox_page.py --compare-ref 5517d03 --explain /tmp/inbox-explain.txt --json out.json
    .venv/bin/python bench/inbox_page.py --customers 100000 --active 2000 --background 100000
    .venv/bin/python bench/inbox_page.py --render out.json       # a saved report (--json) as in docs/benchmarks.md

Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust, database `test`) and Redis at
127.0.0.1:6379 (for `kizuna serve`). Results: docs/benchmarks.md, "Inbox first page (issue 13)".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import _support as support  # noqa: E402

GOAL_MS = 200.0
NOISY_OTHER_PCT = 15.0
TABS = ("pending", "mine", "all")
PAGE = 50  # the console's page; it asks for one more row to know whether there is a next page
EMAIL = "inbox-bench@bench.example"
CLI = [common.PYTHON, "-m", "kizuna.bot.cli"]


# --- environment -------------------------------------------------------------------------------


def kizuna_env(database: str, redis_prefix: str) -> dict[str, str]:
    """`kizuna serve` in production mode; LINE credentials set (the console then holds "real"
    customers' data), the LINE API on a dead loopback port: nothing here calls LINE."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIZUNA_", "LINE_"))
           and k not in ("DATABASE_URL", "REDIS_URL", "HOST", "PORT")}
    return env | {
        "PYTHONPATH": str(common.REPO), "DATABASE_URL": database_url(database),
        "REDIS_URL": common.REDIS_URL, "KIZUNA_REDIS_PREFIX": redis_prefix,
        "LINE_CHANNEL_SECRET": secrets.token_hex(16), "LINE_CHANNEL_ACCESS_TOKEN": "bench-" + secrets.token_hex(12),
        "KIZUNA_SECRET_KEY": secrets.token_hex(20), "KIZUNA_EMULATOR": "false", "KIZUNA_LOG_LEVEL": "WARNING",
        "LINE_API_BASE_URL": "http://127.0.0.1:9", "LINE_DATA_API_BASE_URL": "http://127.0.0.1:9", "HOST": "127.0.0.1",
    }


def database_url(database: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"


# --- in-process measurements --------------------------------------------------------------------


class Capture:
    """The statements the engine sends while `on`: the inbox query's exact SQL and parameters."""

    def __init__(self, engine) -> None:
        import sqlalchemy as sa

        self.on = False
        self.statements: list[tuple[str, tuple]] = []
        sa.event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on:
            self.statements.append((statement, parameters))


def plain_page(tab: str, staff_id: int):
    """The baseline: the tab's conversations by an index, no join, no latest-message lookups."""
    import sqlalchemy as sa

    from kizuna.storage.conversations import ACTIVE
    from kizuna.storage.models import Conversation, ConversationStatus

    statement = sa.select(Conversation)
    if tab == "pending":
        statement = statement.where(Conversation.status == ConversationStatus.PENDING)
    else:
        statement = statement.where(Conversation.status.in_(ACTIVE))
    if tab == "mine":
        statement = statement.where(Conversation.assignee_id == staff_id)
    return statement.order_by(Conversation.waiting_since, Conversation.id).limit(PAGE)


def module_at(ref: str) -> types.ModuleType:
    """kizuna/storage/conversations.py as it was at git revision `ref`, loaded as a module of its
    own beside the current one (`--compare-ref`: both inbox() timed in one run, interleaved, so
    that other jobs on a shared machine weigh on both alike)."""
    source = subprocess.run(["git", "-C", str(common.REPO), "show", f"{ref}:kizuna/storage/conversations.py"],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    module = types.ModuleType("kizuna.storage._conversations_at_" + re.sub(r"\W", "_", ref))
    module.__package__ = "kizuna.storage"  # its relative imports (.models, .errors) are today's
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{ref}:kizuna/storage/conversations.py", "exec"), module.__dict__)
    return module


async def measure_in_process(database: str, staff_id: int, tabs: list[str], repeat: int, warmup: int,
                             compare_ref: str | None = None) -> dict:
    """{tab: {"inbox": [ms], "tab_counts": [ms], "plain": [ms], "rows": n, "explain": text}}, and with
    `compare_ref` "inbox_ref": [ms] and "explain_ref" for that revision's inbox()."""
    from kizuna.storage import conversations
    from kizuna.storage.db import create_engine, session_factory

    engine = create_engine(database_url(database))
    capture = Capture(engine)
    sessions = session_factory(engine)
    out: dict = {tab: {"inbox": [], "tab_counts": [], "plain": [], "inbox_ref": []} for tab in tabs}
    old = module_at(compare_ref) if compare_ref else None

    async def timed(what):
        # One session per call, as one console request has: a pooled connection, pre-pinged.
        async with sessions() as session:
            started = time.perf_counter()
            result = await what(session)
            return (time.perf_counter() - started) * 1000, result

    try:
        for rep in range(warmup + repeat):
            for tab in tabs:
                kind = conversations.Tab(tab)
                ms_inbox, rows = await timed(lambda s: conversations.inbox(s, tab=kind, staff_id=staff_id, limit=PAGE + 1))
                ms_counts, counts = await timed(lambda s: conversations.tab_counts(s, staff_id))
                ms_plain, plain = await timed(lambda s: _all(s, plain_page(tab, staff_id)))
                if old is not None:
                    ms_ref, rows_ref = await timed(lambda s: old.inbox(s, tab=old.Tab(tab), staff_id=staff_id, limit=PAGE + 1))
                    if [r.conversation.id for r in rows_ref] != [r.conversation.id for r in rows]:
                        raise RuntimeError(f"tab {tab}: inbox() at {compare_ref} shows other conversations")
                if rep >= warmup:
                    out[tab]["inbox"].append(ms_inbox)
                    out[tab]["tab_counts"].append(ms_counts)
                    out[tab]["plain"].append(ms_plain)
                    if old is not None:
                        out[tab]["inbox_ref"].append(ms_ref)
                out[tab] |= {"rows": len(rows), "plain_rows": len(plain), "counts": {str(k): v for k, v in counts.items()}}
        for tab in tabs:
            out[tab]["explain"] = await explain_inbox(sessions, capture, tab, staff_id, conversations)
            if old is not None:
                out[tab]["explain_ref"] = await explain_inbox(sessions, capture, tab, staff_id, old)
    finally:
        await engine.dispose()
    return out


async def _all(session, statement) -> list:
    return list((await session.execute(statement)).scalars())


async def explain_inbox(sessions, capture: Capture, tab: str, staff_id: int, conversations) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of the first statement `conversations.inbox()` sends for `tab`,
    with its own parameters (the page query; the second one fetches the preview rows by id)."""
    capture.statements.clear()
    capture.on = True
    try:
        async with sessions() as session:
            await conversations.inbox(session, tab=conversations.Tab(tab), staff_id=staff_id, limit=PAGE + 1)
    finally:
        capture.on = False
    statement, parameters = next((s, p) for s, p in capture.statements if "FROM conversations" in s)
    async with sessions() as session:
        connection = await session.connection()
        result = await connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        return "\n".join(row[0] for row in result)


def summarize_plan(plan: str) -> str:
    """Execution time, buffers and the plan's nodes (one line each, without their costs)."""
    lines = []
    for line in plan.splitlines():
        stripped = line.strip()
        if stripped.startswith(("Execution Time", "Planning Time")):
            lines.append(stripped)
        elif "->" in line or stripped.startswith(("SubPlan", "InitPlan")) or (line and not line.startswith(" ")):
            node = re.sub(r"\s*\(cost=[^)]*\)", "", line.rstrip())
            lines.append(node)
    buffers = next((line.strip() for line in plan.splitlines() if line.strip().startswith("Buffers:")), "")
    return "\n".join(lines + ([f"top node {buffers}"] if buffers else []))


# --- the page over HTTP --------------------------------------------------------------------------


async def measure_http(base_url: str, tabs: list[str], repeat: int, warmup: int) -> dict:
    """{tab: {"page": [ms], "rows": n, "bytes": n}}: GET /console/conversations?tab=..., logged in."""
    client = await support.console_login(base_url, EMAIL)
    out: dict = {tab: {"page": []} for tab in tabs}
    try:
        for rep in range(warmup + repeat):
            for tab in tabs:
                started = time.perf_counter()
                async with client.get(f"{base_url}/console/conversations", params={"tab": tab},
                                      allow_redirects=False) as response:
                    body = await response.text()
                ms = (time.perf_counter() - started) * 1000
                if response.status != 200:
                    raise RuntimeError(f"GET /console/conversations?tab={tab}: {response.status}\n{body[:500]}")
                if rep >= warmup:
                    out[tab]["page"].append(ms)
                out[tab] |= {"rows": body.count("data-conversation-id="), "bytes": len(body.encode())}
    finally:
        await client.close()
    return out


# --- the run --------------------------------------------------------------------------------------


def stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(ordered), "median": statistics.median(ordered) if ordered else None,
            "p95": common.percentile(ordered, 95), "max": ordered[-1] if ordered else None}


def other_pct(cpu: dict, labels: tuple[str, ...]) -> float:
    """CPU used meanwhile by anything else on the machine, % of one core."""
    ours = cpu.get("self_s", 0.0) + sum(cpu.get(f"{label}_s", 0.0) for label in labels)
    return 100 * (cpu["machine_busy_s"] - ours) / cpu["wall_s"] if cpu.get("wall_s") else 0.0


def run(args: argparse.Namespace) -> dict:
    info = common.machine_info()
    print(f"machine: {common.describe_machine(info)}", flush=True)
    shape = support.Shape(customers=args.customers, active=args.active, resolved=args.resolved,
                          timeline=args.timeline, background=args.background)
    report: dict = {"machine": info, "command": " ".join([Path(sys.executable).name, *sys.argv]), "shape": vars(shape),
                    "repeat": args.repeat, "compare_ref": args.compare_ref}
    workdir = Path(tempfile.mkdtemp(prefix="kizuna-inbox-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        database = stack.enter_context(common.fresh_postgres_database("kizuna_inbox"))
        prefix = f"kizuna-inbox-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        stack.callback(common.redis_delete_prefix, common.REDIS_URL, prefix)
        env = kizuna_env(database, prefix)
        common.run_checked([*CLI, "migrate"], env=env, timeout=300, cwd=workdir)
        staff_id = support.create_staff(CLI, env, EMAIL, cwd=workdir)
        print(f"database {database}: loading {shape.customers:,} customers, {shape.active:,} active and "
              f"{shape.resolved:,} resolved conversations, {shape.active * shape.timeline + shape.background:,} "
              "timeline rows ...", flush=True)
        started = time.perf_counter()
        loaded = asyncio.run(support.load_support_data(common.PG_BENCH_DSN.format(name=database), shape, staff_id))
        loaded["seconds"] = time.perf_counter() - started
        report["loaded"] = loaded
        print(f"  loaded in {loaded['seconds']:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in loaded['timings'].items())}); "
              f"{loaded['counts']}, conversations by status {loaded['by_status']}, the measured member owns "
              f"{loaded['mine']:,} open ones; database {loaded['database_mib']:,} MiB", flush=True)

        if args.quiet_wait > 0:
            busy = common.wait_for_quiet(max_wait=args.quiet_wait)
            if busy >= 0.2:
                print(f"  (machine still busy: {busy:.2f} cores in use by others)", flush=True)
        meter = common.CpuMeter({"postgres": f"pgdb:{database}"})
        meter.start()
        report["in_process"] = asyncio.run(measure_in_process(database, staff_id, args.tabs, args.repeat, args.warmup,
                                                              args.compare_ref))
        cpu = meter.stop()
        report["in_process_cpu"] = cpu | {"other_pct": other_pct(cpu, ("postgres",))}

        port = common.free_port()
        server = common.Server("kizuna serve", [*CLI, "serve", "--port", str(port)], env=env, port=port,
                               log_path=workdir / "serve.log", cwd=workdir)
        stack.callback(server.stop)
        server.start()
        meter = common.CpuMeter({"postgres": f"pgdb:{database}", "serve": [server.pid]})
        meter.start()
        report["http"] = asyncio.run(measure_http(f"http://127.0.0.1:{port}", args.tabs, args.repeat, args.warmup))
        cpu = meter.stop()
        report["http_cpu"] = cpu | {"other_pct": other_pct(cpu, ("postgres", "serve"))}
        server.stop()
    print_report(report, args)
    return report


def print_report(report: dict, args: argparse.Namespace) -> None:
    rows = []
    for tab in args.tabs:
        local, http = report["in_process"][tab], report["http"][tab]
        rows.append((tab, stats(local["inbox"]), stats(local["tab_counts"]), stats(local["plain"]), stats(http["page"]),
                     local["rows"], http["rows"]))
    print(f"\n== {args.repeat} repetitions per tab (after {args.warmup} unmeasured), median / p95 / max ms")
    print(f"{'tab':<9}{'inbox()':>24}{'tab_counts()':>24}{'plain SELECT':>24}{'GET page (HTTP)':>24}  rows inbox/page")
    for tab, inbox, counts, plain, page, n_rows, n_page in rows:
        cells = [f"{s['median']:.1f} / {s['p95']:.1f} / {s['max']:.1f}" for s in (inbox, counts, plain, page)]
        print(f"{tab:<9}" + "".join(f"{cell:>24}" for cell in cells) + f"  {n_rows}/{n_page}")
    if args.compare_ref:
        print(f"inbox() at {args.compare_ref}, interleaved with the above:")
        for tab in args.tabs:
            s = stats(report["in_process"][tab]["inbox_ref"])
            cell = f"{s['median']:.1f} / {s['p95']:.1f} / {s['max']:.1f}"
            print(f"{tab:<9}{cell:>24}")
    counts = report["in_process"][args.tabs[0]]["counts"]
    print(f"tab counts: {counts}")
    for phase in ("in_process_cpu", "http_cpu"):
        cpu = report[phase]
        print(f"{phase.removesuffix('_cpu').replace('_', '-')}: {cpu['wall_s']:.1f} s, other jobs "
              f"{cpu['other_pct']:.0f} % of a core" + ("  <- other jobs used CPU meanwhile" if cpu["other_pct"] > NOISY_OTHER_PCT else ""))
    worst = max(max(stats(report["in_process"][tab]["inbox"])["p95"], stats(report["http"][tab]["page"])["p95"])
                for tab in args.tabs)
    print(f"goal: server time < {GOAL_MS:g} ms: worst p95 (inbox() or the whole page) {worst:.1f} ms: "
          + ("met" if worst < GOAL_MS else "MISSED"))
    for tab in args.tabs:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the inbox query, tab {tab} (summary):")
        print(summarize_plan(report["in_process"][tab]["explain"]))
        if args.compare_ref:
            print(f"\n... and of inbox() at {args.compare_ref}, tab {tab}:")
            print(summarize_plan(report["in_process"][tab]["explain_ref"]))
    sys.stdout.flush()


def markdown(report: dict) -> str:
    """The figures of a saved report (--json) as the table of docs/benchmarks.md."""
    ref = report.get("compare_ref")
    out = ["| tab | inbox() median / p95 ms | " + (f"inbox() at {ref} | " if ref else "")
           + "tab_counts() | plain indexed SELECT | whole page over HTTP | conversations in the tab |",
           "| --- | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if ref else "")]
    for tab, local in report["in_process"].items():
        series = [local["inbox"], *([local["inbox_ref"]] if ref else []), local["tab_counts"], local["plain"],
                  report["http"][tab]["page"]]
        out.append(f"| {tab} | " + " | ".join(f"{s['median']:.1f} / {s['p95']:.1f}" for s in map(stats, series))
                   + f" | {local['counts'].get(tab, '-'):,} |")
    out.append(f"\nother jobs, % of a core: {report['in_process_cpu']['other_pct']:.0f} in-process, "
               f"{report['http_cpu']['other_pct']:.0f} over HTTP")
    return "\n".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers (default 1,000,000)")
    parser.add_argument("--active", type=int, default=10_000, help="pending + open conversations (default 10,000)")
    parser.add_argument("--resolved", type=int, default=40_000, help="resolved conversations (default 40,000)")
    parser.add_argument("--timeline", type=int, default=30,
                        help="timeline rows per customer with an active conversation (default 30)")
    parser.add_argument("--background", type=int, default=1_000_000,
                        help="other timeline rows, over all customers (default 1,000,000)")
    parser.add_argument("--tabs", default=",".join(TABS), help="comma-separated tabs (default pending,mine,all; "
                                                               "resolved also works)")
    parser.add_argument("--repeat", type=int, default=30, help="measured repetitions per tab (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured repetitions first (default 3)")
    parser.add_argument("--quiet-wait", type=float, default=30.0,
                        help="before measuring, wait up to this many seconds for the machine to idle (default 30)")
    parser.add_argument("--compare-ref", metavar="REV",
                        help="also time inbox() of kizuna/storage/conversations.py at this git revision, interleaved "
                             "(in-process only; e.g. 5517d03, before the page was picked first)")
    parser.add_argument("--explain", type=Path, help="write the full EXPLAIN (ANALYZE, BUFFERS) output here")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    args.tabs = [t.strip() for t in args.tabs.split(",") if t.strip()]
    if not args.tabs or not set(args.tabs) <= {*TABS, "resolved"}:
        parser.error("--tabs takes pending, mine, all, resolved")
    if not (1 <= args.repeat <= 1000 and 0 <= args.warmup <= 100 and 1 <= args.active <= args.customers <= 5_000_000
            and 0 <= args.resolved <= args.customers and 1 <= args.timeline <= 500 and 0 <= args.background <= 10_000_000):
        parser.error("bounded on purpose: --repeat <= 1000, --customers <= 5,000,000, --active <= --customers, "
                     "--timeline <= 500, --background <= 10,000,000")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--render"]:  # the tables of saved reports (--json), for docs/benchmarks.md
        for path in argv[1:]:
            report = json.loads(Path(path).read_text())
            print(f"{path}: {common.describe_machine(report['machine'])}\n\n{markdown(report)}\n")
        return 0
    args = parse_args(argv)
    # A background job ignores SIGINT: let SIGTERM stop the server and drop the database too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run(args)
    if args.explain:
        plans = [f"-- tab {tab}\n{report['in_process'][tab]['explain']}" for tab in args.tabs]
        if args.compare_ref:
            plans += [f"-- tab {tab}, inbox() at {args.compare_ref}\n{report['in_process'][tab]['explain_ref']}"
                      for tab in args.tabs]
        args.explain.write_text("\n\n".join(plans) + "\n")
        print(f"\nfull plans written to {args.explain}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
