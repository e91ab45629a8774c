"""FAQ answering through the real pipeline (issue 4): accuracy, reply latency, matching time.

For each knowledge base and query set, this starts Kizuna in this process exactly as
`kizuna serve` does in embedded mode (`create_app`: web app + worker, SQLite by default or
PostgreSQL with `--database-url`), the LINE emulator over real HTTP, imports the FAQ CSV
through `POST /api/v1/faq/import`, then sends every query of the query CSV
(`query,expected_id`; an empty id = must not be answered) as a signed webhook from a new
LINE user and reads the reply captured at the emulator. Queries go one at a time, so the
latency is one inquiry's: webhook POST sent -> reply received by the emulator.

A reply counts as
* **answered right** when a message of it has exactly the expected entry's answer as its text
  (the first message; after a complaint's apology, the second),
* **answered wrong** when it is another entry's answer,
* **offered** when it is the "which question?" choice (quick replies `action=faq&faq=<id>`),
* otherwise not answered (the apology offering a person, the small-talk acknowledgement, or a
  complaint handed to a person without an FAQ answer).
Replies that hand the customer to a person (a complaint) are counted apart ("handed off"):
each query comes from a new LINE user, so the unanswered-in-a-row rule never fires here.

Printed per set, for the FAQ matcher and for a baseline plugged into the same pipeline
(`InquiryService(matcher_factory=...)`): plain BM25 over Sudachi normalised forms that
answers its top entry when the raw score clears a threshold tuned on the cosmetics dev
set (bench/faq_match.py's `PlainBM25Baseline`); it never offers choices.

Then, with a 2,000-entry KB (the cosmetics FAQ + bench/faq_match.py's synthetic entries):
matching time per query (the matcher's `match` call, p50/p99) for both, index build and
rebuild-after-one-edit times, and the dev set through the pipeline inside that KB
(accuracy, latency, and the in-process rebuild after an API edit).

    .venv/bin/python bench/faq_eval.py                      # cosmetics FAQ + dev queries
    .venv/bin/python bench/faq_eval.py --all                # + every other labelled set in tests/flows/data
    .venv/bin/python bench/faq_eval.py --faq my_faq.csv --queries my_queries.csv
    .venv/bin/python bench/faq_eval.py --all --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test

Results: docs/benchmarks.md ("FAQ answering (issue 4)").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common as common  # noqa: E402
import faq_match  # noqa: E402  (the matcher engineer's benchmark: KB generator and baselines)
from aiohttp import ClientSession  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from kizuna.bot.app import create_app  # noqa: E402
from kizuna.bot.keys import SESSIONS, WORKER  # noqa: E402
from kizuna.bot.settings import Settings  # noqa: E402
from kizuna.emulator import Emulator  # noqa: E402
from kizuna.flows.faq import FaqDoc, FaqMatcher  # noqa: E402
from kizuna.flows.faq.evaluation import load_queries_csv  # noqa: E402
from kizuna.flows.faq.inquiry import InquiryService  # noqa: E402
from kizuna.flows.faq.matching import Candidate, MatchResult  # noqa: E402
from kizuna.storage import faq as faq_store  # noqa: E402
from kizuna.storage import texts  # noqa: E402
from kizuna.storage import tokens  # noqa: E402
from kizuna.storage.db import transaction  # noqa: E402
from kizuna.storage.migrate import upgrade  # noqa: E402

DATA = ROOT / "tests" / "flows" / "data"
SECRET = "bench-channel-secret-0123456789abcdef"
ACCESS_TOKEN = "bench-access-token"


def shared_faq_dir() -> Path:
    return faq_match._shared_dir()


def datasets(all_sets: bool) -> list[tuple[str, Path, Path]]:
    shared = shared_faq_dir()
    sets = [("cosmetics dev", shared / "cosmetics_faq.csv", shared / "cosmetics_dev_queries.csv")]
    if all_sets:
        sets += [
            ("cosmetics extra (tuning)", shared / "cosmetics_faq.csv", DATA / "cosmetics_extra_queries.csv"),
            ("cosmetics tune (tuning)", shared / "cosmetics_faq.csv", DATA / "cosmetics_tune_queries.csv"),
            *((f"{shop} (tuning)", DATA / f"{shop}_faq.csv", DATA / f"{shop}_queries.csv")
              for shop in ("restaurant", "gym", "hotel", "apparel", "sweets", "seikotsu", "rental", "carservice")),
            *((f"{shop} (held out)", DATA / f"{shop}_faq.csv", DATA / f"{shop}_queries.csv")
              for shop in ("dental", "salon")),
            *((f"{shop} (fresh)", DATA / f"{shop}_faq.csv", DATA / f"{shop}_queries.csv")
              for shop in ("school", "photo")),
            ("cosmetics fresh (fresh)", shared / "cosmetics_faq.csv", DATA / "cosmetics_fresh_queries.csv"),
        ]
    return sets


# -- the baseline, plugged into the same InquiryService -----------------------------------


class BaselineMatcher:
    """faq_match.PlainBM25Baseline behind the FaqMatcher interface the service uses."""

    threshold = 2.0  # replaced by the tuned value in main()

    def __init__(self, docs, thresholds=None, *, threshold: float | None = None) -> None:
        self.thresholds = thresholds
        if threshold is not None:
            self.threshold = threshold
        self.replace_all(docs)

    @classmethod
    def factory(cls, threshold: float):
        return lambda docs, thresholds=None: cls(docs, thresholds, threshold=threshold)

    def replace_all(self, docs) -> None:
        docs = list(docs)
        self._inner = faq_match.PlainBM25Baseline(docs, self.threshold) if docs else None

    def match(self, text: str) -> MatchResult:
        if self._inner is None:
            return MatchResult("none", (), 0.0)
        best, score = self._inner._top(text)
        if best is None:
            return MatchResult("none", (), 0.0)
        outcome = "answer" if score >= self.threshold else "none"
        return MatchResult(outcome, (Candidate(best, round(score, 4), ""),), score)


# -- the pipeline -------------------------------------------------------------------------


class Pipeline:
    """Kizuna (create_app, embedded worker) + the emulator, both on loopback HTTP."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def start(self) -> "Pipeline":
        self.emulator = Emulator(channel_secret=SECRET, access_token=ACCESS_TOKEN)
        self.emulator_server = TestServer(self.emulator.create_app(), host="127.0.0.1")
        await self.emulator_server.start_server()
        emulator_url = str(self.emulator_server.make_url("")).rstrip("/")
        settings = Settings(
            _env_file=None, line_channel_secret=SECRET, line_channel_access_token=ACCESS_TOKEN,
            line_api_base_url=emulator_url, line_data_api_base_url=emulator_url, database_url=self.database_url,
            redis_url=None, secret_key="bench-secret-key-" + "x" * 32, emulator=False, log_level="WARNING",
        )
        self.server = TestServer(create_app(settings, run_worker=True), host="127.0.0.1")
        await self.server.start_server()
        self.emulator.webhook_url = str(self.server.make_url("/callback"))
        async with transaction(self.server.app[SESSIONS]) as session:
            _token, self.token = await tokens.create(session, name="bench", role="admin")
        self.http = ClientSession()
        return self

    @property
    def services(self):
        return self.server.app[WORKER].processor.services

    def use(self, inquiries: InquiryService) -> None:
        self.services.inquiries = inquiries

    async def api(self, method: str, path: str, **kwargs) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        async with self.http.request(method, str(self.server.make_url(path)), headers=headers, **kwargs) as response:
            return response.status, await response.json()

    async def import_csv(self, data: bytes) -> dict:
        status, body = await self.api("POST", "/api/v1/faq/import", data=data, headers={"Content-Type": "text/csv"})
        if status != 200:
            raise SystemExit(f"import failed ({status}): {json.dumps(body, ensure_ascii=False)[:2000]}")
        return body

    async def warm_up(self) -> float:
        """The first inquiry after a start or a swap builds the index (lazily): its latency."""
        return (await self.ask("送料はいくらですか"))[1]

    async def ask(self, text: str) -> tuple[list[dict], float]:
        user = self.emulator.add_user(display_name="bench")
        started = time.perf_counter()
        result = await self.emulator.send_text(user.user_id, text)
        if result.status != 200:
            raise RuntimeError(f"webhook answered {result.status}")
        delivered = await self.emulator.wait_for_messages(user.user_id, 1, timeout=60)
        latency = time.perf_counter() - started
        return [d.message for d in delivered], latency

    async def close(self) -> None:
        await self.http.close()
        await self.server.close()
        await self.emulator_server.close()


