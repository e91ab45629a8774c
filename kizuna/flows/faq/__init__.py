"""FAQ matching for Kizuna: answer the questions a shop keeps getting, and
know when not to.

Public interface::

    from kizuna.flows.faq import FaqDoc, FaqMatcher, MatchThresholds

    matcher = FaqMatcher([
        FaqDoc("shipping_fee", "送料はいくらですか", alternates=("送料無料になる条件は?",),
               answer="全国一律550円です。"),          # answer: optional, weak evidence
    ])
    result = matcher.match("送料っていくら?")
    result.outcome      # "answer" | "disambiguate" | "none"
    result.candidates   # (Candidate(faq_id, score, matched_text), ...) best first
    result.score        # confidence of the best candidate, 0..1

    matcher.upsert(FaqDoc(...)); matcher.remove("shipping_fee"); matcher.replace_all([...])

``match`` is synchronous, CPU-only and sub-millisecond (call it directly from
async code).  ``upsert``/``remove``/``replace_all`` rebuild the index
(~0.2 s at 2,000 entries; run them via ``asyncio.to_thread`` when serving).
The Sudachi dictionary is loaded once per process and shared.

Modules: :mod:`.normalize` (text clean-up), :mod:`.analysis` (Sudachi ->
content units), :mod:`.matching` (index, confidence, decision),
:mod:`.evaluation` (CSV loaders and metrics).
"""

from .matching import Candidate, FaqDoc, FaqMatcher, MatchResult, MatchThresholds
from .normalize import fold_kana, normalize

__all__ = [
    "Candidate",
    "FaqDoc",
    "FaqMatcher",
    "MatchResult",
    "MatchThresholds",
    "fold_kana",
    "normalize",
]
