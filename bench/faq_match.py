"""Benchmark: FAQ matching at 2,000 entries, against two baselines; quality on
every labelled set; threshold calibration.

Run:  .venv/bin/python bench/faq_match.py [--entries 2000] [--queries 400] [--answers]
      .venv/bin/python bench/faq_match.py --quality      # only the per-set quality table
      .venv/bin/python bench/faq_match.py --calibrate    # re-choose the thresholds (~1 min)

Builds a knowledge base of --entries FAQs: the cosmetics FAQ (shared/data)
plus synthetic entries generated from varied Japanese templates (subjects x
aspects x question frames; realistic length, 0-2 alternates each), then prints

* load times: Sudachi dictionary, first analysis, index build;
* index build time and per-query matching time (p50/p99) for
  - ``FaqMatcher``  (Sudachi units + bm25s + confidence model),
  - ``bm25-plain``  (bm25s over Sudachi normalised forms, no extras; answers
    when the raw BM25 score clears a threshold tuned on the dev set),
  - ``bigram-jaccard`` (character-bigram Jaccard scan over every question and
    alternate, with a tuned threshold);
* accuracy of all three on the cosmetics dev set, both against the cosmetics
  FAQ alone and inside the 2,000-entry KB (where the synthetic entries are
  distractors);
* the matcher's quality on every labelled set (tests/flows/data): answered
  right (the figure that counts -- a choice of questions is not an answer),
  wrong answers, right FAQ offered among choices, and for unanswerable
  messages how many were not answered.  Roles (tests/flows/data/README.md):
  *tuning* sets chose the thresholds and their failures were read; dental and
  salon are *held out* (totals only); school, photo studio and cosmetics fresh
  are *fresh* (written by writers who never saw the matcher, never read).

``--calibrate`` ranks the labelled messages of the tuning shops once and
replays the decision for a grid of :class:`MatchThresholds`, scoring outcomes
with :class:`kizuna.flows.faq.evaluation.Costs` (wrong answer = 3x a missed
one): leave-one-shop-out estimate first, then the thresholds chosen on all
tuning shops (ties go to the more cautious grid point), and the held-out sets
under them.

No assertions: it prints tables.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kizuna.flows.faq import FaqDoc, FaqMatcher, MatchThresholds  # noqa: E402
from kizuna.flows.faq.analysis import get_analyzer  # noqa: E402
from kizuna.flows.faq.evaluation import (  # noqa: E402
    Costs,
    Report,
    choose_thresholds,
    evaluate,
    leave_one_domain_out,
    load_faq_csv,
    load_queries_csv,
    rank_queries,
    report_for,
    threshold_grid,
    utility,
)
from kizuna.flows.faq.normalize import char_ngrams, fold_kana, strip_sentence_endings  # noqa: E402

DATA = ROOT / "tests" / "flows" / "data"


def _shared_dir() -> Path:
    for p in (ROOT / "shared" / "data" / "faq", ROOT.parent / "shared" / "data" / "faq", Path("/work/shared/data/faq")):
        if (p / "cosmetics_faq.csv").exists():
            return p
    raise SystemExit("cosmetics_faq.csv not found (looked in shared/data/faq)")


# ---------------------------------------------------------------------------
# synthetic knowledge base

_SUBJECTS = [
    "駐輪場", "ベビーカー", "車椅子", "宅配ボックス", "会議室", "貸しロッカー", "コインランドリー", "送迎バス",
    "ポイントカード", "スタンプカード", "回数券", "年間パスポート", "オンライン講座", "体験レッスン", "無料相談",
    "出張サービス", "修理受付", "下取りサービス", "メンテナンス", "延長保証", "レンタル品", "試着室", "採寸",
    "お直し", "名入れ", "刻印", "のし紙", "熨斗", "法人注文", "大口注文", "予約注文", "取り置き", "店頭受け取り",
    "定期購入", "サブスクリプション", "アプリ", "会員証", "電子マネー", "分割払い", "後払い", "銀行振込",
    "請求書", "見積書", "納品書", "保証書", "取扱説明書", "交換部品", "消耗品", "付属品", "替え刃", "電池",
    "充電器", "ケース", "カバー", "フィルム", "インク", "用紙", "ラベル", "シール", "ステッカー", "カタログ",
    "サンプル", "試供品", "ノベルティ", "福袋", "限定品", "新作", "季節商品", "アウトレット", "訳あり品",
    "ペット同伴", "授乳室", "おむつ替え", "喫煙所", "充電スポット", "無料WiFi", "コンセント", "更衣室",
    "シャワールーム", "サウナ", "岩盤浴", "プール", "ジャグジー", "マッサージチェア", "日焼けマシン",
    "駐車券", "送迎", "タクシー", "シャトルバス", "手荷物預かり", "クローク", "傘の貸し出し", "忘れ物窓口",
    "英語対応", "中国語対応", "筆談", "手話", "点字メニュー", "アレルギー表", "カロリー表示", "原材料",
    "産地", "賞味期限", "消費期限", "保存方法", "解凍方法", "温め方", "使用方法", "お手入れ方法", "洗濯方法",
    "サイズ交換", "色違い", "在庫確認", "取り寄せ", "入荷予定", "発売日", "予約特典", "購入特典", "会員特典",
    "紹介制度", "友達紹介", "口コミ投稿", "レビュー", "アンケート", "メルマガ", "公式アプリ", "公式サイト",
    "オンライン予約", "電話予約", "当日予約", "キャンセル待ち", "団体予約", "貸切プラン", "記念日プラン",
    "誕生日特典", "学割", "シニア割", "ペア割", "早割", "平日割", "夜割", "回数券割引", "年会費", "入会金",
    "事務手数料", "解約金", "違約金", "延滞料", "保証金", "敷金", "礼金", "管理費", "更新料", "仲介手数料",
]
_ASPECTS = [
    "料金", "値段", "利用時間", "受付時間", "申し込み方法", "手続き", "必要書類", "対象年齢", "有効期限", "支払い方法",
    "キャンセル", "変更", "予約", "場所", "台数", "在庫", "条件", "上限", "割引", "特典", "注意事項", "保証期間",
    "対応エリア", "所要時間", "締め切り", "持ち物", "再発行", "返金", "払い戻し", "延長",
]
_FRAMES = [
    "{s}の{a}はいくらですか", "{s}の{a}を教えてください", "{s}の{a}について知りたい", "{s}は{a}できますか",
    "{s}の{a}はどうなっていますか", "{s}の{a}はありますか", "{s}を利用するときの{a}は?", "{s}の{a}を確認したい",
    "{s}に{a}はありますか", "{s}の{a}が知りたいです", "{s}の{a}はどこで分かりますか", "{s}の{a}は必要ですか",
]
_ALT_FRAMES = ["{s}の{a}", "{s} {a}", "{s}の{a}って?", "{a}({s})"]


def synthetic_docs(n: int, seed: int = 7) -> list[FaqDoc]:
    rnd = random.Random(seed)
    pairs = [(s, a) for s in _SUBJECTS for a in _ASPECTS]
    rnd.shuffle(pairs)
    out = []
    for i, (s, a) in enumerate(pairs[:n]):
        q = rnd.choice(_FRAMES).format(s=s, a=a)
        alts = tuple(rnd.choice(_ALT_FRAMES).format(s=s, a=a) for _ in range(rnd.choice((0, 0, 1, 1, 2))))
        out.append(FaqDoc(id=f"syn{i:04d}", question=q, alternates=tuple(dict.fromkeys(alts))))
    return out


def build_kb(n_entries: int) -> tuple[list[FaqDoc], list[FaqDoc]]:
    shared = _shared_dir()
    cosmetics = load_faq_csv(shared / "cosmetics_faq.csv")
    # Other shops' FAQs are left out on purpose: their "支払い方法" or "営業時間"
    # entries would be right answers to the dev queries too.
    kb = cosmetics + synthetic_docs(max(0, n_entries - len(cosmetics)))
    return cosmetics, kb[:n_entries]


# ---------------------------------------------------------------------------
# baselines


class JaccardBaseline:  # noqa: D101
    """Character-bigram Jaccard over every question/alternate (after the same
    normalisation and sentence-ending stripping), linear scan."""

    def __init__(self, docs, threshold: float = 0.3):
        self.threshold = threshold
        self.rows = []
        for d in docs:
            for t in (d.question, *d.alternates):
                self.rows.append((d.id, set(char_ngrams(fold_kana(strip_sentence_endings(t)), 2))))

    def best(self, text: str) -> str | None:
        return self._scan(text)[0]

    def match(self, text: str) -> tuple[str | None, float]:
        best, best_s = self._scan(text)
        return (best if best_s >= self.threshold else None), best_s

    def _scan(self, text: str) -> tuple[str | None, float]:
        q = set(char_ngrams(fold_kana(strip_sentence_endings(text)), 2))
        best, best_s = None, 0.0
        if not q:
            return None, 0.0
        for fid, g in self.rows:
            if not g:
                continue
            s = len(q & g) / len(q | g)
            if s > best_s:
                best, best_s = fid, s
        return best, best_s


class PlainBM25Baseline:
    """bm25s over Sudachi normalised forms of content words (particles etc.
    dropped), no synonyms / readings / confidence model: answer the top
    document if its raw BM25 score clears a threshold."""

    def __init__(self, docs, threshold: float = 2.0):
        import bm25s

        self.threshold = threshold
        an = get_analyzer()
        self.ids = []
        corpus = []
        for d in docs:
            for t in (d.question, *d.alternates):
                self.ids.append(d.id)
                corpus.append([u.norm for u in an.analyze(t).units] or ["<empty>"])
        self.r = bm25s.BM25()
        self.r.index(corpus, show_progress=False)
        self.an = an

    def _top(self, text: str) -> tuple[str | None, float]:
        toks = [u.norm for u in self.an.analyze(text).units]
        toks = [t for t in toks if t in self.r.vocab_dict]
        if not toks:
            return None, 0.0
        scores = self.r.get_scores(toks)
        i = int(scores.argmax())
        return self.ids[i], float(scores[i])

    def best(self, text: str) -> str | None:
        return self._top(text)[0]

    def match(self, text: str) -> tuple[str | None, float]:
        best, s = self._top(text)
        return (best if s >= self.threshold else None), s


# ---------------------------------------------------------------------------


def _pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _fmt_t(sec: float) -> str:
    return f"{sec * 1e6:.0f} µs" if sec < 1e-3 else f"{sec * 1e3:.2f} ms"


class Acc:
    """top1: best guess right (whatever the decision); right: answered with
    the right FAQ; helpful: right, or offered among choices; wrong: answers
    that were wrong (incl. answering an unanswerable message); rej: share of
    unanswerable messages not answered."""

    def __init__(self) -> None:
        self.a = self.top1 = self.right = self.helpful = self.wrong = self.u = self.rej = 0

    def add(self, exp, best, outcome, offered=()) -> None:
        if exp is None:
            self.u += 1
            if outcome == "answer":
                self.wrong += 1
            else:
                self.rej += 1
            return
        self.a += 1
        self.top1 += best == exp
        if outcome == "answer":
            if best == exp:
                self.right += 1
                self.helpful += 1
            else:
                self.wrong += 1
        elif outcome == "disambiguate" and exp in offered:
            self.helpful += 1

    def cells(self) -> str:
        a = max(1, self.a)
        return (f"{self.top1 / a:>6.1%} {self.right / a:>7.1%} {self.helpful / a:>7.1%} {self.wrong:>5d} "
                f"{self.rej / max(1, self.u):>6.1%}")


def run_acc(system: str, obj, queries) -> Acc:
    acc = Acc()
    for q, exp in queries:
        if system == "FaqMatcher":
            r = obj.match(q)
            ids = [c.faq_id for c in r.candidates]
            acc.add(exp, ids[0] if ids else None, r.outcome, ids)
        else:
            answered, best = obj.match(q)[0], obj.best(q)
            acc.add(exp, best, "answer" if answered else "none")
    return acc


def tune_threshold(cls, docs, queries, grid):
    best = None
    for th in grid:
        b = cls(docs, th)
        acc = run_acc(cls.__name__, b, queries)
        score = acc.right - 2 * acc.wrong + acc.rej
        if best is None or score > best[0]:
            best = (score, th)
    return best[1]


# ---------------------------------------------------------------------------
# quality on the labelled sets and threshold calibration

# (name, FAQ csv, query csvs, with answer texts, role)
def labelled_sets() -> list[tuple[str, Path, list[Path], bool, str]]:
    shared = _shared_dir()
    cos = shared / "cosmetics_faq.csv"
    return [
        ("dev (questions only)", cos, [shared / "cosmetics_dev_queries.csv"], False, "dev"),
        ("dev", cos, [shared / "cosmetics_dev_queries.csv"], True, "dev"),
        ("cosmetics extra", cos, [DATA / "cosmetics_extra_queries.csv"], True, "tuning"),
        ("cosmetics tune", cos, [DATA / "cosmetics_tune_queries.csv"], True, "tuning"),
        ("restaurant", DATA / "restaurant_faq.csv", [DATA / "restaurant_queries.csv"], True, "tuning"),
        ("gym", DATA / "gym_faq.csv", [DATA / "gym_queries.csv"], True, "tuning"),
        ("hotel", DATA / "hotel_faq.csv", [DATA / "hotel_queries.csv"], True, "tuning"),
        ("dental", DATA / "dental_faq.csv", [DATA / "dental_queries.csv"], True, "held out"),
        ("salon", DATA / "salon_faq.csv", [DATA / "salon_queries.csv"], True, "held out"),
        ("apparel", DATA / "apparel_faq.csv", [DATA / "apparel_queries.csv"], True, "tuning"),
        ("sweets", DATA / "sweets_faq.csv", [DATA / "sweets_queries.csv"], True, "tuning"),
        ("seikotsu", DATA / "seikotsu_faq.csv", [DATA / "seikotsu_queries.csv"], True, "tuning"),
        ("rental", DATA / "rental_faq.csv", [DATA / "rental_queries.csv"], True, "tuning"),
        ("carservice", DATA / "carservice_faq.csv", [DATA / "carservice_queries.csv"], True, "tuning"),
        ("school", DATA / "school_faq.csv", [DATA / "school_queries.csv"], True, "fresh"),
        ("cosmetics fresh", cos, [DATA / "cosmetics_fresh_queries.csv"], True, "fresh"),
        ("photo studio", DATA / "photo_faq.csv", [DATA / "photo_queries.csv"], True, "fresh"),
    ]


def _row(name: str, role: str, r: Report) -> str:
    n, u = max(1, r.n_answerable), max(1, r.n_unanswerable)
    return (f"{name:22s} {role:8s} | {r.n_answerable:3d} {r.top1_rate:6.1%} {r.answered_right:3d} {r.answer_rate:6.1%} "
            f"{r.answered_wrong:5d} {r.offered_right / n:7.1%} | {r.n_unanswerable:3d} {r.reject_rate:6.1%} "
            f"{r.strict_reject_rate:6.1%} {r.rej_answered:4d}")


QUALITY_HEADER = (f"{'set':22s} {'role':8s} | {'n':>3s} {'top1':>6s} {'right':>10s} {'wrong':>5s} {'offered':>7s} | "
                  f"{'n':>3s} {'not-ans':>6s} {'none':>6s} {'ans':>4s}")


def print_quality(thresholds: MatchThresholds = MatchThresholds()) -> None:
    print("Quality per labelled set (answerable: top1 = best guess right, right = answered directly with the right")
    print("FAQ, wrong = answered with a wrong FAQ, offered = right FAQ among 2-3 choices; unanswerable: not-ans =")
    print("not answered (none or choices), none = handed over, ans = answered anyway):")
    print(QUALITY_HEADER)
    print("-" * len(QUALITY_HEADER))
    an = get_analyzer()
    for name, faq, queries, answers, role in labelled_sets():
        m = FaqMatcher(load_faq_csv(faq, with_answers=answers), thresholds, analyzer=an)
        r = evaluate(m, [q for p in queries for q in load_queries_csv(p)])
        print(_row(name, role, r))


def calibration_grid() -> list[MatchThresholds]:
    # cautious values first on every axis, so that ties go to the cautious point
    return threshold_grid(
        MatchThresholds(),
        answer=(0.4, 0.35, 0.3, 0.25, 0.2),
        margin=(0.18, 0.15, 0.12, 0.09, 0.06),
        min_evidence=(0.55, 0.4, 0.3),
        disambiguate=(0.27, 0.2),
        statement_extra=(1.01, 0.5, 0.3, 0.1, 0.0),
        statement_offer=(1.0, 0.0),
        tie_answer=(1.01, 0.6, 0.45),
        tie_margin=(0.04, 0.02),
    )


def calibrate() -> None:
    an = get_analyzer()
    sets = labelled_sets()
    # tuning shops: every dev/tuning set; the cosmetics ones (dev, extra, tune) are one shop
    tuning: dict[str, list] = {}
    for name, faq, queries, answers, role in sets:
        if role not in ("dev", "tuning") or not answers:
            continue
        shop = "cosmetics" if faq.name.startswith("cosmetics") else name
        tuning.setdefault(shop, [faq, []])[1].extend(queries)
    ranked = {}
    for shop, (faq, queries) in tuning.items():
        m = FaqMatcher(load_faq_csv(faq), analyzer=an)
        ranked[shop] = rank_queries(m, [q for p in queries for q in load_queries_csv(p)])
    grid = calibration_grid()
    for label, costs in (("wrong answer = 3x a miss", Costs()),
                         ("... but 1.5x when the right FAQ is a quick reply beside it", Costs(wrong_with_quick_reply=1.5))):
        t0 = time.perf_counter()
        print(f"Cost model: {label}; {len(grid)} grid points, {sum(len(r.items) for r in ranked.values())} messages")
        lodo = leave_one_domain_out(ranked, grid, costs)
        total = Report()
        for shop, (th, r) in lodo.items():
            total = total.add(r)
            print(f"  left out {shop:10s} {r.summary()}")
        print(f"  leave-one-shop-out total: {total.summary()}; utility {utility(total, costs):.2f}")
        th, u = choose_thresholds(ranked, grid, costs)
        keys = ("answer", "margin", "min_evidence", "disambiguate", "statement_extra", "statement_offer",
                "tie_answer", "tie_margin")
        print("  chosen on all tuning shops:", ", ".join(f"{k}={getattr(th, k)}" for k in keys),
              f"({time.perf_counter() - t0:.0f} s)")
        for name, faq, queries, answers, role in sets:
            if role in ("held out", "fresh"):
                m = FaqMatcher(load_faq_csv(faq), analyzer=an)
                r = report_for(rank_queries(m, [q for p in queries for q in load_queries_csv(p)]), th)
                print(f"  {name} ({role}) under them: {r.summary()}")
        print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--answers", action="store_true",
                    help="also give FaqMatcher the answer texts (optional FaqDoc.answer; baselines never use them)")
    ap.add_argument("--quality", action="store_true", help="only the per-set quality table")
    ap.add_argument("--calibrate", action="store_true", help="re-choose the thresholds by cross-validation")
    args = ap.parse_args()

    if args.calibrate:
        calibrate()
        return
    if args.quality:
        print_quality()
        return

    shared = _shared_dir()
    dev = load_queries_csv(shared / "cosmetics_dev_queries.csv")
    t0 = time.perf_counter()
    import sudachipy  # noqa: F401  (import cost, counted with the dictionary)
    from kizuna.flows.faq.analysis import _get_dictionary

    _get_dictionary()
    t_dict = time.perf_counter() - t0
    t0 = time.perf_counter()
    get_analyzer().analyze("ウォームアップ")
    t_first = time.perf_counter() - t0
    cosmetics, kb = build_kb(args.entries)
    if not args.answers:
        strip = lambda ds: [FaqDoc(d.id, d.question, d.alternates, d.category) for d in ds]  # noqa: E731
        cosmetics, kb = strip(cosmetics), strip(kb)
    n_texts = sum(1 + len(d.alternates) for d in kb)

    # query workload: dev queries + every labelled message in tests/flows/data, drawn at random
    pool = [q for q, _ in dev]
    for p in sorted(DATA.glob("*_queries.csv")):
        pool += [q for q, _ in load_queries_csv(p)]
    rnd = random.Random(1)
    workload = [rnd.choice(pool) for _ in range(args.queries)]

    # thresholds for the baselines, tuned on the dev set against the cosmetics FAQ
    jac_th = tune_threshold(JaccardBaseline, cosmetics, dev, [x / 100 for x in range(5, 60, 5)])
    bm_th = tune_threshold(PlainBM25Baseline, cosmetics, dev, [x / 4 for x in range(1, 40)])
    extra_p = DATA / "cosmetics_extra_queries.csv"
    extra = load_queries_csv(extra_p) if extra_p.exists() else []

    rows = []
    systems = [
        ("FaqMatcher", lambda docs: FaqMatcher(docs), lambda m, q: m.match(q)),
        ("bm25-plain", lambda docs: PlainBM25Baseline(docs, bm_th), lambda m, q: m.match(q)),
        ("bigram-jaccard", lambda docs: JaccardBaseline(docs, jac_th), lambda m, q: m.match(q)),
    ]
    for name, build, run in systems:
        small = build(cosmetics)
        acc_s = run_acc(name, small, dev)
        acc_x = run_acc(name, small, extra) if extra else None
        t0 = time.perf_counter()
        big = build(kb)
        t_build = time.perf_counter() - t0
        acc_b = run_acc(name, big, dev)
        for q in workload[:20]:
            run(big, q)  # warm-up
        times = []
        for q in workload:
            t = time.perf_counter()
            run(big, q)
            times.append(time.perf_counter() - t)
        rows.append((name, t_build, _pct(times, 50), _pct(times, 99), statistics.mean(times), acc_s, acc_x, acc_b))

    # incremental update cost of the real matcher at full size
    m = FaqMatcher(kb)
    t0 = time.perf_counter()
    m.upsert(FaqDoc("new_entry", "新しいよくある質問はこれですか", ("追加した質問",)))
    t_upsert = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.remove("new_entry")
    t_remove = time.perf_counter() - t0
    # explicit disambiguation share on dev (real matcher, small KB)
    small = FaqMatcher(cosmetics)
    outcomes = [small.match(q).outcome for q, _ in dev]

    print(f"KB: {len(kb)} FAQ entries, {n_texts} questions+alternates "
          f"({'with answer texts' if args.answers else 'questions+alternates only'}); workload {len(workload)} queries; "
          f"Sudachi dictionary load {_fmt_t(t_dict)}, first analysis {_fmt_t(t_first)}")
    print(f"baseline thresholds tuned on dev: bm25-plain raw score >= {bm_th}, jaccard >= {jac_th}")
    print()
    acc_hdr = f"{'top1':>6s} {'right':>7s} {'helpful':>7s} {'wrong':>5s} {'reject':>6s}"
    print(f"{'':16s} {'':>9s} {'':>9s} {'':>9s} | {'dev set, 35-entry KB':^36s} | "
          f"{'extra phrasings, 35-entry KB':^36s} | {'dev set, ' + str(len(kb)) + '-entry KB':^36s}")
    hdr = f"{'system':16s} {'build':>9s} {'p50':>9s} {'p99':>9s} | {acc_hdr} | {acc_hdr} | {acc_hdr}"
    print(hdr)
    print("-" * len(hdr))
    for name, tb, p50, p99, mean, a_s, a_x, a_b in rows:
        print(f"{name:16s} {_fmt_t(tb):>9s} {_fmt_t(p50):>9s} {_fmt_t(p99):>9s} | {a_s.cells()} | "
              f"{a_x.cells() if a_x else ' ' * 35} | {a_b.cells()}")
    print()
    print("build/p50/p99: index build and per-query time on the big KB.  top1: best guess right; right: answered")
    print("with the right FAQ; helpful: right or offered among 2-3 choices; wrong: wrong answers (incl. answering")
    print("an unanswerable message, count); reject: unanswerable messages not answered.")
    print(f"FaqMatcher on dev (35-entry KB): outcomes {dict((o, outcomes.count(o)) for o in set(outcomes))}")
    print(f"FaqMatcher at {len(kb)} entries: upsert {_fmt_t(t_upsert)}, remove {_fmt_t(t_remove)} (full index rebuild)")
    print()
    print_quality()


if __name__ == "__main__":
    main()