@dataclass
class Score:
    answerable: int = 0
    right: int = 0
    wrong: int = 0
    offered_first: int = 0
    offered_any: int = 0
    missed: int = 0
    unanswerable: int = 0
    not_answered: int = 0
    strict_none: int = 0
    handed_answerable: int = 0  # answerable messages handed to a person (complaints)
    handed_unanswerable: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    first_ms: float = 0.0  # the first inquiry, which builds the index

    def row(self) -> dict:
        a, u = max(1, self.answerable), max(1, self.unanswerable)
        lat = sorted(self.latencies)
        return {
            "answerable": self.answerable, "top1": self.right / a, "offered_first": (self.right + self.offered_first) / a,
            "offered_any": (self.right + self.offered_any) / a, "wrong": self.wrong, "missed": self.missed,
            "unanswerable": self.unanswerable, "not_answered": self.not_answered / u, "none": self.strict_none / u,
            "p50_ms": 1000 * common.percentile(lat, 50), "p99_ms": 1000 * common.percentile(lat, 99),
            "first_ms": self.first_ms, "handed_answerable": self.handed_answerable,
            "handed_unanswerable": self.handed_unanswerable,
        }


async def evaluate(pipe: Pipeline, answers: dict[str, str], queries) -> Score:
    by_text: dict[str, str] = {}
    for faq_id, answer in answers.items():
        by_text.setdefault(answer, faq_id)
    score = Score()
    handed_text = texts.DEFAULTS["support_handoff"]["ja"]
    for query, expected in queries:
        messages, latency = await pipe.ask(query)
        score.latencies.append(latency)
        # The answer is the first message whose text is an entry's answer (a complaint's
        # apology may come before it).
        text = next((m.get("text", "") for m in messages if m.get("text", "") in by_text), messages[0].get("text", ""))
        # The choice: quick replies `action=faq` (on the first message; after a complaint's
        # apology, on the handoff's message).
        choice = next((m for m in messages if (m.get("quickReply") or {}).get("items")), messages[0])
        tapped = [dict(parse_qsl(item["action"].get("data", ""))) for item in (choice.get("quickReply") or {}).get("items", [])]
        offered = [data["faq"] for data in tapped if data.get("action") == "faq" and data.get("faq")]
        answered = by_text.get(text)
        handed = any(m.get("text") == handed_text for m in messages)
        if expected is None:
            score.handed_unanswerable += handed
            score.unanswerable += 1
            if answered is None:
                score.not_answered += 1
                score.strict_none += not offered
            else:
                score.failures.append(f"ANSWERED {query!r} -> {answered}")
            continue
        score.answerable += 1
        score.handed_answerable += handed
        if answered is not None:
            if text == answers.get(expected):
                score.right += 1
            else:
                score.wrong += 1
                score.failures.append(f"WRONG {query!r} -> {answered} (expected {expected})")
        elif offered:
            score.offered_first += offered[0] == expected
            score.offered_any += expected in offered
            if expected not in offered:
                score.failures.append(f"OFFERED {query!r} -> {offered} (expected {expected})")
        else:
            score.missed += 1
            score.failures.append(f"MISSED {query!r} (expected {expected})")
    return score


