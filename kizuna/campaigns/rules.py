"""The segment rule language: JSON a marketer (or the console's builder) writes, checked here.

A rule is one of

    {"all": [rule, ...]}      every rule holds (an empty list: every customer)
    {"any": [rule, ...]}      at least one holds (1 or more rules)
    {"not": rule}             the rule does not hold (customers it cannot say anything about, e.g.
                              a decile condition for someone who never bought, are included)
    {"field": F, "op": OP, "value": V}                        a condition
    {"field": F, "op": OP, "value": V, "within_days": N}      purchased_sku / purchased_category /
                                                              coupon_redeemed in the last N × 24 h

Ops: `eq ne lt lte gt gte` take one value, `in` a list of 1 to 500, `between` [low, high]
(both included), `contains` a piece of text. `ne` is `not eq`: it also matches customers who have
no value at all. Which ops a field takes, and what its values are, is the table `FIELDS` below
(an allow-list: anything else is refused). Examples:

    {"all": [{"field": "purchased_category", "op": "eq", "value": "ヘアケア", "within_days": 90},
             {"field": "rfm_r", "op": "gte", "value": 4},
             {"field": "registered", "op": "eq", "value": true}]}
    {"any": [{"field": "tag", "op": "in", "value": ["VIP", "常連"]}, {"field": "decile", "op": "lte", "value": 2}]}
    {"not": {"field": "prefecture", "op": "in", "value": ["沖縄県", "北海道"]}}

A refused rule is `Invalid` naming the place of the problem from the rule's root:
`rule.all[2].value: must be an integer`. Limits: 10 levels of all/any/not, 100 conditions, 200 parts.

`friend_source` (流入経路) matches the customers who came through a friend-add source, by the
source's code or its name (storage/friend_sources.py: first source wins; `ne` also matches the
customers who came through none). `p_alive` and `expected_purchases` are None until the churn model (campaigns/churn.py)
has fitted, and while it cannot: conditions on them then match nobody.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kizuna.storage import prefectures
from kizuna.storage import tags as tag_store
from kizuna.storage.errors import Invalid
from kizuna.storage.models import Gender

MAX_DEPTH = 10
MAX_CONDITIONS = 100
MAX_PARTS = 200  # conditions and all/any/not together: a rule of a thousand empty groups is no rule
MAX_IN = 500
MAX_TEXT = 200
MAX_DAYS = 36_500  # a hundred years: longer than any shop's history


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    IN = "in"
    BETWEEN = "between"
    CONTAINS = "contains"


EQUALITY = frozenset({Op.EQ, Op.NE, Op.IN})
ORDERED = EQUALITY | {Op.LT, Op.LTE, Op.GT, Op.GTE, Op.BETWEEN}
TEXTUAL = EQUALITY | {Op.CONTAINS}


class Kind(StrEnum):
    """What a field's values are."""

    BOOL = "boolean"
    INT = "integer"
    NUMBER = "number"
    TEXT = "text"
    GENDER = "gender"
    PREFECTURE = "prefecture"
    COUPON = "coupon"  # a coupon id, or true/false: any coupon


@dataclass(frozen=True)
class FieldSpec:
    kind: Kind
    ops: frozenset[Op]
    minimum: float | None = None
    maximum: float | None = None
    within_days: bool = False  # takes the optional `within_days`
    description: str = ""


def _int(low: int, high: int, description: str, ops: frozenset[Op] = ORDERED) -> FieldSpec:
    return FieldSpec(Kind.INT, ops, low, high, description=description)


def _flag(description: str) -> FieldSpec:
    return FieldSpec(Kind.BOOL, frozenset({Op.EQ, Op.NE}), description=description)


