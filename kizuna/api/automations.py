"""Automation rules (IF → THEN): create, read, replace, enable / disable, delete, the recent firings,
and the settings of the daily looks. The rules are campaigns/automations.py's (the console calls
the same functions)."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from kizuna.campaigns import automations
from kizuna.storage import automations as store
from kizuna.storage.db import transaction
from kizuna.storage.models import AutomationRule
from kizuna.storage.roles import MARKETING

from .http import TOKEN, Endpoint, id_param, int_param, int_query, json_answer, parse_body, path_id, services


class RuleRead(BaseModel):
    id: int
    name: str
    enabled: bool
    trigger: str
    trigger_value: str | None
    trigger_options: dict
    conditions: list[dict]
    actions: list[dict]
    webhook_secret: str  # signs the rule's webhook calls: X-Kizuna-Signature = sha256=HMAC-SHA256(secret, body)
    firings: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class RuleList(BaseModel):
    items: list[RuleRead]


class FiringRead(BaseModel):
    id: int
    rule_id: int
    rule_name: str
    cause_id: int
    cause_kind: str
    cause_value: str | None
    depth: int  # rules between the cause and a person's or system's act
    customer_id: int
    status: str  # done | conditions_unmet
    outcomes: list[str]  # what each action did
    created_at: datetime


class FiringList(BaseModel):
    items: list[FiringRead]


class RuleDeleted(BaseModel):
    id: int
    deleted: bool


class SettingsRead(BaseModel):
    daily_hour: int
    coupon_reminder_days: int
    coupon_reminder_enabled: bool
    coupon_reminder_text: str


def _settings(found) -> SettingsRead:
    return SettingsRead(daily_hour=found.daily_hour, coupon_reminder_days=found.coupon_reminder_days,
                        coupon_reminder_enabled=found.coupon_reminder_enabled, coupon_reminder_text=found.coupon_reminder_text)


def _dev(request: web.Request) -> bool:
    """http webhook URLs to localhost are accepted only on a development install (plain http)."""
    return services(request).public_url.startswith("http://")


def _read(rule: AutomationRule, firings: int) -> RuleRead:
    return RuleRead(id=rule.id, name=rule.name, enabled=rule.enabled, trigger=rule.trigger, trigger_value=rule.trigger_value,
                    trigger_options=rule.trigger_options or {}, conditions=list(rule.conditions or []), actions=list(rule.actions or []),
                    webhook_secret=rule.webhook_secret, firings=firings, created_by=rule.created_by, created_at=rule.created_at,
                    updated_at=rule.updated_at)


async def _answer(session, rule: AutomationRule) -> RuleRead:
    return _read(rule, (await store.firing_counts(session)).get(rule.id, 0))


async def create_automation(request: web.Request) -> web.Response:
    body = await parse_body(request, automations.RuleCreate)
    async with transaction(services(request).sessions) as session:
        rule = await automations.create(session, body, created_by=f"token:{request[TOKEN].name}", now=services(request).clock(),
                                        allow_http_localhost=_dev(request))
        answer = _read(rule, 0)
    return json_answer(answer, status=201)


async def list_automations(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        counts = await store.firing_counts(session)
        items = [_read(rule, counts.get(rule.id, 0)) for rule in await store.list_all(session)]
    return json_answer(RuleList(items=items))


async def get_automation(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        answer = await _answer(session, await store.get(session, path_id(request)))
    return json_answer(answer)


async def replace_automation(request: web.Request) -> web.Response:
    body = await parse_body(request, automations.RuleCreate)
    async with transaction(services(request).sessions) as session:
        rule = await automations.replace(session, path_id(request), body, now=services(request).clock(), allow_http_localhost=_dev(request))
        answer = await _answer(session, rule)
    return json_answer(answer)


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    async with transaction(services(request).sessions) as session:
        answer = await _answer(session, await automations.set_enabled(session, path_id(request), enabled, now=services(request).clock()))
    return json_answer(answer)


async def enable_automation(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def disable_automation(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


async def delete_automation(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        await store.delete(session, path_id(request))
    return json_answer(RuleDeleted(id=path_id(request), deleted=True))


def _firings(rows) -> FiringList:
    return FiringList(items=[FiringRead(id=row.id, rule_id=row.rule_id, rule_name=row.rule_name, cause_id=row.cause_id,
                                       cause_kind=row.cause_kind, cause_value=row.cause_value, depth=row.depth,
                                       customer_id=row.customer_id, status=row.status, outcomes=row.outcomes,
                                       created_at=row.created_at) for row in rows])


async def automation_firings(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        await store.get(session, path_id(request))
        rows = await store.recent_firings(session, rule_id=path_id(request), limit=int_query(request, "limit"))
    return json_answer(_firings(rows))


async def all_automation_firings(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        rows = await store.recent_firings(session, limit=int_query(request, "limit"))
    return json_answer(_firings(rows))


async def get_automation_settings(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        found = await store.settings(session)
        answer = _settings(found)
    return json_answer(answer)


async def put_automation_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, automations.SettingsUpdate)
    async with transaction(services(request).sessions) as session:
        found = await automations.update_settings(session, body)
        answer = _settings(found)
    return json_answer(answer)


_ID = [id_param(AutomationRule.id)]
_LIMIT = [int_param("limit", minimum=1, maximum=500, default=100, description="the newest firings, at most this many")]

ENDPOINTS = [
    Endpoint("POST", "/automations", create_automation,
             "Create an automation rule (201): a trigger (tag_added, tag_removed, link_tapped, order_placed, api_event, "
             "segment_entered, registration_completed, friend_source, birthday_month, coupon_expiring) with its value and "
             "options, optional conditions (has_tag, lacks_tag, in_segment, not_in_segment) and 1-10 actions (add_tag, "
             "remove_tag, start_sequence, stop_sequence, switch_rich_menu, send_message, grant_coupon, call_webhook). "
             "Each rule fires once per cause. 400 names the invalid field; nothing is stored then.",
             roles=MARKETING, request=automations.RuleCreate, response=RuleRead, statuses=(201,)),
    Endpoint("GET", "/automations", list_automations, "Every automation rule, with its number of firings", roles=MARKETING, response=RuleList),
    Endpoint("GET", "/automations/{id}", get_automation, "An automation rule", roles=MARKETING, response=RuleRead, path_params=_ID),
    Endpoint("PUT", "/automations/{id}", replace_automation,
             "Replace an automation rule (its firings stay; its webhook secret too unless one is given)",
             roles=MARKETING, request=automations.RuleCreate, response=RuleRead, path_params=_ID),
    Endpoint("DELETE", "/automations/{id}", delete_automation, "Delete an automation rule with its firings (disable it to keep them)",
             roles=MARKETING, response=RuleDeleted, path_params=_ID),
    Endpoint("POST", "/automations/{id}/enable", enable_automation, "Enable: causes recorded from now on fire it",
             roles=MARKETING, response=RuleRead, path_params=_ID),
    Endpoint("POST", "/automations/{id}/disable", disable_automation, "Disable: nothing fires it until enabled again",
             roles=MARKETING, response=RuleRead, path_params=_ID),
    Endpoint("GET", "/automations/{id}/firings", automation_firings, "The rule's recent firings, newest first, with what each action did",
             roles=MARKETING, response=FiringList, path_params=_ID, query=_LIMIT),
    Endpoint("GET", "/automation-firings", all_automation_firings, "Every rule's recent firings, newest first",
             roles=MARKETING, response=FiringList, query=_LIMIT),
    Endpoint("GET", "/automation-settings", get_automation_settings,
             "The daily looks: the shop's local hour they run at, how many days ahead a coupon counts as expiring, the built-in reminder",
             roles=MARKETING, response=SettingsRead),
    Endpoint("PUT", "/automation-settings", put_automation_settings, "Change the daily looks' hour and the built-in coupon reminder (on or off, its days ahead, its text)",
             roles=MARKETING, request=automations.SettingsUpdate, response=SettingsRead),
]
