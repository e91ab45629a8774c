"""Keyword rules: operator-set patterns checked before the FAQ.

A rule matches a message by ``exact`` (the whole message), ``contains`` (anywhere in
it) or ``regex`` (``re.search``, case-insensitive). Both sides are compared after
NFKC normalisation (full/half width folded) and lower-casing, and only the first
1,000 characters of a message are looked at.

Regular expressions run in Python's ``re``, which has no timeout, so a pattern is
checked on save (``check_pattern``) for what makes backtracking explode on a long
message: a quantifier inside a quantified group (``(a+)+``), alternation inside a
quantified group (``(a|ab)*``), back-references and conditionals, and -- because
``.*.*x`` is already quadratic per start position -- an estimate of the work per
message: the product of the quantifiers' widths (an unbounded one counts as the
1,000 characters it could span) times the 1,000 start positions of ``re.search``
must stay under ``COST_BUDGET``, which allows one unbounded quantifier plus a few
short bounded ones. A leading or trailing ``.*`` is refused with a hint: a rule
already matches anywhere in the message. (The checker reads ``re``'s own parser,
``re._parser``; a Python upgrade that moves it makes the check refuse every regex
rather than let one through unchecked.)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from kizuna.storage.models import MatchType

MATCH_TYPES = tuple(MatchType)
MAX_TEXT = 1000
MAX_PATTERN = 200
MAX_BOUNDED_REPEAT = 100
COST_BUDGET = 10_000_000

try:  # Python 3.11+
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older or newer layouts: refuse regexes
    _c = _sre_parse = None


def normalize(text: str | None) -> str:
    return unicodedata.normalize("NFKC", text or "").strip().lower()


class PatternRejected(ValueError):
    pass


def check_pattern(match_type: str, pattern: str) -> None:
    """Raise PatternRejected with a message an operator can act on."""
    if match_type not in MATCH_TYPES:
        raise PatternRejected(f"match_type must be one of {', '.join(MATCH_TYPES)}")
    if not pattern or not pattern.strip():
        raise PatternRejected("pattern is empty")
    if len(pattern) > MAX_PATTERN:
        raise PatternRejected(f"pattern is longer than {MAX_PATTERN} characters")
    if match_type != MatchType.REGEX:
        if not normalize(pattern):
            raise PatternRejected("pattern is empty after normalisation")
        return
    if _sre_parse is None:  # pragma: no cover
        raise PatternRejected("regular expressions cannot be checked on this Python version")
    source = unicodedata.normalize("NFKC", pattern)
    try:
        re.compile(source, re.IGNORECASE)
        tree = _sre_parse.parse(source, re.IGNORECASE)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PatternRejected(f"not a valid regular expression: {exc}") from None
    items = list(tree)
    if items and _is_dot_star(items[0]):
        raise PatternRejected("remove the leading .*: a rule already matches anywhere in the message")
    if len(items) > 1 and _is_dot_star(items[-1]):
        raise PatternRejected("remove the trailing .*: a rule already matches anywhere in the message")
    cost = _cost(items, inside_repeat=False) * MAX_TEXT
    if cost > COST_BUDGET:
        raise PatternRejected(
            "pattern could be too slow on long messages: use at most one unbounded *, + or {n,} "
            "(plus short bounded ones like {0,5})"
        )


def _is_dot_star(item) -> bool:
    op, av = item
    return op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and av[1] == _c.MAXREPEAT and list(av[2]) == [(_c.ANY, None)]


def _has(items, ops) -> bool:
    for op, av in items:
        if op in ops:
            return True
        for sub in _children(op, av):
            if _has(sub, ops):
                return True
    return False


def _children(op, av) -> list:
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
        return [av[2]]
    if op is _c.SUBPATTERN:
        return [av[-1]]
    if op is _c.BRANCH:
        return list(av[1])
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return [av[1]]
    if op is _c.ATOMIC_GROUP:
        return [av]
    if op is _c.GROUPREF_EXISTS:
        return [branch for branch in av[1:] if branch is not None]
    return []


def _cost(items, *, inside_repeat: bool) -> float:
    """Backtracking work per start position, conservatively: quantifier widths multiply
    along a sequence, alternatives add up."""
    repeats = (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT)
    cost = 1.0
    for op, av in items:
        if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
            raise PatternRejected("back-references and conditionals ((?(1)...), \\1) are not allowed")
        if op in repeats:
            low, high, sub = av
            if high != _c.MAXREPEAT and high > MAX_BOUNDED_REPEAT:
                raise PatternRejected(f"a repeat count above {MAX_BOUNDED_REPEAT} is not allowed")
            if high > 1:
                if inside_repeat:
                    raise PatternRejected("a quantifier inside a repeated group (like (a+)+) is not allowed")
                if _has(sub, repeats):
                    raise PatternRejected("a quantifier inside a repeated group (like (a+)+) is not allowed")
                if _has(sub, (_c.BRANCH,)):
                    raise PatternRejected("alternatives inside a repeated group (like (a|ab)*) are not allowed")
            width = MAX_TEXT if high == _c.MAXREPEAT else max(1, high)
            cost *= width * _cost(sub, inside_repeat=inside_repeat or high > 1)
        elif op is _c.BRANCH:
            cost *= sum(_cost(branch, inside_repeat=inside_repeat) for branch in av[1])
        else:
            for sub in _children(op, av):
                cost *= _cost(sub, inside_repeat=inside_repeat)
    return cost


@dataclass(frozen=True)
class CompiledRule:
    id: int
    priority: int
    match_type: str
    pattern: str
    reply_text: str | None
    flow_action: str | None
    add_tag: str | None = None  # a tag the customer gets when the rule answers them
    _needle: str = ""
    _regex: re.Pattern | None = None

    def matches(self, normalized: str) -> bool:
        if self.match_type == MatchType.EXACT:
            return normalized == self._needle
        if self.match_type == MatchType.CONTAINS:
            return self._needle in normalized
        assert self._regex is not None
        return self._regex.search(normalized) is not None


def compile_rule(rule) -> CompiledRule | None:
    """From a stored KeywordRule; None if it is no longer valid (e.g. a rule saved by an
    older version with a laxer check)."""
    try:
        check_pattern(rule.match_type, rule.pattern)
    except PatternRejected:
        return None
    regex = re.compile(unicodedata.normalize("NFKC", rule.pattern), re.IGNORECASE) if rule.match_type == MatchType.REGEX else None
    return CompiledRule(
        id=rule.id, priority=rule.priority, match_type=rule.match_type, pattern=rule.pattern,
        reply_text=rule.reply_text, flow_action=rule.flow_action, add_tag=rule.add_tag, _needle=normalize(rule.pattern), _regex=regex,
    )


def first_match(rules: list[CompiledRule], text: str) -> CompiledRule | None:
    """The first rule (they are in priority order) that matches the message."""
    if not rules:
        return None
    normalized = normalize(text[:MAX_TEXT])
    for rule in rules:
        if rule.matches(normalized):
            return rule
    return None