FIELDS: dict[str, FieldSpec] = {
    "registered": _flag("registered as a member"),
    "followed": _flag("a friend of the LINE account now"),
    "blocked": _flag("has blocked the LINE account"),
    "marketing_opt_in": _flag("agreed to marketing messages"),
    "gender": FieldSpec(Kind.GENDER, EQUALITY, description="female, male, other, unanswered"),
    "prefecture": FieldSpec(Kind.PREFECTURE, EQUALITY, description="a prefecture (東京都, 東京, tokyo)"),
    "age": _int(0, 150, "whole years from the birthday, in the shop's time zone"),
    "birth_month": _int(1, 12, "month of the birthday"),
    "tag": FieldSpec(Kind.TEXT, TEXTUAL, description="has the tag (contains: a tag containing the text)"),
    "recency_days": _int(0, MAX_DAYS, "whole days since the last completed order"),
    "frequency": _int(0, 10**9, "completed orders"),
    "monetary": _int(0, 10**15, "yen spent on completed orders"),
    "rfm_r": _int(1, 5, "R score 1-5 (recency)"),
    "rfm_f": _int(1, 5, "F score 1-5 (frequency)"),
    "rfm_m": _int(1, 5, "M score 1-5 (monetary)"),
    "decile": _int(1, 10, "spend decile, 1 = top 10 %"),
    "f2": _flag("has a second completed order"),
    "ltv": FieldSpec(Kind.NUMBER, ORDERED, 0, 10**15, description="LTV in yen"),
    "p_alive": FieldSpec(Kind.NUMBER, ORDERED, 0, 1, description="probability of being active (BG/NBD)"),
    "expected_purchases": FieldSpec(Kind.NUMBER, ORDERED, 0, 10**6,
                                    description="purchases expected in the next N days (BG/NBD; N in metric settings, default 90)"),
    "purchased_sku": FieldSpec(Kind.TEXT, TEXTUAL, within_days=True, description="bought the SKU (completed orders)"),
    "purchased_category": FieldSpec(Kind.TEXT, TEXTUAL, within_days=True, description="bought in the category"),
    "last_interaction_days": _int(0, MAX_DAYS, "whole days since the customer's last interaction"),
    "coupon_redeemed": FieldSpec(Kind.COUPON, EQUALITY, 1, 2**31 - 1, within_days=True,
                                 description="redeemed the coupon (an id), or any coupon (true)"),
    "followed_days": _int(0, MAX_DAYS, "whole days since the customer followed the account"),
    "friend_source": FieldSpec(Kind.TEXT, TEXTUAL, description="the friend-add source (流入経路) the customer came through, by its code or name"),
}


# -- a checked rule ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    field: str
    op: Op
    value: Any  # normalised: a list for in/between, a prefecture's name, a tag as stored
    within_days: int | None = None


@dataclass(frozen=True)
class All:
    rules: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    rule: Node


Node = Condition | All | AnyOf | Not


def check(rule: Any, where: str = "rule") -> Node:
    """`rule` checked and normalised; Invalid naming the place of the first problem."""
    counter = [0, 0]  # conditions, parts
    return _node(rule, where, 1, counter)


def _node(rule: Any, where: str, depth: int, counter: list[int]) -> Node:
    counter[1] += 1
    if counter[1] > MAX_PARTS:
        raise Invalid(where, f"a rule has at most {MAX_PARTS} parts (conditions, all, any, not)")
    if not isinstance(rule, dict):
        raise Invalid(where, 'must be a rule: an object with "all", "any", "not", or "field", "op" and "value"')
    if depth > MAX_DEPTH:
        raise Invalid(where, f"rules are nested more than {MAX_DEPTH} levels deep")
    groups = [key for key in ("all", "any", "not") if key in rule]
    if groups:
        key = groups[0]
        if len(rule) != 1:
            extra = next(name for name in rule if name != key)
            raise Invalid(f"{where}.{extra}", f'is not allowed beside "{key}" (one of all, any, not per object)')
        if key == "not":
            return Not(_node(rule["not"], f"{where}.not", depth + 1, counter))
        items = rule[key]
        if not isinstance(items, list):
            raise Invalid(f"{where}.{key}", "must be a list of rules")
        if key == "any" and not items:
            raise Invalid(f"{where}.any", "must hold at least one rule")
        checked = tuple(_node(item, f"{where}.{key}[{index}]", depth + 1, counter) for index, item in enumerate(items))
        return All(checked) if key == "all" else AnyOf(checked)
    return _condition(rule, where, counter)