# -- databases ----------------------------------------------------------------------------


class Database:
    """A fresh, migrated database per pipeline: a SQLite file, or a new PostgreSQL database
    on the server of `--database-url` (dropped afterwards)."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self._cleanup = contextlib.ExitStack()

    async def __aenter__(self) -> str:
        return await asyncio.to_thread(self._enter)  # alembic and asyncpg admin run their own loops

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self._cleanup.close)

    def _enter(self) -> str:
        if self.base_url is None:
            directory = self._cleanup.enter_context(tempfile.TemporaryDirectory(prefix="kizuna-faq-eval-"))
            url = f"sqlite+aiosqlite:///{directory}/kizuna.db"
        else:
            admin_dsn = self.base_url.replace("postgresql+asyncpg://", "postgresql://")
            name = self._cleanup.enter_context(common.fresh_postgres_database("kizuna_faq_eval", admin_dsn))
            url = self.base_url.rsplit("/", 1)[0] + "/" + name
        upgrade(url)
        return url


def systems(baseline: bool) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("FaqMatcher", None)]
    if baseline:
        out += [(f"bm25-plain >= {BaselineMatcher.threshold:g}", BaselineMatcher.factory(BaselineMatcher.threshold)),
                ("bm25-plain always", BaselineMatcher.factory(0.0))]
    return out


async def run_set(database_url: str, faq_csv: bytes, queries, *, baseline: bool) -> dict[str, Score]:
    answers = {e.id: e.answer for e in faq_store.parse_csv(faq_csv).entries}
    pipe = await Pipeline(database_url).start()
    out = {}
    try:
        await pipe.import_csv(faq_csv)
        for name, factory in systems(baseline):
            if factory is not None:
                pipe.use(InquiryService(matcher_factory=factory))
            first = await pipe.warm_up()
            out[name] = await evaluate(pipe, answers, queries)
            out[name].first_ms = first * 1000
    finally:
        await pipe.close()
    return out


# -- 2,000 entries --------------------------------------------------------------------------


def big_kb_csv(cosmetics_csv: bytes, entries: int) -> tuple[bytes, list[FaqDoc]]:
    """The cosmetics FAQ + faq_match's synthetic entries (with a short answer each), as CSV."""
    cosmetics = faq_store.parse_csv(cosmetics_csv).entries
    synthetic = faq_match.synthetic_docs(max(0, entries - len(cosmetics)))
    rows = [(e.id, e.question, e.answer, "|".join(e.alternates)) for e in cosmetics]
    rows += [(d.id, d.question, f"{d.question.rstrip('?')}については、店舗スタッフにお尋ねください。", "|".join(d.alternates))
             for d in synthetic]
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("id", "question", "answer", "alternates"))
    writer.writerows(rows)
    docs = [FaqDoc(r[0], r[1], tuple(a for a in r[3].split("|") if a), None, r[2]) for r in rows]
    return out.getvalue().encode(), docs


