"""Inquiries (issue 4): FAQ entries, CSV import/export, the unanswered report, keyword rules,
business hours and the matcher's thresholds.

Every write bumps a revision counter in the same transaction (storage/faq.py), so each
worker process picks the change up on its next inquiry, without a restart. The rules are
storage/faq.py's (entries) and flows/faq/settings.py's (rules, hours, thresholds).

Roles: admin and marketer edit; support reads. Thresholds: admin only.
Errors keep the API's shape, `{"error": {"code", "message"}}`, plus `field` for an
invalid field and, for a CSV import, `errors: [{"row", "line", "field", "message"}]`
(row 1 is the header; nothing is imported when any row is bad).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from kizuna.flows.faq import settings as inquiry_settings
from kizuna.flows.faq.hours import DAYS, MAX_HOLIDAYS, MAX_INTERVALS_PER_DAY
from kizuna.flows.faq.matching import MatchThresholds
from kizuna.storage import faq as faq_store
from kizuna.storage.db import transaction
from kizuna.storage.models import (
    FAQ_ALTERNATE_MAX,
    FAQ_ANSWER_MAX,
    FAQ_ID_MAX,
    FAQ_ID_PATTERN,
    FAQ_QUESTION_MAX,
    KEYWORD_PATTERN_MAX,
    FaqEntryCreate,
    FaqEntryRead,
    FaqEntryUpdate,
    KeywordRule,
    KeywordRuleCreate,
    KeywordRuleRead,
    KeywordRuleUpdate,
    MatchType,
)
from kizuna.storage.roles import MARKETING, STAFF_ROLES, Role

from .http import (
    NOT_BLANK, ApiError, Endpoint, actor, bool_param, bool_query, found, id_param, int_param, int_query, json_answer, next_cursor,
    optional, parse_body, path_id, read_as, services, text_param,
)


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
    """What `check_keyword_rule` takes: a flow_action it knows, and exactly one of reply_text and
    flow_action (on a change, together with the rule's stored values). A regex must also be fast
    enough (flows/faq/rules.py `check_pattern`): that a schema cannot say."""
    properties = schema["properties"]
    properties["pattern"].update(NOT_BLANK)
    properties["flow_action"]["anyOf"] = [{"enum": sorted(inquiry_settings.known_actions())}, {"type": "null"}]
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

    match_type: MatchType = optional()
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


_HANDOFF_AFTER = ("after this many questions in a row that the FAQ could not answer, the customer is handed to a "
                  "person instead of getting another apology (0: never)")


class InquirySettingsRead(BaseModel):
    thresholds: dict[str, float] = Field(description="the values in use")
    overrides: dict[str, float] = Field(description="the values set here (the rest are the defaults)")
    unanswered_handoff_after: int = Field(description=_HANDOFF_AFTER)


def _thresholds_schema(schema: dict) -> None:
    """The thresholds `settings.set_thresholds` takes: each in 0..1, max_offers 2 or 3, no others."""
    schema.pop("default", None)  # absent: unchanged (never null)
    schema["properties"] = {f.name: {"enum": [2, 3]} if f.name == "max_offers" else {"type": "number", "minimum": 0, "maximum": 1}
                            for f in dataclasses.fields(MatchThresholds)}
    schema["additionalProperties"] = False


class InquirySettingsUpdate(BaseModel):
    """The fields sent are changed; an absent one is kept."""

    model_config = ConfigDict(extra="forbid")
    thresholds: dict[str, float] = Field(default=None, json_schema_extra=_thresholds_schema,
                                         description="overrides of the FAQ matcher's thresholds; {} restores the defaults")
    unanswered_handoff_after: int = optional(ge=0, le=inquiry_settings.MAX_UNANSWERED_HANDOFF_AFTER, description=_HANDOFF_AFTER)

    @field_validator("unanswered_handoff_after", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        """A JSON integer (2, or 2.0 as JSON Schema counts it); not "2", true or 2.5."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a whole number")
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("must be a whole number")
        return int(value)


# -- FAQ entries ----------------------------------------------------------------------------


def _faq_id(request: web.Request) -> str:
    return request.match_info["faq_id"]


