"""Segments (issue 14 §5): saved audiences as JSON rules, previews, members, presets.

Thin: the rule language and its checks are campaigns/rules.py, the SQL and the services
campaigns/segments.py (the console calls the same). A rule the language refuses is a 400 naming
the place of the problem (`rule.all[2].value: must be an integer`), never a 500; a value is
always a bound parameter, so a hostile one simply matches nobody.

Roles: admin and marketer (segments are marketing's; support staff get 403). The metric settings
(RFM thresholds, LTV's margin and years) are read by both and changed by admins only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field

from kizuna.campaigns import churn, segment_export, segments
from kizuna.campaigns.rules import FIELDS
from kizuna.storage import customer_metrics
from kizuna.storage.db import transaction
from kizuna.storage.models import SEGMENT_NAME_MAX, Customer, Segment
from kizuna.storage.roles import MARKETING, Role

from .http import (
    LIMIT, NOT_BLANK, Endpoint, actor, choice_query, cursor_param, id_param, int_query, json_answer, next_cursor, optional,
    parse_body, path_id, services, text_param,
)

NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"  # the provision record's texts: no control characters
RULE_DESCRIPTION = (
    'A segment rule: {"all": [rule, ...]}, {"any": [rule, ...]}, {"not": rule}, or a condition '
    '{"field", "op", "value"} (+ "within_days" for purchased_sku, purchased_category, coupon_redeemed). '
    f"Fields: {', '.join(FIELDS)}. Ops: eq ne lt lte gt gte in between contains (which a field takes: "
    "campaigns/rules.py). At most 10 levels and 100 conditions. "
    'Example: {"all": [{"field": "purchased_category", "op": "eq", "value": "ヘアケア", "within_days": 90}, '
    '{"field": "rfm_r", "op": "gte", "value": 4}, {"field": "registered", "op": "eq", "value": true}]}'
)


class SegmentIn(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=SEGMENT_NAME_MAX, **NOT_BLANK)
    rule: dict[str, Any] = Field(description=RULE_DESCRIPTION)


ORDER_DESCRIPTION = (
    "Member order: `id` (oldest customer first) or `churn_risk` (lowest p_alive first, customers without one last, "
    "then by id). Default: `churn_risk` for a rule with a p_alive condition (the 離脱予備軍 preset), else `id`."
)


class PreviewIn(BaseModel):
    model_config = {"extra": "forbid"}

    rule: dict[str, Any] = Field(description=RULE_DESCRIPTION)
    order: Literal["id", "churn_risk"] | None = Field(default=None, description=ORDER_DESCRIPTION)


class SegmentRead(BaseModel):
    id: int
    name: str
    rule: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class SegmentPage(BaseModel):
    items: list[SegmentRead]
    next_after: int | None


class SegmentCustomer(BaseModel):
    """A customer of a segment with their metrics now (recency_days and rfm_r as of the request)."""

    id: int
    line_user_id: str | None
    display_name: str | None
    full_name: str | None
    registered: bool
    followed: bool
    blocked: bool
    frequency: int
    monetary: int
    recency_days: int | None
    rfm_r: int | None
    rfm_f: int | None
    rfm_m: int | None
    decile: int | None
    f2: bool
    ltv: int = Field(description="formula LTV in yen (AOV × margin × purchases a year × expected years)")
    p_alive: float | None = Field(description="the churn model's probability that the customer is still active (BG/NBD); "
                                              "null until the model has fitted")
    expected_purchases: float | None = Field(description="purchase days the churn model expects in the next N days "
                                                         "(metric settings churn_horizon_days, default 90)")
    model_ltv: int | None = Field(description="model LTV in yen: expected purchases over expected_years × the "
                                              "Gamma-Gamma order value × gross margin; null without a model")


class PreviewOut(BaseModel):
    count: int
    sample: list[SegmentCustomer]


class MemberPage(BaseModel):
    items: list[SegmentCustomer]
    next_after: int | None


class PresetRead(BaseModel):
    key: str
    name: str
    description: str
    rule: dict[str, Any]


class PresetList(BaseModel):
    items: list[PresetRead]


def _customer(member: segments.Member) -> SegmentCustomer:
    customer, metrics = member.customer, member.metrics
    return SegmentCustomer(
        id=customer.id, line_user_id=customer.line_user_id, display_name=customer.display_name, full_name=customer.full_name,
        registered=customer.registered, followed=customer.followed, blocked=customer.blocked,
        frequency=metrics.frequency, monetary=metrics.monetary, recency_days=metrics.recency_days, rfm_r=metrics.rfm_r,
        rfm_f=metrics.rfm_f, rfm_m=metrics.rfm_m, decile=metrics.decile, f2=metrics.f2, ltv=metrics.ltv, p_alive=metrics.p_alive,
        expected_purchases=metrics.expected_purchases, model_ltv=metrics.model_ltv,
    )


def _read(segment: Segment) -> SegmentRead:
    return SegmentRead.model_validate(segment, from_attributes=True)


async def create_segment(request: web.Request) -> web.Response:
    body = await parse_body(request, SegmentIn)
    async with transaction(services(request).sessions) as session:
        segment = await segments.create(session, body.name, body.rule, now=services(request).clock(), actor=actor(request))
    return json_answer(_read(segment), status=201)


async def list_segments(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await segments.list_page(session, limit=limit, after=int_query(request, "after"))
    return json_answer(SegmentPage(items=[_read(row) for row in rows], next_after=next_cursor(rows, limit)))


async def preview_segment(request: web.Request) -> web.Response:
    body = await parse_body(request, PreviewIn)
    async with services(request).sessions() as session:
        preview = await segments.preview(session, body.rule, now=services(request).clock(), order=body.order)
    return json_answer(PreviewOut(count=preview.count, sample=[_customer(member) for member in preview.sample]))


async def segment_customers(request: web.Request) -> web.Response:
    segment_id = path_id(request)
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await segments.members(session, segment_id, now=services(request).clock(), limit=limit,
                                      after=int_query(request, "after"), order=choice_query(request, "order"))
    return json_answer(MemberPage(items=[_customer(row) for row in rows],
                                  next_after=next_cursor(rows, limit, lambda member: member.customer.id)))


async def export_segment(request: web.Request) -> web.StreamResponse:
    """The members as CSV: campaigns/segment_export.py (audited, formula-safe, UTF-8 with BOM), streamed."""
    chunks = await segment_export.export(services(request).sessions, path_id(request), now=services(request).clock(),
                                         actor=actor(request), via="api", recipient=request.query.get("recipient"),
                                         purpose=request.query.get("purpose"))
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": f'attachment; filename="{segment_export.filename(path_id(request))}"'})
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def list_presets(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        fitted = await churn.model_fitted(session)
    presets = segments.presets(services(request).clock(), churn_model=fitted)
    return json_answer(PresetList(items=[PresetRead(key=p.key, name=p.name, description=p.description, rule=p.rule) for p in presets]))



# -- the shop's metric settings (RFM thresholds, LTV parameters) --------------------------------------



class MetricSettingsRead(BaseModel):
    """The rules in force (defaults with the shop's overrides) and the overrides alone."""

    recency_days: list[int] = Field(description="R: score 5 up to the first number of days, 4 up to the second, ... 1 beyond the last")
    frequency_orders: list[int] = Field(description="F: score 2 from the first number of completed orders, ... 5 from the last")
    monetary_yen: list[int] = Field(description="M: score 2 from the first total spend in yen, ... 5 from the last")
    gross_margin: float
    expected_years: float
    churn_horizon_days: int = Field(description="the churn model's expected purchases are over the next N days")
    annual_discount_rate: float = Field(description="model LTV's discount rate a year, applied per 30 days (0: none)")
    overrides: dict[str, Any]
    rescoring: bool = Field(description="true from a change until the workers have rescored every customer with it "
                            "(seconds: F and M scores and LTV are as of the previous settings meanwhile)")
    churn_model: dict[str, Any] | None = Field(
        default=None, description="the churn model's last run: ran_at, fitted, reason (why not), customers, repeat_customers, "
        "fit_sample, unit (days), bgnbd {r, alpha, a, b}, gamma_gamma {p, q, gamma}, spend_reason; null: never ran")


class MetricSettingsIn(BaseModel):
    """PUT: the shop's overrides as a whole; a setting left out follows the default. Each
    threshold list is four ascending whole numbers."""

    model_config = {"extra": "forbid"}

    recency_days: list[int] = optional(min_length=4, max_length=4)
    frequency_orders: list[int] = optional(min_length=4, max_length=4)
    monetary_yen: list[int] = optional(min_length=4, max_length=4)
    gross_margin: float = optional(gt=0, le=1)
    expected_years: float = optional(gt=0, le=50)
    churn_horizon_days: int = optional(ge=1, le=3650)
    annual_discount_rate: float = optional(ge=0, lt=1)


async def _settings_read(session) -> MetricSettingsRead:
    rules, overrides = await customer_metrics.load_settings(session)
    return MetricSettingsRead(**rules.as_json(), overrides=overrides, rescoring=await customer_metrics.rescoring(session),
                              churn_model=await customer_metrics.load_churn_model(session))


async def get_metric_settings(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        return json_answer(await _settings_read(session))


async def put_metric_settings(request: web.Request) -> web.Response:
    body = await parse_body(request, MetricSettingsIn)
    overrides = body.model_dump(exclude_unset=True)
    async with transaction(services(request).sessions) as session:
        await customer_metrics.set_rules(session, overrides, now=services(request).clock(), actor=actor(request))
        return json_answer(await _settings_read(session))


ENDPOINTS = [
    Endpoint("POST", "/segments", create_segment,
             "Save a segment (201): a name and a rule. 400 names the place of a problem in the rule (rule.all[2].value).",
             roles=MARKETING, request=SegmentIn, response=SegmentRead, statuses=(201,)),
    Endpoint("GET", "/segments", list_segments, "Saved segments, oldest first (cursor paging with `after`)",
             roles=MARKETING, response=SegmentPage, query=[cursor_param("after", Segment.id), LIMIT]),
    Endpoint("POST", "/segments/preview", preview_segment,
             "How many customers a rule matches now, and the first 10 (by id, or by churn risk: `order`) "
             "(nothing is saved). 400 names a problem in the rule.",
             roles=MARKETING, request=PreviewIn, response=PreviewOut),
    Endpoint("GET", "/segments/presets", list_presets,
             "The preset segments (優良顧客, 休眠顧客, 離脱予備軍, 新規顧客, F2転換候補, 誕生月) as rules to preview or save. "
             "離脱予備軍 is `frequency ≥ 2 and p_alive < 0.5` once the churn model has fitted (listed by churn risk), "
             "and `frequency ≥ 2 and recency_days between 61 and 180` until then",
             roles=MARKETING, response=PresetList),
    Endpoint("GET", "/segments/{id}/customers", segment_customers,
             "The segment's customers now with their metrics, by id or by churn risk (`order`; a segment whose rule has "
             "a p_alive condition is listed by churn risk unless asked otherwise). Keyset paging: pass `next_after` "
             "(the last customer's id) as `after`; in churn-risk order the next page starts after that customer's "
             "(p_alive, id), so no one is skipped or repeated while the model's values stay as they are (they change "
             "once a day, when the model runs)",
             roles=MARKETING, response=MemberPage, path_params=[id_param(Segment.id)],
             query=[cursor_param("after", Customer.id), LIMIT,
                    text_param("order", enum=list(segments.ORDERS), description=ORDER_DESCRIPTION)]),
    Endpoint("GET", "/metric-settings", get_metric_settings,
             "The RFM thresholds, LTV and churn-model parameters in force, the shop's overrides of the defaults, "
             "and the churn model's last run (when, its parameters, or why it is not available)",
             roles=MARKETING, response=MetricSettingsRead),
    Endpoint("PUT", "/metric-settings", put_metric_settings,
             "Replace the shop's overrides (a setting left out follows the default). The workers then rescore every "
             "customer with them (`rescoring` is true until they have: seconds on a large shop) and refit the churn model. "
             "400 names the invalid setting.",
             roles=(Role.ADMIN,), request=MetricSettingsIn, response=MetricSettingsRead),
    Endpoint("GET", "/segments/{id}/export.csv", export_segment,
             "The segment's customers now as CSV (UTF-8 with BOM; cells that would be formulas start with '); "
             f"columns: {','.join(segment_export.COLUMNS)}. Recorded in the audit log and as a third-party provision record: "
             f"`recipient` (default {segment_export.DEFAULT_RECIPIENT}) and `purpose` (default {segment_export.DEFAULT_PURPOSE}).",
             roles=MARKETING, response="text/csv", path_params=[id_param(Segment.id)],
             query=[text_param("recipient", maxLength=200, pattern=NO_CONTROL), text_param("purpose", maxLength=200, pattern=NO_CONTROL)]),
]