def matching_times(docs: list[FaqDoc], workload: list[str], build) -> dict:
    started = time.perf_counter()
    matcher = build(docs)
    built = time.perf_counter() - started
    for text in workload[:20]:
        matcher.match(text)  # warm-up
    times = []
    for text in workload:
        t0 = time.perf_counter()
        matcher.match(text)
        times.append(time.perf_counter() - t0)
    times.sort()
    edited = [FaqDoc(d.id, d.question, d.alternates, d.category, d.answer + ("!" if i == 0 else ""))
              for i, d in enumerate(docs)]
    started = time.perf_counter()
    matcher.replace_all(edited)
    rebuilt = time.perf_counter() - started
    return {"build_s": built, "rebuild_s": rebuilt, "p50_ms": 1000 * common.percentile(times, 50),
            "p99_ms": 1000 * common.percentile(times, 99), "mean_ms": 1000 * statistics.mean(times)}


async def run_big(database_url: str, kb_csv: bytes, answers: dict[str, str], queries) -> tuple[Score, dict]:
    pipe = await Pipeline(database_url).start()
    try:
        await pipe.import_csv(kb_csv)
        inquiries = pipe.services.inquiries
        first = await pipe.warm_up()
        built = inquiries.last_rebuild_seconds
        score = await evaluate(pipe, answers, queries)
        score.first_ms = first * 1000
        # an edit through the API, then one inquiry: the worker rebuilds its index (off the loop)
        status, _ = await pipe.api("PUT", "/api/v1/faq/hours", json={"answer": answers["hours"] + "(祝日も営業)"})
        assert status == 200
        _messages, after_edit = await pipe.ask("営業時間を教えて")
        return score, {"build_s": built, "rebuild_s": inquiries.last_rebuild_seconds, "builds": inquiries.rebuilds,
                       "after_edit_ms": after_edit * 1000}
    finally:
        await pipe.close()


