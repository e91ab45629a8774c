"""What staff change about how the bot answers inquiries: keyword rules, business hours, the
FAQ matcher's thresholds and when unanswered questions go to a person, with the rules that
keep them valid.

The REST API and the console call these same functions (each in a transaction of its own),
so a check is made here once. What is refused is raised as the typed errors of
`kizuna.storage.errors`: `Invalid` naming the field, `Conflict`, `NotFound`. Storing is
storage/faq.py's (it bumps the revision every worker watches).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from kizuna.storage import audit, tags
from kizuna.storage import faq as faq_store
from kizuna.storage.errors import Conflict, Invalid, NotFound
from kizuna.storage.models import KeywordRule, KeywordRuleCreate, KeywordRuleRead, KeywordRuleUpdate

from .. import all_commands, all_flows
from ..engine import Postback
from .hours import HoursInvalid, canonical, parse_schedule
from .inquiry import thresholds_from
from .matching import MatchThresholds
from .rules import PatternRejected, check_pattern

MAX_RULES = 200
# Postback actions of the inquiry answerer itself (kizuna/flows/faq/inquiry.py).
INQUIRY_ACTIONS = ("handoff", "inquiry")


# -- keyword rules ---------------------------------------------------------------------------


def known_actions() -> set[str]:
    """Postback actions a rule may start: every flow's and command's, and the inquiry's own."""
    actions = set(INQUIRY_ACTIONS)
    for owner in (*all_flows(), *all_commands()):
        actions.update(entry.action for entry in owner.entry_points if isinstance(entry, Postback))
    return actions


def check_keyword_rule(values: dict) -> None:
    """A whole rule (a change merged with the stored rule): a pattern fast enough to match
    (rules.py), and exactly one of a fixed reply and a known flow to start. An `add_tag` is
    on top of either (a rule that only tagged would leave the customer without an answer);
    it is stored normalised, as the customer will have it (`_normalise_tag`)."""
    try:
        check_pattern(values["match_type"], values["pattern"])
    except PatternRejected as exc:
        raise Invalid("pattern", str(exc)) from None
    reply, action = values.get("reply_text"), values.get("flow_action")
    if bool(reply) == bool(action):
        raise Invalid("reply_text", "give exactly one of reply_text (a fixed reply) and flow_action (a flow to start)")
    if action and action not in known_actions():
        raise Invalid("flow_action", f"unknown action {action!r}; known: {', '.join(sorted(known_actions()))}")


def _normalise_tag(values: dict) -> dict:
    """`add_tag` as storage/tags.py stores tags (「ＶＩＰ」 is VIP); Invalid naming `add_tag`."""
    if values.get("add_tag") is not None:
        try:
            values["add_tag"] = tags.normalize(values["add_tag"])
        except Invalid as error:
            raise Invalid("add_tag", error.message) from None
    return values


def _read_as(model: type[BaseModel], values: dict) -> dict:
    """`values` read by the model that declares each field's own limits (a priority is a
    whole number of -1000..1000, ...; the API's schema is made from it): a value it refuses is
    Invalid naming the field. Only the fields given are returned."""
    try:
        return model.model_validate(values).model_dump(include=set(values))
    except ValidationError as error:
        first = error.errors()[0]
        raise Invalid(".".join(str(part) for part in first["loc"]) or "rule", first["msg"]) from None


def _rule_target(rule: KeywordRule) -> str:
    """How the audit log names a rule: `keyword_rule:<id> <pattern>`."""
    return f"keyword_rule:{rule.id} {rule.pattern}"


async def create_keyword_rule(session: AsyncSession, values: dict, *, actor: audit.Actor | None = None) -> KeywordRule:
    """A new rule (the fields of `KeywordRuleCreate`); at most MAX_RULES of them."""
    values = _normalise_tag(_read_as(KeywordRuleCreate, values))
    check_keyword_rule(values)
    if len(await faq_store.list_rules(session)) >= MAX_RULES:
        raise Conflict("too_many_rules", f"at most {MAX_RULES} keyword rules")
    rule = await faq_store.create_rule(session, values)
    audit.record_by(session, actor, audit.Action.KEYWORD_RULE_CREATED, target=_rule_target(rule),
                    match_type=rule.match_type, pattern=rule.pattern)
    return rule


async def update_keyword_rule(
    session: AsyncSession, rule_id: int, changes: dict, *, actor: audit.Actor | None = None
) -> KeywordRule:
    """Change the fields in `changes`; the rule they make with the stored fields is checked whole."""
    changes = _normalise_tag(_read_as(KeywordRuleUpdate, changes))
    rule = await faq_store.get_rule(session, rule_id)
    if rule is None:
        raise NotFound("no such keyword rule")
    stored = KeywordRuleRead.model_validate(rule, from_attributes=True).model_dump()
    check_keyword_rule({**stored, **changes})
    changed = [name for name, value in changes.items() if stored.get(name) != value]
    rule = await faq_store.update_rule(session, rule, changes)
    if changed:
        audit.record_by(session, actor, audit.Action.KEYWORD_RULE_UPDATED, target=_rule_target(rule),
                        changed=", ".join(changed))
    return rule


