"""Inquiries in the REST API (issue 4): FAQ entries, CSV import/export, the unanswered
report, keyword rules, business hours and the matcher's thresholds.

Every write bumps a revision counter in the same transaction (storage/faq.py), so each
worker process picks the change up on its next inquiry, without a restart.

Roles: admin and marketer edit; support reads. Thresholds: admin only.
Errors keep the API's shape, `{"error": {"code", "message"}}`, plus `field` for an
invalid field and, for a CSV import, `errors: [{"row", "line", "field", "message"}]`
(row 1 is the header; nothing is imported when any row is bad).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from kizuna.flows import all_commands, all_flows
from kizuna.flows.engine import Postback
from kizuna.flows.faq.hours import DAYS, MAX_HOLIDAYS, MAX_INTERVALS_PER_DAY, HoursInvalid, canonical, parse_schedule
from kizuna.flows.faq.inquiry import thresholds_from
from kizuna.flows.faq.matching import MatchThresholds
from kizuna.flows.faq.rules import PatternRejected, check_pattern
from kizuna.storage import faq as faq_store
from kizuna.storage.db import transaction
from kizuna.storage.models import (
    FAQ_ALTERNATE_MAX,
    FAQ_ANSWER_MAX,
    FAQ_ID_MAX,
    FAQ_ID_PATTERN,
    FAQ_QUESTION_MAX,
    KEYWORD_PATTERN_MAX,
    FaqEntry,
    FaqEntryCreate,
    FaqEntryRead,
    FaqEntryUpdate,
    KeywordRule,
    KeywordRuleCreate,
    KeywordRuleRead,
    KeywordRuleUpdate,
)
from kizuna.storage.types import utcnow

from .api import (
    NOT_BLANK, ApiError, bool_param, bool_query, endpoint, id_param, int_param, int_query, invalid_field, optional,
    parse_body, path_id, text_param, _json,
)
from .keys import SESSIONS

MANAGE = ("admin", "marketer")
READ = ("admin", "marketer", "support")
MAX_RULES = 200
# Postback actions of the inquiry answerer itself (kizuna/flows/faq/inquiry.py).
INQUIRY_ACTIONS = ("handoff", "inquiry")


# -- models ---------------------------------------------------------------------------------

# What storage/faq.py `check_fields` enforces, said in the schema too (the store stays the one
# check): text is stripped first, so a blank question is missing; a phrasing is at most
# FAQ_ALTERNATE_MAX characters and never holds the CSV's separator.
_ALTERNATE = {"type": "string", "maxLength": FAQ_ALTERNATE_MAX, "pattern": "^[^%s]*$" % faq_store.ALTERNATE_SEPARATOR}


def _faq_rules(schema: dict) -> None:
    for name in ("question", "answer"):
        schema["properties"][name].update(NOT_BLANK)
    alternates = schema["properties"]["alternates"]
    for branch in alternates.get("anyOf", [alternates]):
        if branch.get("type") == "array":
            branch["items"] = _ALTERNATE


class FaqEntryIn(FaqEntryCreate):
    model_config = {"extra": "forbid", "json_schema_extra": _faq_rules}


class FaqEntryChange(FaqEntryUpdate):
    """PUT: the fields sent are changed; null clears the category and keeps alternates and enabled."""

    model_config = {"extra": "forbid", "json_schema_extra": _faq_rules}

    question: str = optional(min_length=1, max_length=FAQ_QUESTION_MAX)
    answer: str = optional(min_length=1, max_length=FAQ_ANSWER_MAX)


def _rule_schema(schema: dict) -> None:
    """What `_check_rule` takes: a flow_action it knows, and exactly one of reply_text and flow_action
    (on a change, together with the rule's stored values). A regex must also be fast enough
    (flows/faq/rules.py `check_pattern`): that a schema cannot say."""
    properties = schema["properties"]
    properties["pattern"].update(NOT_BLANK)
    properties["flow_action"]["anyOf"] = [{"enum": sorted(known_actions())}, {"type": "null"}]
    if "required" in schema:  # a new rule: the pair is complete here
        schema["oneOf"] = [
            {"required": ["reply_text"], "properties": {"reply_text": {"type": "string"}, "flow_action": {"type": "null"}}},
            {"required": ["flow_action"], "properties": {"flow_action": {"type": "string"}, "reply_text": {"type": "null"}}},
        ]


class KeywordRuleIn(KeywordRuleCreate):
    model_config = {"extra": "forbid", "json_schema_extra": _rule_schema}


class KeywordRuleChange(KeywordRuleUpdate):
    """PUT: the fields sent are changed; those a rule cannot be without may not be null."""

    model_config = {"extra": "forbid", "json_schema_extra": _rule_schema}

    match_type: Literal["exact", "contains", "regex"] = optional()
    pattern: str = optional(min_length=1, max_length=KEYWORD_PATTERN_MAX)
    priority: int = optional(ge=-1000, le=1000)
    enabled: bool = optional()



class FaqPage(BaseModel):
    items: list[FaqEntryRead]
    next_after: str | None


class FaqDeleted(BaseModel):
    id: str
    deleted: bool


class ImportResult(BaseModel):
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    disabled: list[str] = Field(description="not in the file, disabled because of replace=true")
    kept: list[str] = Field(description="not in the file, left as they were (replace=true disables them)")
    warnings: list[str] = Field(description="rows read with a repair, e.g. an unquoted comma in 5,500")


class UnansweredItem(BaseModel):
    text: str
    count: int
    customers: int
    last_asked_at: datetime


class UnansweredPage(BaseModel):
    since: datetime
    items: list[UnansweredItem]


class KeywordRuleList(BaseModel):
    items: list[KeywordRuleRead]


class KeywordRuleDeleted(BaseModel):
    id: int
    deleted: bool


class BusinessHoursRead(BaseModel):
    timezone: str
    configured: bool
    weekly: dict[str, list[list[str]]] | None = Field(
        description='per day (mon ... sun) a list of ["HH:MM", "HH:MM"] intervals; null: never set (always open)')
    holidays: list[str]
    open_now: bool
    next_opening: datetime | None


# The shape `hours.parse_schedule` takes, in the schema; what it checks across values (a day's
# intervals close after they open and do not overlap) is in the description.
_TIME = {"type": "string", "pattern": "^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"}
_DAY = {"type": "array", "maxItems": MAX_INTERVALS_PER_DAY,
        "items": {"type": "array", "items": _TIME, "minItems": 2, "maxItems": 2}}
_WEEKLY = {"type": "object", "properties": {day: _DAY for day in DAYS}, "additionalProperties": False}


def _weekly_schema(schema: dict) -> None:
    schema["anyOf"] = [_WEEKLY, {"type": "null"}]


class BusinessHoursUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    weekly: dict[str, list[list[str]]] | None = Field(
        json_schema_extra=_weekly_schema,
        description='{"mon": [["10:00", "20:00"]], ...}; a missing or empty day is closed; null clears the schedule. '
                    "A day's intervals close after they open (24:00 at the latest) and do not overlap.")
    holidays: list[str] = Field(default_factory=list, max_length=MAX_HOLIDAYS, description="closed dates, YYYY-MM-DD",
                                json_schema_extra={"items": {"type": "string", "format": "date"}})


class InquirySettingsRead(BaseModel):
    thresholds: dict[str, float] = Field(description="the values in use")
    overrides: dict[str, float] = Field(description="the values set here (the rest are the defaults)")


def _thresholds_schema(schema: dict) -> None:
    """The thresholds `put_inquiry_settings` takes: each in 0..1, max_offers 2 or 3, no others."""
    schema["properties"] = {f.name: {"enum": [2, 3]} if f.name == "max_offers" else {"type": "number", "minimum": 0, "maximum": 1}
                            for f in dataclasses.fields(MatchThresholds)}
    schema["additionalProperties"] = False


class InquirySettingsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thresholds: dict[str, float] = Field(description="overrides of the FAQ matcher's thresholds; {} restores the defaults",
                                         json_schema_extra=_thresholds_schema)


# -- helpers --------------------------------------------------------------------------------


def _faq_id(request: web.Request) -> str:
    return request.match_info["faq_id"]


def _read(entry: FaqEntry) -> FaqEntryRead:
    return FaqEntryRead.model_validate(entry, from_attributes=True)


def _with_invalid(view):
    """Turn the store's FaqInvalid into 400 invalid_field with `field`."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await view(request)
        except faq_store.FaqInvalid as exc:
            raise invalid_field(exc.field, exc.message) from None

    wrapped.__name__ = view.__name__
    return wrapped


# -- FAQ: fixed paths first (they would otherwise match /faq/{faq_id}) -------------------------


@endpoint("GET", "/faq/export", "All FAQ entries as CSV (UTF-8; id,question,answer,alternates,category,enabled)",
          roles=READ, response="text/csv")
async def export_faq(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        entries = await faq_store.list_entries(session)
    return web.Response(
        text=faq_store.to_csv(entries), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="faq.csv"'},
    )


@endpoint(
    "POST", "/faq/import",
    "Import FAQ entries from a CSV body (text/csv, UTF-8, header id,question,answer,alternates[,category,enabled]); "
    "all or nothing, 400 lists bad rows; entries not in the file are kept unless replace=true (then disabled)",
    roles=MANAGE, request="text/csv", response=ImportResult, query=[bool_param("replace", default=False)],
)
async def import_faq(request: web.Request) -> web.Response:
    replace = bool(bool_query(request, "replace"))
    data = await request.read()
    try:
        parsed = faq_store.parse_csv(data)
    except faq_store.CsvError as exc:
        raise ApiError(400, "invalid_csv", f"nothing was imported: {exc}",
                       errors=[e.as_dict() for e in exc.errors], total=exc.total) from None
    async with transaction(request.app[SESSIONS]) as session:
        report = await faq_store.import_entries(session, parsed, replace=replace)
    return _json(ImportResult(**dataclasses.asdict(report)))


@endpoint(
    "GET", "/faq/unanswered",
    "Questions the bot could not answer, the same text grouped, most frequent first (candidates for new FAQ entries)",
    roles=READ, response=UnansweredPage,
    query=[int_param("days", minimum=1, maximum=365, default=30), int_param("limit", minimum=1, maximum=200, default=50)],
)
async def unanswered_faq(request: web.Request) -> web.Response:
    days = int_query(request, "days")
    limit = int_query(request, "limit")
    since = utcnow() - timedelta(days=days)
    async with request.app[SESSIONS]() as session:
        rows = await faq_store.unanswered(session, since=since, limit=limit)
    return _json(UnansweredPage(since=since, items=[UnansweredItem(**dataclasses.asdict(row)) for row in rows]))


@endpoint(
    "GET", "/faq", "FAQ entries in id order (cursor paging with `after`)", roles=READ, response=FaqPage,
    query=[bool_param("enabled"), text_param("category"), text_param("after", description="next_after of the previous page"),
           int_param("limit", minimum=1, maximum=1000, default=200)],
)
async def list_faq(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with request.app[SESSIONS]() as session:
        rows = await faq_store.list_entries(session, enabled=bool_query(request, "enabled"),
                                            category=request.query.get("category"), after=request.query.get("after"),
                                            limit=limit)
    return _json(FaqPage(items=[_read(row) for row in rows], next_after=rows[-1].id if len(rows) == limit else None))


@endpoint("POST", "/faq", "Create an FAQ entry (201); 409 if the id is taken", roles=MANAGE,
          request=FaqEntryIn, response=FaqEntryRead, statuses=(201,), errors={409: "exists: an FAQ entry has this id"})
@_with_invalid
async def create_faq(request: web.Request) -> web.Response:
    body = await parse_body(request, FaqEntryIn)
    fields = faq_store.FaqFields(id=body.id, question=body.question, answer=body.answer,
                                 alternates=tuple(body.alternates), category=body.category, enabled=body.enabled)
    try:
        async with transaction(request.app[SESSIONS]) as session:
            entry = await faq_store.create_entry(session, fields)
    except (faq_store.FaqExists, IntegrityError):
        raise ApiError(409, "exists", f"an FAQ entry with id {body.id!r} exists") from None
    return _json(_read(entry), status=201)


FAQ_ID = text_param("faq_id", "path", maxLength=FAQ_ID_MAX, pattern=FAQ_ID_PATTERN)


@endpoint("GET", "/faq/{faq_id}", "One FAQ entry", roles=READ, response=FaqEntryRead, path_params=[FAQ_ID])
async def get_faq(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        entry = await faq_store.get_entry(session, _faq_id(request))
    if entry is None:
        raise ApiError(404, "not_found", "no such FAQ entry")
    return _json(_read(entry))


@endpoint("PUT", "/faq/{faq_id}", "Change an FAQ entry: the fields sent are changed; effective for the next inquiry",
          roles=MANAGE, request=FaqEntryChange, response=FaqEntryRead, path_params=[FAQ_ID])
@_with_invalid
async def update_faq(request: web.Request) -> web.Response:
    body = await parse_body(request, FaqEntryChange)
    async with transaction(request.app[SESSIONS]) as session:
        entry = await faq_store.update_entry(session, _faq_id(request), body.model_dump(exclude_unset=True))
    if entry is None:
        raise ApiError(404, "not_found", "no such FAQ entry")
    return _json(_read(entry))


@endpoint("DELETE", "/faq/{faq_id}", "Delete an FAQ entry (disable it instead to keep it for later)",
          roles=MANAGE, response=FaqDeleted, path_params=[FAQ_ID])
async def delete_faq(request: web.Request) -> web.Response:
    async with transaction(request.app[SESSIONS]) as session:
        deleted = await faq_store.delete_entry(session, _faq_id(request))
    if not deleted:
        raise ApiError(404, "not_found", "no such FAQ entry")
    return _json(FaqDeleted(id=_faq_id(request), deleted=True))


# -- keyword rules --------------------------------------------------------------------------


def known_actions() -> set[str]:
    """Postback actions a rule may start: every flow's and command's, and the inquiry's own."""
    actions = set(INQUIRY_ACTIONS)
    for owner in (*all_flows(), *all_commands()):
        actions.update(entry.action for entry in owner.entry_points if isinstance(entry, Postback))
    return actions


def _check_rule(values: dict) -> None:
    try:
        check_pattern(values["match_type"], values["pattern"])
    except PatternRejected as exc:
        raise invalid_field("pattern", str(exc)) from None
    reply, action = values.get("reply_text"), values.get("flow_action")
    if bool(reply) == bool(action):
        raise invalid_field("reply_text", "give exactly one of reply_text (a fixed reply) and flow_action (a flow to start)")
    if action and action not in known_actions():
        raise invalid_field("flow_action", f"unknown action {action!r}; known: {', '.join(sorted(known_actions()))}")


def _rule_read(rule: KeywordRule) -> KeywordRuleRead:
    return KeywordRuleRead.model_validate(rule, from_attributes=True)


@endpoint("GET", "/keyword-rules", "Keyword rules in the order they are checked (priority, high first)",
          roles=READ, response=KeywordRuleList)
async def list_keyword_rules(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        rules = await faq_store.list_rules(session)
    return _json(KeywordRuleList(items=[_rule_read(rule) for rule in rules]))


@endpoint(
    "POST", "/keyword-rules",
    "Create a keyword rule (201): exact / contains / regex, checked before the FAQ; reply_text or flow_action",
    roles=MANAGE, request=KeywordRuleIn, response=KeywordRuleRead, statuses=(201,),
    errors={409: f"too_many_rules: at most {MAX_RULES} keyword rules"},
)
@_with_invalid
async def create_keyword_rule(request: web.Request) -> web.Response:
    body = await parse_body(request, KeywordRuleIn)
    values = body.model_dump()
    _check_rule(values)
    async with transaction(request.app[SESSIONS]) as session:
        if len(await faq_store.list_rules(session)) >= MAX_RULES:
            raise ApiError(409, "too_many_rules", f"at most {MAX_RULES} keyword rules")
        rule = await faq_store.create_rule(session, values)
    return _json(_rule_read(rule), status=201)


RULE_ID = id_param(KeywordRule.id)


@endpoint("GET", "/keyword-rules/{id}", "One keyword rule", roles=READ, response=KeywordRuleRead, path_params=[RULE_ID])
async def get_keyword_rule(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        rule = await faq_store.get_rule(session, path_id(request))
    if rule is None:
        raise ApiError(404, "not_found", "no such keyword rule")
    return _json(_rule_read(rule))


@endpoint("PUT", "/keyword-rules/{id}", "Change a keyword rule: the fields sent are changed",
          roles=MANAGE, request=KeywordRuleChange, response=KeywordRuleRead, path_params=[RULE_ID])
@_with_invalid
async def update_keyword_rule(request: web.Request) -> web.Response:
    body = await parse_body(request, KeywordRuleChange)
    changes = body.model_dump(exclude_unset=True)
    async with transaction(request.app[SESSIONS]) as session:
        rule = await faq_store.get_rule(session, path_id(request))
        if rule is None:
            raise ApiError(404, "not_found", "no such keyword rule")
        merged = {**_rule_read(rule).model_dump(), **changes}
        _check_rule(merged)
        rule = await faq_store.update_rule(session, rule, changes)
    return _json(_rule_read(rule))


@endpoint("DELETE", "/keyword-rules/{id}", "Delete a keyword rule", roles=MANAGE, response=KeywordRuleDeleted,
          path_params=[RULE_ID])
async def delete_keyword_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request)
    async with transaction(request.app[SESSIONS]) as session:
        deleted = await faq_store.delete_rule(session, rule_id)
    if not deleted:
        raise ApiError(404, "not_found", "no such keyword rule")
    return _json(KeywordRuleDeleted(id=rule_id, deleted=True))


# -- business hours and thresholds ----------------------------------------------------------


async def _hours_read(session) -> BusinessHoursRead:
    settings = await faq_store.read_settings(session)
    timezone = await faq_store.shop_timezone(session)
    schedule = parse_schedule(settings.weekly_hours, settings.holidays, timezone)
    now = utcnow()
    return BusinessHoursRead(
        timezone=timezone, configured=schedule is not None, weekly=settings.weekly_hours,
        holidays=list(settings.holidays), open_now=schedule is None or schedule.is_open(now),
        next_opening=schedule.next_opening(now) if schedule is not None else None,
    )


@endpoint("GET", "/business-hours", "Business hours (weekly schedule and holidays, shop time zone)",
          roles=READ, response=BusinessHoursRead)
async def get_business_hours(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        return _json(await _hours_read(session))


@endpoint("PUT", "/business-hours",
          "Set business hours; outside them, offers to talk to a person say when someone will reply",
          roles=MANAGE, request=BusinessHoursUpdate, response=BusinessHoursRead)
@_with_invalid
async def put_business_hours(request: web.Request) -> web.Response:
    body = await parse_body(request, BusinessHoursUpdate)
    try:
        # `{}` when clearing the schedule: parse_schedule checks the holidays only beside a schedule,
        # and they are stored either way.
        parse_schedule(body.weekly if body.weekly is not None else {}, body.holidays)
    except HoursInvalid as exc:
        raise invalid_field("weekly" if not str(exc).startswith("holidays") else "holidays", str(exc)) from None
    async with transaction(request.app[SESSIONS]) as session:
        await faq_store.set_business_hours(session, canonical(body.weekly), sorted(set(body.holidays)))
        return _json(await _hours_read(session))


def _thresholds_read(overrides: dict) -> InquirySettingsRead:
    effective = dataclasses.asdict(thresholds_from(overrides))
    return InquirySettingsRead(thresholds={k: float(v) for k, v in effective.items()},
                               overrides={k: float(v) for k, v in overrides.items()})


@endpoint("GET", "/inquiry-settings", "The FAQ matcher's decision thresholds", roles=("admin",),
          response=InquirySettingsRead)
async def get_inquiry_settings(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        settings = await faq_store.read_settings(session)
    return _json(_thresholds_read(settings.thresholds))


@endpoint(
    "PUT", "/inquiry-settings",
    "Override the FAQ matcher's thresholds (answer, margin, disambiguate, ... in 0..1; max_offers 2 or 3)",
    roles=("admin",), request=InquirySettingsUpdate, response=InquirySettingsRead,
)
@_with_invalid
async def put_inquiry_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, InquirySettingsUpdate)
    known = {f.name: f.type for f in dataclasses.fields(MatchThresholds)}
    overrides: dict[str, float] = {}
    for name, value in body.thresholds.items():
        if name not in known:
            raise invalid_field(f"thresholds.{name}", f"unknown threshold; known: {', '.join(known)}")
        if name == "max_offers":
            if value not in (2, 3):
                raise invalid_field("thresholds.max_offers", "must be 2 or 3")
            overrides[name] = int(value)
        elif not 0.0 <= value <= 1.0:
            raise invalid_field(f"thresholds.{name}", "must be between 0 and 1")
        else:
            overrides[name] = float(value)
    async with transaction(request.app[SESSIONS]) as session:
        await faq_store.set_thresholds(session, overrides)
    return _json(_thresholds_read(overrides))