# -- output ---------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, str, dict]]) -> None:
    header = (f"{'query set':34s} {'system':20s} {'ans.':>4s} {'top-1':>6s} {'right 1st':>9s} {'offered':>7s} "
              f"{'wrong':>5s} {'unans.':>6s} {'not ans.':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'1st ms':>7s}")
    print(header)
    print("-" * len(header))
    for name, system, r in rows:
        print(f"{name:34s} {system:20s} {r['answerable']:4d} {r['top1']:6.1%} {r['offered_first']:9.1%} "
              f"{r['offered_any']:7.1%} {r['wrong']:5d} {r['unanswerable']:6d} {r['not_answered']:8.1%} "
              f"{r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['first_ms']:7.0f}")


async def main_async(args) -> dict:
    shared = shared_faq_dir()
    cosmetics_csv = (shared / "cosmetics_faq.csv").read_bytes()
    dev = load_queries_csv(shared / "cosmetics_dev_queries.csv")
    cosmetics_docs = [FaqDoc(e.id, e.question, e.alternates, None, e.answer)
                      for e in faq_store.parse_csv(cosmetics_csv).entries]
    # the baseline's threshold, tuned on the dev set (as bench/faq_match.py does)
    BaselineMatcher.threshold = faq_match.tune_threshold(faq_match.PlainBM25Baseline, cosmetics_docs, dev,
                                                         [x / 4 for x in range(1, 40)])
    if args.faq or args.queries:
        sets = [("custom", Path(args.faq) if args.faq else shared / "cosmetics_faq.csv",
                 Path(args.queries) if args.queries else shared / "cosmetics_dev_queries.csv")]
    else:
        sets = datasets(args.all)

    results: dict = {"machine": common.describe_machine(common.machine_info()),
                     "backend": "PostgreSQL" if args.database_url else "SQLite", "baseline_threshold": BaselineMatcher.threshold,
                     "sets": [], "failures": {}}
    rows = []
    for name, faq_path, queries_path in sets:
        queries = load_queries_csv(queries_path)
        async with Database(args.database_url) as url:
            scores = await run_set(url, faq_path.read_bytes(), queries, baseline=not args.no_baseline)
        for system, score in scores.items():
            rows.append((name, system, score.row()))
            results["sets"].append({"set": name, "system": system, **score.row()})
            results["failures"][f"{name} / {system}"] = score.failures
        print(f"... {name}: done", file=sys.stderr)

    big: dict = {}
    if args.entries:
        kb_csv, docs = big_kb_csv(cosmetics_csv, args.entries)
        pool = [q for q, _ in dev]
        for _name, _faq, queries_path in datasets(True)[1:]:
            pool += [q for q, _ in load_queries_csv(queries_path)]
        rnd = random.Random(1)
        workload = [rnd.choice(pool) for _ in range(args.workload)]
        big["FaqMatcher"] = matching_times(docs, workload, lambda d: FaqMatcher(d))
        big["bm25-plain"] = matching_times(docs, workload, lambda d: BaselineMatcher(d))
        answers = {d.id: d.answer for d in docs}
        async with Database(args.database_url) as url:
            score, worker = await run_big(url, kb_csv, answers, dev)
        big["pipeline_dev"] = score.row()
        big["worker"] = worker
        results["big_kb"] = {"entries": len(docs), **big}
        results["failures"][f"cosmetics dev in {len(docs)}-entry KB"] = score.failures

    print(f"FAQ answering through the pipeline ({results['backend']}, create_app + embedded worker, emulator over HTTP)")
    print(f"machine: {results['machine']}")
    print(f"baseline: bm25-plain, answers when raw BM25 >= {BaselineMatcher.threshold} (tuned on the cosmetics dev set)")
    print()
    print_table(rows)
    print()
    print("top-1: answered with the expected entry's answer text; right 1st: that, or offered the choice with the")
    print("expected entry first; offered: answered right or the expected entry among the 2-3 choices; wrong: answered")
    print("with another entry's answer (count); not ans.: unanswerable messages that got no FAQ answer (apology with")
    print("a person offered, small-talk reply, or a choice); p50/p99: webhook POST -> reply at the emulator;")
    print("1st: the first inquiry after start (or after plugging the system in), which builds the index.")
    print()
    print("Handed to a person (complaints; each query is a new customer, so never the unanswered-in-a-row rule):")
    for name, system, r in rows:
        if system == "FaqMatcher":
            print(f"  {name:34s} answerable {r['handed_answerable']:3d}   unanswerable {r['handed_unanswerable']:3d}")
    if big:
        print()
        print(f"{results['big_kb']['entries']}-entry KB (cosmetics + synthetic), workload {args.workload} queries:")
        for system in ("FaqMatcher", "bm25-plain"):
            b = big[system]
            print(f"  {system:20s} match p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms (mean {b['mean_ms']:.2f}); "
                  f"build {b['build_s'] * 1000:.0f} ms, rebuild after one edit {b['rebuild_s'] * 1000:.0f} ms")
        d = big["pipeline_dev"]
        print(f"  pipeline, cosmetics dev inside this KB: top-1 {d['top1']:.1%}, right 1st {d['offered_first']:.1%}, "
              f"offered {d['offered_any']:.1%}, wrong {d['wrong']}, not answered {d['not_answered']:.1%}; "
              f"reply p50 {d['p50_ms']:.1f} ms, p99 {d['p99_ms']:.1f} ms")
        w = big["worker"]
        print(f"  worker (asyncio.to_thread): first build {w['build_s'] * 1000:.0f} ms (first inquiry's reply "
              f"{d['first_ms']:.0f} ms); rebuild after an API edit {w['rebuild_s'] * 1000:.0f} ms (that inquiry's "
              f"reply {w['after_edit_ms']:.0f} ms); {w['builds']} builds in the run")
    if args.show_failures:
        print()
        for key, items in results["failures"].items():
            if items:
                print(f"{key}:")
                for item in items:
                    print(f"  {item}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faq", help="FAQ CSV (id,question,answer,alternates); default the cosmetics FAQ")
    parser.add_argument("--queries", help="query CSV (query,expected_id); default the cosmetics dev set")
    parser.add_argument("--all", action="store_true", help="also every other labelled set in tests/flows/data")
    parser.add_argument("--database-url", help="PostgreSQL server to use instead of SQLite (a fresh database is created)")
    parser.add_argument("--entries", type=int, default=2000, help="KB size for the matching-time figures (0: skip)")
    parser.add_argument("--workload", type=int, default=400, help="queries timed at that size")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.database_url and not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be postgresql+asyncpg://...")
    results = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
