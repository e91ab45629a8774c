"""Loading FAQ CSVs, measuring a matcher on labelled queries, and choosing
decision thresholds with an explicit cost model.

CSV formats (UTF-8, header row):

* FAQ: ``id,question,answer,alternates`` -- alternates separated by ``|``.
* queries: ``query,expected_id`` -- an empty expected_id means the message
  must not be answered.

Threshold selection (:func:`choose_thresholds`, :func:`leave_one_domain_out`)
ranks every labelled message once and then replays only the decision for each
candidate :class:`MatchThresholds`, scoring the outcomes with :class:`Costs`
(a wrong answer costs 3x what a missed one does).  Thresholds are picked on
several shops' FAQs at once and checked on a shop left out, never on one
shop's dev set alone.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .matching import FaqDoc, FaqMatcher, MatchResult, MatchThresholds

__all__ = [
    "load_faq_csv",
    "load_queries_csv",
    "Report",
    "evaluate",
    "Costs",
    "RankedSet",
    "rank_queries",
    "report_for",
    "utility",
    "threshold_grid",
    "choose_thresholds",
    "leave_one_domain_out",
]


def load_faq_csv(path: str | Path, *, with_answers: bool = True) -> list[FaqDoc]:
    docs = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            alts = tuple(a.strip() for a in (row.get("alternates") or "").split("|") if a.strip())
            docs.append(FaqDoc(id=row["id"].strip(), question=row["question"].strip(), alternates=alts,
                               category=(row.get("category") or None),
                               answer=(row.get("answer") or "").strip() if with_answers else ""))
    return docs


def load_queries_csv(path: str | Path) -> list[tuple[str, str | None]]:
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            exp = (row.get("expected_id") or "").strip() or None
            out.append((row["query"], exp))
    return out


@dataclass
class Report:
    n_answerable: int = 0
    top1: int = 0  # best candidate is the expected FAQ (whatever the outcome)
    answered_right: int = 0  # outcome answer, right FAQ
    answered_wrong: int = 0  # outcome answer, wrong FAQ  (worst case)
    quick_reply_right: int = 0  # ... of which the right FAQ was among the quick replies (candidates[1:])
    offered_right: int = 0  # disambiguate and the right FAQ is among the offers
    offered_wrong: int = 0  # disambiguate without the right FAQ
    missed: int = 0  # none for an answerable query
    n_unanswerable: int = 0
    rejected: int = 0  # none
    rej_offered: int = 0  # disambiguate on an unanswerable query
    rej_answered: int = 0  # answer on an unanswerable query (worst case)
    failures: list[tuple[str, str | None, MatchResult]] = field(default_factory=list)

    @property
    def top1_rate(self) -> float:
        return self.top1 / self.n_answerable if self.n_answerable else 1.0

    @property
    def helpful_rate(self) -> float:
        """Answered right or offered the right FAQ."""
        return (self.answered_right + self.offered_right) / self.n_answerable if self.n_answerable else 1.0

    @property
    def answer_rate(self) -> float:
        """Answerable messages answered directly with the right FAQ (the
        figure that counts: a choice of questions is not an answer)."""
        return self.answered_right / self.n_answerable if self.n_answerable else 1.0

    @property
    def reject_rate(self) -> float:
        """Unanswerable messages that were not answered (none or a choice)."""
        return (self.rejected + self.rej_offered) / self.n_unanswerable if self.n_unanswerable else 1.0

    @property
    def strict_reject_rate(self) -> float:
        """Unanswerable messages that got ``none``."""
        return self.rejected / self.n_unanswerable if self.n_unanswerable else 1.0

    @property
    def wrong_answer_rate(self) -> float:
        """Share of all *answer* outcomes that were wrong (incl. unanswerable)."""
        n = self.answered_right + self.answered_wrong + self.rej_answered
        return (self.answered_wrong + self.rej_answered) / n if n else 0.0

    def add(self, other: "Report") -> "Report":
        """Sum of two reports (failures concatenated)."""
        out = Report()
        for f in dataclasses.fields(Report):
            a, b = getattr(self, f.name), getattr(other, f.name)
            setattr(out, f.name, a + b)
        return out

    def summary(self) -> str:
        return (
            f"answerable {self.n_answerable}: top1 {self.top1_rate:.1%}, answered-right {self.answer_rate:.1%}, "
            f"helpful {self.helpful_rate:.1%}, answered-WRONG {self.answered_wrong}, missed {self.missed} | "
            f"unanswerable {self.n_unanswerable}: not answered {self.reject_rate:.1%} "
            f"(none {self.strict_reject_rate:.1%}), answered {self.rej_answered}"
        )


def _tally(r: Report, q: str, exp: str | None, res: MatchResult, *, keep_failures: bool = True) -> None:
    ids = [c.faq_id for c in res.candidates]
    if exp is not None:
        r.n_answerable += 1
        ok_top = bool(ids) and ids[0] == exp
        r.top1 += ok_top
        if res.outcome == "answer":
            if ok_top:
                r.answered_right += 1
                return
            r.answered_wrong += 1
            r.quick_reply_right += exp in ids[1:]
        elif res.outcome == "disambiguate":
            if exp in ids:
                r.offered_right += 1
                return
            r.offered_wrong += 1
        else:
            r.missed += 1
    else:
        r.n_unanswerable += 1
        if res.outcome == "none":
            r.rejected += 1
            return
        if res.outcome == "disambiguate":
            r.rej_offered += 1
        else:
            r.rej_answered += 1
    if keep_failures:
        r.failures.append((q, exp, res))


def evaluate(matcher: FaqMatcher, queries: Iterable[tuple[str, str | None]]) -> Report:
    r = Report()
    for q, exp in queries:
        _tally(r, q, exp, matcher.match(q))
    return r


# ---------------------------------------------------------------------------
# choosing thresholds


@dataclass(frozen=True)
class Costs:
    """Value of each outcome, relative to answering an answerable message
    right (+1).  A missed answer (``none``) is worth 0; a wrong answer, or an
    answer to a message that has no FAQ, costs ``wrong`` (3: the customer
    reads something false and a person must repair it); offering the right
    FAQ among 2-3 choices is worth a little, offering choices for small talk
    costs a little."""

    right: float = 1.0
    wrong: float = 3.0
    offered_right: float = 0.25
    offered_unanswerable: float = 0.25
    # a wrong answer whose right FAQ is offered as a quick reply beside it
    # (「こちらの質問でしたか?」); = wrong unless the reply shows them
    wrong_with_quick_reply: float = 3.0


def utility(r: Report, costs: Costs = Costs()) -> float:
    plain_wrong = r.answered_wrong - r.quick_reply_right
    return (costs.right * r.answered_right - costs.wrong * (plain_wrong + r.rej_answered)
            - costs.wrong_with_quick_reply * r.quick_reply_right
            + costs.offered_right * r.offered_right - costs.offered_unanswerable * r.rej_offered)


@dataclass
class RankedSet:
    """A matcher and its labelled messages, ranked once; decisions are
    replayed for any thresholds by :func:`report_for`."""

    matcher: FaqMatcher
    items: list[tuple[str, str | None, tuple]]  # (message, expected id, (ranking, message info))


def rank_queries(matcher: FaqMatcher, queries: Iterable[tuple[str, str | None]]) -> RankedSet:
    return RankedSet(matcher, [(q, exp, matcher._rank(q)) for q, exp in queries])


_NONE = MatchResult("none", (), 0.0)


def report_for(rs: RankedSet, th: MatchThresholds, *, keep_failures: bool = False) -> Report:
    r = Report()
    for q, exp, (scored, msg) in rs.items:
        res = rs.matcher._decide(scored, msg, th) if scored else _NONE
        _tally(r, q, exp, res, keep_failures=keep_failures)
    return r


def threshold_grid(base: MatchThresholds = MatchThresholds(), **axes: Sequence[float]) -> list[MatchThresholds]:
    """Every combination of the given values (``answer=(0.25, 0.3), ...``)."""
    names = list(axes)
    return [dataclasses.replace(base, **dict(zip(names, vals))) for vals in itertools.product(*axes.values())]


def choose_thresholds(
    domains: Mapping[str, RankedSet],
    grid: Sequence[MatchThresholds],
    costs: Costs = Costs(),
) -> tuple[MatchThresholds, float]:
    """The grid point with the highest total utility over all domains (each
    domain's utility per message, so a big query set does not dominate).
    Ties go to the earlier grid point."""
    best: tuple[float, int] | None = None
    for i, th in enumerate(grid):
        u = sum(utility(report_for(rs, th), costs) / max(1, len(rs.items)) for rs in domains.values())
        if best is None or u > best[0] + 1e-12:
            best = (u, i)
    assert best is not None, "empty grid"
    return grid[best[1]], best[0]


def leave_one_domain_out(
    domains: Mapping[str, RankedSet],
    grid: Sequence[MatchThresholds],
    costs: Costs = Costs(),
) -> dict[str, tuple[MatchThresholds, Report]]:
    """For each domain: thresholds chosen on all the *other* domains, and
    the report they give on this one -- an estimate of how the chosen
    thresholds do on a shop nobody tuned on."""
    # per-domain reports for every grid point, computed once
    table = {d: [report_for(rs, th) for th in grid] for d, rs in domains.items()}
    out: dict[str, tuple[MatchThresholds, Report]] = {}
    for d in domains:
        others = [o for o in domains if o != d]
        best_i, best_u = 0, float("-inf")
        for i in range(len(grid)):
            u = sum(utility(table[o][i], costs) / max(1, len(domains[o].items)) for o in others)
            if u > best_u + 1e-12:
                best_i, best_u = i, u
        out[d] = (grid[best_i], table[d][best_i])
    return out