async def export_faq(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        entries = await faq_store.list_entries(session)
    return web.Response(
        text=faq_store.to_csv(entries), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="faq.csv"'},
    )


async def import_faq(request: web.Request) -> web.Response:
    replace = bool(bool_query(request, "replace"))
    data = await request.read()
    try:
        parsed = faq_store.parse_csv(data)
    except faq_store.CsvError as exc:
        raise ApiError(400, "invalid_csv", f"nothing was imported: {exc}",
                       errors=[e.as_dict() for e in exc.errors], total=exc.total) from None
    async with transaction(services(request).sessions) as session:
        report = await faq_store.import_entries(session, parsed, replace=replace, actor=actor(request))
    return json_answer(ImportResult(**dataclasses.asdict(report)))


async def unanswered_faq(request: web.Request) -> web.Response:
    days = int_query(request, "days")
    limit = int_query(request, "limit")
    since = services(request).clock() - timedelta(days=days)
    async with services(request).sessions() as session:
        rows = await faq_store.unanswered(session, since=since, limit=limit)
    return json_answer(UnansweredPage(since=since, items=[UnansweredItem(**dataclasses.asdict(row)) for row in rows]))


async def list_faq(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await faq_store.list_entries(session, enabled=bool_query(request, "enabled"),
                                            category=request.query.get("category"), after=request.query.get("after"),
                                            limit=limit)
    return json_answer(FaqPage(items=[read_as(FaqEntryRead, row) for row in rows], next_after=next_cursor(rows, limit)))


async def create_faq(request: web.Request) -> web.Response:
    body = await parse_body(request, FaqEntryIn)
    fields = faq_store.FaqFields(id=body.id, question=body.question, answer=body.answer,
                                 alternates=tuple(body.alternates), category=body.category, enabled=body.enabled)
    async with transaction(services(request).sessions) as session:
        entry = await faq_store.create_entry(session, fields, actor=actor(request))
    return json_answer(read_as(FaqEntryRead, entry), status=201)


async def get_faq(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        entry = found(await faq_store.get_entry(session, _faq_id(request)), "FAQ entry")
    return json_answer(read_as(FaqEntryRead, entry))


async def update_faq(request: web.Request) -> web.Response:
    body = await parse_body(request, FaqEntryChange)
    async with transaction(services(request).sessions) as session:
        entry = found(await faq_store.update_entry(session, _faq_id(request), body.model_dump(exclude_unset=True),
                                                 actor=actor(request)), "FAQ entry")
    return json_answer(read_as(FaqEntryRead, entry))


async def delete_faq(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        deleted = await faq_store.delete_entry(session, _faq_id(request), actor=actor(request))
    found(deleted, "FAQ entry")
    return json_answer(FaqDeleted(id=_faq_id(request), deleted=True))


# -- keyword rules --------------------------------------------------------------------------


async def list_keyword_rules(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        rules = await faq_store.list_rules(session)
    return json_answer(KeywordRuleList(items=[read_as(KeywordRuleRead, rule) for rule in rules]))


async def create_keyword_rule(request: web.Request) -> web.Response:
    body = await parse_body(request, KeywordRuleIn)
    async with transaction(services(request).sessions) as session:
        rule = await inquiry_settings.create_keyword_rule(session, body.model_dump(), actor=actor(request))
    return json_answer(read_as(KeywordRuleRead, rule), status=201)


async def get_keyword_rule(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        rule = found(await faq_store.get_rule(session, path_id(request)), "keyword rule")
    return json_answer(read_as(KeywordRuleRead, rule))


async def update_keyword_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request)
    body = await parse_body(request, KeywordRuleChange)
    async with transaction(services(request).sessions) as session:
        rule = await inquiry_settings.update_keyword_rule(session, rule_id, body.model_dump(exclude_unset=True),
                                                          actor=actor(request))
    return json_answer(read_as(KeywordRuleRead, rule))


async def delete_keyword_rule(request: web.Request) -> web.Response:
    rule_id = path_id(request)
    async with transaction(services(request).sessions) as session:
        await inquiry_settings.delete_keyword_rule(session, rule_id, actor=actor(request))
    return json_answer(KeywordRuleDeleted(id=rule_id, deleted=True))


# -- business hours and thresholds ----------------------------------------------------------


async def get_business_hours(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        hours = await inquiry_settings.business_hours(session, services(request).clock())
    return json_answer(BusinessHoursRead(**dataclasses.asdict(hours)))


async def put_business_hours(request: web.Request) -> web.Response:
    body = await parse_body(request, BusinessHoursUpdate)
    async with transaction(services(request).sessions) as session:
        hours = await inquiry_settings.set_business_hours(session, body.weekly, body.holidays, services(request).clock(),
                                                          actor=actor(request))
    return json_answer(BusinessHoursRead(**dataclasses.asdict(hours)))


def _thresholds_read(thresholds: inquiry_settings.Thresholds) -> InquirySettingsRead:
    return InquirySettingsRead(thresholds=thresholds.effective, overrides=thresholds.overrides,
                               unanswered_handoff_after=thresholds.unanswered_handoff_after)


async def get_inquiry_settings(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        return json_answer(_thresholds_read(await inquiry_settings.thresholds(session)))


async def put_inquiry_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, InquirySettingsUpdate)
    async with transaction(services(request).sessions) as session:
        if body.thresholds is not None:
            await inquiry_settings.set_thresholds(session, body.thresholds, actor=actor(request))
        if body.unanswered_handoff_after is not None:
            await inquiry_settings.set_unanswered_handoff_after(session, body.unanswered_handoff_after, actor=actor(request))
        return json_answer(_thresholds_read(await inquiry_settings.thresholds(session)))


FAQ_ID = text_param("faq_id", "path", maxLength=FAQ_ID_MAX, pattern=FAQ_ID_PATTERN)
RULE_ID = id_param(KeywordRule.id)

ENDPOINTS = [
    Endpoint("GET", "/faq/export", export_faq,
             "All FAQ entries as CSV (UTF-8; id,question,answer,alternates,category,enabled)",
             roles=STAFF_ROLES, response="text/csv"),
    Endpoint("POST", "/faq/import", import_faq,
             "Import FAQ entries from a CSV body (text/csv, UTF-8, header id,question,answer,alternates[,category,enabled]); "
             "all or nothing, 400 lists bad rows; entries not in the file are kept unless replace=true (then disabled)",
             roles=MARKETING, request="text/csv", response=ImportResult, query=[bool_param("replace", default=False)]),
    Endpoint("GET", "/faq/unanswered", unanswered_faq,
             "Questions the bot could not answer, the same text grouped, most frequent first (candidates for new FAQ entries)",
             roles=STAFF_ROLES, response=UnansweredPage,
             query=[int_param("days", minimum=1, maximum=365, default=30), int_param("limit", minimum=1, maximum=200, default=50)]),
    Endpoint("GET", "/faq", list_faq, "FAQ entries in id order (cursor paging with `after`)", roles=STAFF_ROLES,
             response=FaqPage,
             query=[bool_param("enabled"), text_param("category"),
                    text_param("after", description="next_after of the previous page"),
                    int_param("limit", minimum=1, maximum=1000, default=200)]),
    Endpoint("POST", "/faq", create_faq, "Create an FAQ entry (201); 409 if the id is taken", roles=MARKETING,
             request=FaqEntryIn, response=FaqEntryRead, statuses=(201,), errors={409: "exists: an FAQ entry has this id"}),
    Endpoint("GET", "/faq/{faq_id}", get_faq, "One FAQ entry", roles=STAFF_ROLES, response=FaqEntryRead,
             path_params=[FAQ_ID]),
    Endpoint("PUT", "/faq/{faq_id}", update_faq,
             "Change an FAQ entry: the fields sent are changed; effective for the next inquiry",
             roles=MARKETING, request=FaqEntryChange, response=FaqEntryRead, path_params=[FAQ_ID]),
    Endpoint("DELETE", "/faq/{faq_id}", delete_faq, "Delete an FAQ entry (disable it instead to keep it for later)",
             roles=MARKETING, response=FaqDeleted, path_params=[FAQ_ID]),
    Endpoint("GET", "/keyword-rules", list_keyword_rules, "Keyword rules in the order they are checked (priority, high first)",
             roles=STAFF_ROLES, response=KeywordRuleList),
    Endpoint("POST", "/keyword-rules", create_keyword_rule,
             "Create a keyword rule (201): exact / contains / regex, checked before the FAQ; reply_text or flow_action",
             roles=MARKETING, request=KeywordRuleIn, response=KeywordRuleRead, statuses=(201,),
             errors={409: f"too_many_rules: at most {inquiry_settings.MAX_RULES} keyword rules"}),
    Endpoint("GET", "/keyword-rules/{id}", get_keyword_rule, "One keyword rule", roles=STAFF_ROLES,
             response=KeywordRuleRead, path_params=[RULE_ID]),
    Endpoint("PUT", "/keyword-rules/{id}", update_keyword_rule, "Change a keyword rule: the fields sent are changed",
             roles=MARKETING, request=KeywordRuleChange, response=KeywordRuleRead, path_params=[RULE_ID]),
    Endpoint("DELETE", "/keyword-rules/{id}", delete_keyword_rule, "Delete a keyword rule", roles=MARKETING,
             response=KeywordRuleDeleted, path_params=[RULE_ID]),
    Endpoint("GET", "/business-hours", get_business_hours, "Business hours (weekly schedule and holidays, shop time zone)",
             roles=STAFF_ROLES, response=BusinessHoursRead),
    Endpoint("PUT", "/business-hours", put_business_hours,
             "Set business hours; outside them, offers to talk to a person say when someone will reply",
             roles=MARKETING, request=BusinessHoursUpdate, response=BusinessHoursRead),
    Endpoint("GET", "/inquiry-settings", get_inquiry_settings,
             "The FAQ matcher's decision thresholds, and after how many unanswered questions in a row a person takes over",
             roles=(Role.ADMIN,), response=InquirySettingsRead),
    Endpoint("PUT", "/inquiry-settings", put_inquiry_settings,
             "Override the FAQ matcher's thresholds (answer, margin, disambiguate, ... in 0..1; max_offers 2 or 3) and set "
             "unanswered_handoff_after (0..10, 0: never); the fields sent are changed",
             roles=(Role.ADMIN,), request=InquirySettingsUpdate, response=InquirySettingsRead),
]
