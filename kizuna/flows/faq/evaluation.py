"""Loading FAQ CSVs and measuring a matcher on labelled queries.

CSV formats (UTF-8, header row):

* FAQ: ``id,question,answer,alternates`` -- alternates separated by ``|``.
* queries: ``query,expected_id`` -- an empty expected_id means the message
  must not be answered.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .matching import FaqDoc, FaqMatcher, MatchResult

__all__ = ["load_faq_csv", "load_queries_csv", "Report", "evaluate"]


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

    def summary(self) -> str:
        return (
            f"answerable {self.n_answerable}: top1 {self.top1_rate:.1%}, answered-right {self.answer_rate:.1%}, "
            f"helpful {self.helpful_rate:.1%}, answered-WRONG {self.answered_wrong}, missed {self.missed} | "
            f"unanswerable {self.n_unanswerable}: not answered {self.reject_rate:.1%} "
            f"(none {self.strict_reject_rate:.1%}), answered {self.rej_answered}"
        )


def evaluate(matcher: FaqMatcher, queries: Iterable[tuple[str, str | None]]) -> Report:
    r = Report()
    for q, exp in queries:
        res = matcher.match(q)
        ids = [c.faq_id for c in res.candidates]
        if exp is not None:
            r.n_answerable += 1
            ok_top = bool(ids) and ids[0] == exp
            r.top1 += ok_top
            if res.outcome == "answer":
                if ok_top:
                    r.answered_right += 1
                else:
                    r.answered_wrong += 1
                    r.failures.append((q, exp, res))
            elif res.outcome == "disambiguate":
                if exp in ids:
                    r.offered_right += 1
                else:
                    r.offered_wrong += 1
                    r.failures.append((q, exp, res))
            else:
                r.missed += 1
                r.failures.append((q, exp, res))
        else:
            r.n_unanswerable += 1
            if res.outcome == "none":
                r.rejected += 1
            elif res.outcome == "disambiguate":
                r.rej_offered += 1
                r.failures.append((q, exp, res))
            else:
                r.rej_answered += 1
                r.failures.append((q, exp, res))
    return r