def _condition(rule: dict, where: str, counter: list[int]) -> Condition:
    for key in rule:
        if key not in ("field", "op", "value", "within_days"):
            raise Invalid(f"{where}.{key}", "is not a key of a condition (field, op, value, within_days)")
    for key in ("field", "op", "value"):
        if key not in rule:
            raise Invalid(f"{where}.{key}", "is missing")
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise Invalid(where, f"a rule has at most {MAX_CONDITIONS} conditions")
    name, op = rule["field"], rule["op"]
    if not isinstance(name, str) or name not in FIELDS:
        raise Invalid(f"{where}.field", f"unknown field; known: {', '.join(FIELDS)}")
    spec = FIELDS[name]
    if not isinstance(op, str) or op not in Op.__members__.values():
        raise Invalid(f"{where}.op", f"unknown op; known: {', '.join(Op)}")
    op = Op(op)
    if op not in spec.ops:
        raise Invalid(f"{where}.op", f"{name} takes {', '.join(sorted(spec.ops))}")
    within = rule.get("within_days")
    if within is not None:
        if not spec.within_days:
            raise Invalid(f"{where}.within_days", "only purchased_sku, purchased_category and coupon_redeemed take it")
        if isinstance(within, bool) or not isinstance(within, int) or not 1 <= within <= MAX_DAYS:
            raise Invalid(f"{where}.within_days", f"must be an integer from 1 to {MAX_DAYS}")
    value = _value(spec, op, rule["value"], f"{where}.value")
    return Condition(name, op, value, within)


def _value(spec: FieldSpec, op: Op, value: Any, where: str) -> Any:
    if op == Op.IN:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN:
            raise Invalid(where, f"must be a list of 1 to {MAX_IN} values")
        return [_scalar(spec, item, f"{where}[{index}]") for index, item in enumerate(value)]
    if op == Op.BETWEEN:
        if not isinstance(value, list) or len(value) != 2:
            raise Invalid(where, "must be a list of two values [low, high]")
        low, high = (_scalar(spec, item, f"{where}[{index}]") for index, item in enumerate(value))
        if low > high:
            raise Invalid(where, "low must not be more than high")
        return [low, high]
    if op == Op.CONTAINS:
        return _text(value, where, normalise=False)
    return _scalar(spec, value, where)


def _scalar(spec: FieldSpec, value: Any, where: str) -> Any:
    if spec.kind == Kind.BOOL:
        if not isinstance(value, bool):
            raise Invalid(where, "must be true or false")
        return value
    if spec.kind == Kind.COUPON:
        if isinstance(value, bool):
            return value
        return _number(spec, value, where, integer=True, what="a coupon id (an integer) or true/false")
    if spec.kind in (Kind.INT, Kind.NUMBER):
        return _number(spec, value, where, integer=spec.kind == Kind.INT)
    if spec.kind == Kind.GENDER:
        if value not in [str(gender) for gender in Gender]:
            raise Invalid(where, f"must be one of {', '.join(Gender)}")
        return value
    if spec.kind == Kind.PREFECTURE:
        found = prefectures.lookup(_text(value, where, normalise=False))
        if found is None:
            raise Invalid(where, "must be a prefecture of Japan")
        return found.name
    return _text(value, where, normalise=spec is FIELDS["tag"])


def _number(spec: FieldSpec, value: Any, where: str, *, integer: bool, what: str | None = None) -> int | float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(value, bool) or not ok:
        raise Invalid(where, f"must be {what or ('an integer' if integer else 'a number')}")
    if not spec.minimum <= value <= spec.maximum:
        raise Invalid(where, f"must be from {spec.minimum:g} to {spec.maximum:g}")
    return value


def _text(value: Any, where: str, *, normalise: bool) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise Invalid(where, f"must be text of 1 to {MAX_TEXT} characters")
    if "\x00" in value:
        raise Invalid(where, "contains NUL (\\u0000)")
    if normalise:  # tags are stored normalised (ＶＩＰ is VIP): compare like with like
        try:
            return tag_store.normalize(value)
        except Invalid as error:
            raise Invalid(where, error.message) from None
    return value