async def delete_keyword_rule(session: AsyncSession, rule_id: int, *, actor: audit.Actor | None = None) -> None:
    rule = await faq_store.get_rule(session, rule_id)
    if rule is None or not await faq_store.delete_rule(session, rule_id):
        raise NotFound("no such keyword rule")
    audit.record_by(session, actor, audit.Action.KEYWORD_RULE_DELETED, target=_rule_target(rule))


# -- business hours ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BusinessHours:
    timezone: str
    configured: bool
    weekly: dict | None  # the stored form, every day present (hours.canonical); None: never set
    holidays: list[str]
    open_now: bool
    next_opening: datetime | None


async def business_hours(session: AsyncSession, now: datetime) -> BusinessHours:
    settings = await faq_store.read_settings(session)
    timezone = await faq_store.shop_timezone(session)
    schedule = parse_schedule(settings.weekly_hours, settings.holidays, timezone)
    return BusinessHours(
        timezone=timezone, configured=schedule is not None, weekly=settings.weekly_hours,
        holidays=list(settings.holidays), open_now=schedule is None or schedule.is_open(now),
        next_opening=schedule.next_opening(now) if schedule is not None else None,
    )


async def set_business_hours(
    session: AsyncSession, weekly: dict | None, holidays: list[str], now: datetime, *, actor: audit.Actor | None = None
) -> BusinessHours:
    """Set the weekly schedule (None clears it: always open) and the holidays."""
    try:
        # `{}` when clearing the schedule: parse_schedule checks the holidays only beside a
        # schedule, and they are stored either way.
        parse_schedule(weekly if weekly is not None else {}, holidays)
    except HoursInvalid as exc:
        raise Invalid("holidays" if str(exc).startswith("holidays") else "weekly", str(exc)) from None
    weekly, holidays = canonical(weekly), sorted(set(holidays))
    await faq_store.set_business_hours(session, weekly, holidays)
    audit.record_by(session, actor, audit.Action.BUSINESS_HOURS_CHANGED, target="business_hours",
                    weekly=_weekly_summary(weekly), holidays=len(holidays))
    return await business_hours(session, now)


def _weekly_summary(weekly: dict | None) -> str:
    """The schedule in one line for the audit log: "mon 10:00-20:00, tue closed, ..."."""
    if weekly is None:
        return "not set"
    return ", ".join(f"{day} " + (" ".join(f"{start}-{end}" for start, end in weekly[day]) or "closed") for day in weekly)


# -- the FAQ matcher's thresholds ------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    effective: dict[str, float]  # the values in use
    overrides: dict[str, float]  # the values set by staff (the rest are the defaults)
    # Questions left unanswered in a row after which the customer is handed to a person (0: never).
    unanswered_handoff_after: int = faq_store.DEFAULT_UNANSWERED_HANDOFF_AFTER


def _thresholds(overrides: dict, unanswered_handoff_after: int) -> Thresholds:
    effective = dataclasses.asdict(thresholds_from(overrides))
    return Thresholds({name: float(value) for name, value in effective.items()},
                      {name: float(value) for name, value in overrides.items()}, unanswered_handoff_after)


async def thresholds(session: AsyncSession) -> Thresholds:
    settings = await faq_store.read_settings(session)
    return _thresholds(settings.thresholds, settings.unanswered_handoff_after)


# The most unanswered questions in a row a shop may let a customer ask before a person takes over.
MAX_UNANSWERED_HANDOFF_AFTER = 10


async def set_unanswered_handoff_after(session: AsyncSession, value: int, *, actor: audit.Actor | None = None) -> Thresholds:
    """After `value` questions in a row that the FAQ could not answer, the customer is handed
    to a person instead of getting another apology (0: never; at most 10)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UNANSWERED_HANDOFF_AFTER:
        raise Invalid("unanswered_handoff_after", f"must be a whole number from 0 (never) to {MAX_UNANSWERED_HANDOFF_AFTER}")
    await faq_store.set_unanswered_handoff_after(session, value)
    audit.record_by(session, actor, audit.Action.THRESHOLDS_CHANGED, target="unanswered_handoff_after", value=value)
    return await thresholds(session)


async def set_thresholds(session: AsyncSession, values: dict[str, float], *, actor: audit.Actor | None = None) -> Thresholds:
    """Override thresholds: each in 0..1, max_offers 2 or 3; `{}` restores the defaults."""
    known = [field.name for field in dataclasses.fields(MatchThresholds)]
    overrides: dict[str, float] = {}
    for name, value in values.items():
        if name not in known:
            raise Invalid(f"thresholds.{name}", f"unknown threshold; known: {', '.join(known)}")
        if name == "max_offers":
            if value not in (2, 3):
                raise Invalid("thresholds.max_offers", "must be 2 or 3")
            overrides[name] = int(value)
        elif not 0.0 <= value <= 1.0:
            raise Invalid(f"thresholds.{name}", "must be between 0 and 1")
        else:
            overrides[name] = float(value)
    await faq_store.set_thresholds(session, overrides)
    audit.record_by(session, actor, audit.Action.THRESHOLDS_CHANGED, target="thresholds", **overrides)
    return _thresholds(overrides, (await faq_store.read_settings(session)).unanswered_handoff_after)
