"""The segment builder's form: rows of (field, op, value) ↔ the JSON rule of campaigns/rules.py,
and a rule said in words.

The console checks nothing itself: a value is turned into the type its field takes when it
reads as one ("12" → 12, "true" → True) and otherwise passed on as typed, so the rule
language refuses it with its own message (`rule.all[2].value: must be an integer`), which
the page shows beside the row it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field as dataclass_field
from typing import Any

from kizuna.campaigns.rules import FIELDS, All, AnyOf, Condition, Kind, Node, Not, Op
from kizuna.storage import prefectures
from kizuna.storage.errors import Invalid
from kizuna.storage.models import Gender

MAX_ROWS = 30  # a form is for people; the API takes up to 100 conditions

# The field select's groups, in the order a marketer thinks of them.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("purchases", ("purchased_category", "purchased_sku", "recency_days", "frequency", "monetary", "f2", "ltv",
                   "coupon_redeemed")),
    ("rfm", ("rfm_r", "rfm_f", "rfm_m", "decile", "p_alive", "expected_purchases")),
    ("line", ("registered", "followed", "blocked", "marketing_opt_in", "followed_days", "last_interaction_days",
              "friend_source")),
    ("profile", ("gender", "prefecture", "age", "birth_month", "tag")),
)
assert {name for _, names in GROUPS for name in names} == set(FIELDS), "every field of the rule language has a group"

# The order ops are offered in (a field offers those it takes).
OP_ORDER = (Op.EQ, Op.NE, Op.GTE, Op.LTE, Op.GT, Op.LT, Op.BETWEEN, Op.IN, Op.CONTAINS)
_LIST_SPLIT = re.compile(r"\s*[,、，]\s*")


@dataclass
class Row:
    """One condition as the form holds it (text, as typed)."""

    field: str = "purchased_category"
    op: str = "eq"
    value: str = ""
    value2: str = ""  # the high end of `between`
    values: list[str] = dataclass_field(default_factory=list)  # a multiple select (`in` of a choice field)
    within: str = ""


@dataclass
class Builder:
    match: str = "all"  # all | any
    rows: list[Row] = dataclass_field(default_factory=lambda: [Row()])


def ops_of(name: str) -> list[str]:
    spec = FIELDS.get(name)
    return [str(op) for op in OP_ORDER if spec is not None and op in spec.ops]


def choices(name: str) -> list[tuple[str, str]] | None:
    """(value, i18n key or label) of a field whose values are a fixed list; None for free input."""
    kind = FIELDS[name].kind
    if kind == Kind.BOOL:
        return [("true", "segments.yes"), ("false", "segments.no")]
    if kind == Kind.COUPON:
        return [("true", "segments.coupon.any"), ("false", "segments.coupon.none")]
    if kind == Kind.GENDER:
        return [(str(gender), f"gender.{gender}") for gender in Gender]
    if kind == Kind.PREFECTURE:
        return [(prefecture.name, prefecture.name) for prefecture in prefectures.PREFECTURES]
    return None


def input_kind(name: str) -> str:
    """How the value is typed: number, choice or text."""
    kind = FIELDS[name].kind
    if kind in (Kind.INT, Kind.NUMBER):
        return "number"
    return "choice" if choices(name) is not None else "text"


def spec_for_page(t) -> dict:
    """What console/static/segments.js needs to rebuild a row when its field or op changes
    (labels in the reader's language)."""
    fields = {name: {"ops": ops_of(name), "input": input_kind(name), "within": spec.within_days,
                     "min": spec.minimum, "step": "any" if spec.kind == Kind.NUMBER else "1",
                     "choices": [[value, t(label)] for value, label in choices(name) or []]}
              for name, spec in FIELDS.items()}
    words = {"ops": {str(op): t(f"segments.op.{op}") for op in Op}, "value": t("segments.row.value"),
             "value2": t("segments.row.value2"), "in_help": t("segments.row.in.help"), "n": t("segments.condition.n", n="{n}")}
    return {"fields": fields, "words": words}


# -- the posted form → rows → the rule ---------------------------------------------------------


def read(form) -> Builder:
    """The builder's rows from a posted form (a MultiDict): `field_N`, `op_N`, `value_N`, ..."""
    indexes = sorted({int(key[6:]) for key in form if key.startswith("field_") and key[6:].isdigit() and len(key) < 12})
    rows = []
    for index in indexes[:MAX_ROWS]:
        get = lambda name: str(form.get(f"{name}_{index}", ""))[:300]  # noqa: E731
        values = [str(value)[:300] for value in form.getall(f"value_{index}", [])]
        name, op = get("field"), get("op")
        offered = ops_of(name)
        if offered and op not in offered:  # the field changed without JS: its first op, as the page shows
            op = offered[0]
        rows.append(Row(field=name, op=op, value=values[0] if values else "", value2=get("value2"),
                        values=values if len(values) > 1 else [], within=get("within")))
    return Builder(match="any" if form.get("match") == "any" else "all", rows=rows)


def _scalar(name: str, text: str) -> Any:
    spec = FIELDS.get(name)
    text = text.strip()
    if spec is None:
        return text
    if spec.kind in (Kind.BOOL, Kind.COUPON) and text in ("true", "false"):
        return text == "true"
    if spec.kind in (Kind.INT, Kind.COUPON, Kind.NUMBER):
        plain = text.replace(",", "")
        if re.fullmatch(r"-?\d{1,18}", plain):
            return int(plain)
        if spec.kind == Kind.NUMBER and re.fullmatch(r"-?\d{0,18}\.\d{1,12}", plain):
            return float(plain)
        return text or None  # the rule language names what is wrong with it
    return text


def condition(row: Row) -> dict:
    rule: dict[str, Any] = {"field": row.field, "op": row.op}
    if row.op == Op.IN:
        items = row.values or [item for item in _LIST_SPLIT.split(row.value.strip()) if item]
        rule["value"] = [_scalar(row.field, item) for item in items]
    elif row.op == Op.BETWEEN:
        rule["value"] = [_scalar(row.field, row.value), _scalar(row.field, row.value2)]
    elif row.op == Op.CONTAINS:
        rule["value"] = row.value
    else:
        rule["value"] = _scalar(row.field, row.value)
    if row.within.strip() and FIELDS.get(row.field) is not None and FIELDS[row.field].within_days:
        within = _scalar("frequency", row.within)
        rule["within_days"] = within
    return rule


def blank(row: Row) -> bool:
    """A row whose value is not typed yet (just added): not a condition yet, so the count
    stays meaningful while a marketer is still choosing."""
    return not row.value.strip() and not row.value2.strip() and not row.values


def kept(builder: Builder) -> list[int]:
    """The indexes of the rows that are conditions (see `blank`), in order."""
    return [index for index, row in enumerate(builder.rows) if not blank(row)]


def rule_of(builder: Builder) -> dict:
    conditions = [condition(builder.rows[index]) for index in kept(builder)]
    if builder.match == "any" and conditions:
        return {"any": conditions}
    return {"all": conditions}


# -- a rule → the form (presets, the RFM grid, a saved segment) ---------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def row_of(rule: dict) -> Row:
    value, op = rule.get("value"), str(rule.get("op", "eq"))
    row = Row(field=str(rule.get("field", "")), op=op, within=_text(rule.get("within_days")))
    if op == Op.BETWEEN and isinstance(value, list) and len(value) == 2:
        row.value, row.value2 = _text(value[0]), _text(value[1])
    elif op == Op.IN and isinstance(value, list):
        row.values = [_text(item) for item in value]
        row.value = ", ".join(row.values)
    else:
        row.value = _text(value)
    return row


def builder_of(rule: Any) -> Builder | None:
    """The form of a flat rule (all/any of conditions); None when the form cannot show it
    (nested groups, a `not`: made through the API)."""
    if not isinstance(rule, dict) or len(rule) != 1:
        return None
    match = next(iter(rule))
    items = rule[match]
    if match not in ("all", "any") or not isinstance(items, list) or not all(isinstance(i, dict) and "field" in i for i in items):
        return None
    return Builder(match=match, rows=[row_of(item) for item in items] or [Row()])


# -- where a problem is ------------------------------------------------------------------------

_WHERE = re.compile(r"^rule\.(?:all|any)\[(\d+)\](?:\.(\w+))?")


def problem_row(error: Invalid, builder: Builder) -> tuple[int | None, str | None]:
    """(index of the row in the form, part: field/op/value/within_days) a refusal of
    `rule_of(builder)` names, if it names one."""
    found = _WHERE.match(error.field)
    rows = kept(builder)
    if not found or int(found.group(1)) >= len(rows):
        return None, None
    return rows[int(found.group(1))], found.group(2)


# The rule language's messages (campaigns/rules.py) said in the reader's language: (pattern,
# i18n key). The service's own message stays beside the sentence, which it never replaces.
_SENTENCES = (
    (re.compile(r"must be an integer from (?P<low>\d+) to (?P<high>\d+)$"), "segments.problem.integer_range"),
    (re.compile(r"must be an integer$"), "segments.problem.integer"),
    (re.compile(r"must be a number$"), "segments.problem.number"),
    (re.compile(r"must be from (?P<low>\S+) to (?P<high>\S+)$"), "segments.problem.range"),
    (re.compile(r"must be true or false$"), "segments.problem.boolean"),
    (re.compile(r"must be text of 1 to (?P<n>\d+) characters$"), "segments.problem.text"),
    (re.compile(r"must be a prefecture of Japan$"), "segments.problem.prefecture"),
    (re.compile(r"must be a list of 1 to (?P<n>\d+) values$"), "segments.problem.list"),
    (re.compile(r"must be a list of two values"), "segments.problem.between"),
    (re.compile(r"low must not be more than high$"), "segments.problem.low_high"),
    (re.compile(r"^unknown field"), "segments.problem.field"),
    (re.compile(r"^\w+ takes "), "segments.problem.op"),
    (re.compile(r"must be a coupon id"), "segments.problem.coupon"),
    (re.compile(r"must be one of"), "segments.problem.choice"),
    (re.compile(r"contains NUL"), "segments.problem.nul"),
)


def sentence(message: str, t) -> str | None:
    """The reader's sentence for a message of the rule language, when it is a known one."""
    for pattern, key in _SENTENCES:
        found = pattern.search(message)
        if found:
            return t(key, **found.groupdict())
    return None


# -- a rule in words ---------------------------------------------------------------------------


def words(node: Node, t) -> str:
    """The checked rule as a sentence in the reader's language."""
    if isinstance(node, Condition):
        return _condition_words(node, t)
    if isinstance(node, Not):
        return t("segments.words.not", rule=words(node.rule, t))
    parts = [words(item, t) for item in node.rules]
    if not parts:
        return t("segments.words.everyone")
    joined = t("segments.words.and" if isinstance(node, All) else "segments.words.or").join(
        f"（{part}）" if len(parts) > 1 and not isinstance(item, Condition) else part
        for part, item in zip(parts, node.rules))
    return joined


def _value_words(name: str, value: Any, t) -> str:
    kind = FIELDS[name].kind
    if isinstance(value, bool):
        if kind == Kind.COUPON:
            return t("segments.coupon.any" if value else "segments.coupon.none")
        return t("segments.yes" if value else "segments.no")
    if kind == Kind.GENDER:
        return t(f"gender.{value}")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"「{value}」" if kind == Kind.TEXT else str(value)


def _condition_words(node: Condition, t) -> str:
    label = t(f"segments.field.{node.field}")
    value = node.value
    if node.op == Op.IN:
        shown = t("segments.words.in", values="・".join(_value_words(node.field, item, t) for item in value))
    elif node.op == Op.BETWEEN:
        shown = t("segments.words.between", low=_value_words(node.field, value[0], t), high=_value_words(node.field, value[1], t))
    else:
        shown = t(f"segments.words.{node.op}", value=_value_words(node.field, value, t))
    text = t("segments.words.condition", field=label, value=shown)
    if node.within_days:
        text += t("segments.words.within", days=node.within_days)
    return text
