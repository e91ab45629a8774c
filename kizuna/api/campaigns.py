"""Campaigns (issue 15 §5): create and schedule a push to a segment, follow it, pause, resume, cancel.

Thin: the rules are campaigns/campaigns.py (the console calls the same), the sending is the
workers' (bot/campaign_sender.py). Roles: admin and marketer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from kizuna.campaigns import attribution, campaigns, recurrence
from kizuna.storage import campaign_narrowcasts, faq
from kizuna.storage.db import transaction
from kizuna.storage.errors import Invalid
from kizuna.storage.models import CAMPAIGN_NAME_MAX, CAMPAIGN_RECURRENCE_MAX, Campaign, CampaignDelivery
from kizuna.storage.roles import MARKETING

from .http import LIMIT, NOT_BLANK, Endpoint, actor, cursor_param, id_param, int_query, json_answer, next_cursor, parse_body, path_id, services
from .segments import RULE_DESCRIPTION

MESSAGES_DESCRIPTION = (
    "1 to 5 LINE message objects (text, image, sticker, flex; each may carry a quickReply). Text may say {name} "
    "(the customer's LINE name, else their registered name, else お客様) or {name|fallback}: personalised content is "
    "pushed one by one (LINE: 2,000/s), identical content goes by multicast (500 a request)."
)


class VariantIn(BaseModel):
    model_config = {"extra": "forbid"}

    messages: list[dict[str, Any]] = Field(description=MESSAGES_DESCRIPTION)
    percent: int = Field(ge=1, le=100, description="share of the audience outside the control group; the variants add up to 100")


def _one_of_each(schema: dict) -> None:
    """Exactly one of segment_id and rule, and of messages and variants (campaigns.create checks the same)."""
    def exactly_one(a: str, b: str, a_type: str, b_type: str) -> dict:
        return {"oneOf": [{"required": [a], "properties": {a: {"type": a_type}, b: {"type": "null"}}},
                          {"required": [b], "properties": {b: {"type": b_type}, a: {"type": "null"}}}]}

    schema["allOf"] = [exactly_one("segment_id", "rule", "integer", "object"), exactly_one("messages", "variants", "array", "array")]


class CampaignIn(BaseModel):
    model_config = {"extra": "forbid", "json_schema_extra": _one_of_each}

    name: str = Field(min_length=1, max_length=CAMPAIGN_NAME_MAX, **NOT_BLANK)
    segment_id: int | None = Field(default=None, ge=1, description="a saved segment (evaluated when the campaign starts)")
    rule: dict[str, Any] | None = Field(default=None, description="or an inline rule. " + RULE_DESCRIPTION)
    messages: list[dict[str, Any]] | None = Field(default=None, description=MESSAGES_DESCRIPTION + " Or give `variants`.")
    variants: list[VariantIn] | None = Field(default=None, max_length=4, description="an A/B split: 2 to 4 variants")
    send_at: datetime | None = Field(default=None, description="ISO 8601 with offset; null: now")
    quiet_hours: bool = Field(default=True, description="hold the start from 21:00 to 09:00 (shop's zone)")
    frequency_cap: bool = Field(default=True, description=f"leave out customers who got {campaigns.FREQUENCY_CAP} campaigns "
                                                          "in the last 7 days")
    holdout_percent: int = Field(default=0, ge=0, le=campaigns.MAX_HOLDOUT_PERCENT,
                                 description="a control group that receives nothing, for uplift (0: none)")
    track_links: bool = Field(default=True, description="turn the messages' links into tracked /r/{token} links, one per "
                                                        "recipient (the content is then pushed one by one)")
    coupon_id: int | None = Field(default=None, ge=1, description="an active coupon: each recipient gets their own grant, "
                                                                  "sent as a coupon card after the messages (then at most 4 messages)")
    draft: bool = Field(default=False, description="save without scheduling (schedule later with /schedule)")
    delivery: CampaignDelivery = Field(default=CampaignDelivery.AUTO, description=(
        "how identical content reaches LINE: multicast (500 a request), narrowcast (one request per variant to a LINE "
        "audience uploaded from the snapshot; refused with personalisation, tracked links or a coupon; LINE needs 50 or "
        "more per variant, else multicast), or auto (narrowcast from the shop's threshold, 100,000 by default)"))
    recurrence: str | None = Field(default=None, max_length=CAMPAIGN_RECURRENCE_MAX, description=(
        "a cron rule (minute hour day month weekday, the shop's zone), e.g. `0 10 * * 1` for Mondays 10:00: each "
        "occurrence starts its own run (a campaign with `parent_id`); at most hourly; leave `send_at` empty. Cancel stops it."))


class VariantRead(BaseModel):
    label: str
    percent: int
    method: str = Field(description="multicast (identical content) or push (personalised)")
    messages: list[dict[str, Any]]


class NarrowcastRead(BaseModel):
    variant: str
    state: str = Field(description="uploading, waiting (LINE builds the audience), sending, delivering (LINE sends), done, cancelled")
    uploaded: int = Field(description="LINE ids uploaded to the audience")
    request_id: str | None
    phase: str | None = Field(description="LINE's progress phase: waiting, sending, succeeded, failed")
    target_count: int | None = Field(description="LINE's counts from its progress endpoint (LINE reports counts, not who)")
    success_count: int | None
    failure_count: int | None
    error: str | None


class RunRead(BaseModel):
    id: int
    name: str
    status: str
    occurrence_at: datetime | None
    started_at: datetime | None
    targeted: int
    sent: int


class StatsRead(BaseModel):
    targeted: int = Field(description="recipients in the audience snapshot's batches (after opt-outs, blocks, the cap, the control)")
    sent: int
    failed: int
    undetermined: int = Field(description="may have reached LINE; never sent again (the retry key was older than 23 h)")
    pending: int
    control: int
    excluded: dict[str, int] = Field(description="left out: blocked, opted_out, capped, not_on_line")
    duplicates_avoided: int = Field(description="requests LINE answered 409: an earlier attempt had been accepted, nothing sent twice")
    clicks: int = Field(description="taps on the campaign's tracked links (/r/{token})")
    clickers: int = Field(description="recipients who tapped at least one")
    redeemed: int = Field(description="coupons the recipients redeemed within the attribution window (7 days from the start)")
    orders: int = Field(description="the recipients' completed orders within the attribution window")
    revenue: int = Field(description="yen of those orders")
    buyers: int = Field(description="recipients with an order within the window")


class ControlRead(BaseModel):
    size: int
    buyers: int
    orders: int
    revenue: int
    redeemed: int


class UpliftRead(BaseModel):
    difference: float = Field(description="purchase rate of the recipients minus that of the control group (0.012 = 1.2 points)")
    low: float | None = Field(description="95 % interval (Wald); null with fewer than 30 in a group")
    high: float | None


class CampaignRead(BaseModel):
    id: int
    name: str
    status: str
    segment_id: int | None
    rule: dict[str, Any] | None
    send_at: datetime | None
    quiet_hours: bool
    frequency_cap: bool
    holdout_percent: int
    coupon_id: int | None
    variants: list[VariantRead]
    audience: dict[str, int] | None = Field(description="the snapshot's counts by status, once started")
    note: str | None = Field(description="why it waits or stopped (quiet hours, LINE's monthly quota)")
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    stats: StatsRead
    control: ControlRead | None = Field(description="the control group over the same window (campaigns with a holdout)")
    uplift: UpliftRead | None
    delivery: str = Field(description="auto, multicast or narrowcast, as asked")
    by_narrowcast: bool = Field(description="the snapshot goes by narrowcast (decided at the start)")
    line_delivering: bool = Field(description="the narrowcast was handed to LINE: it can no longer be paused or cancelled")
    narrowcasts: list[NarrowcastRead]
    recurrence: str | None = Field(description="a recurring campaign's cron rule")
    next_runs: list[datetime] = Field(description="a recurring campaign's next three times")
    runs: list[RunRead] = Field(description="a recurring campaign's runs, newest first (50 at most)")
    parent_id: int | None = Field(description="the recurring campaign this is a run of")
    occurrence_at: datetime | None


class CampaignSummary(BaseModel):
    """A campaign in the list: its state and progress. The results (clicks, orders, the control
    group) are read from its own page: they join the recipients to the orders, too much for 50 rows."""

    id: int
    name: str
    status: str
    send_at: datetime | None
    note: str | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    targeted: int
    sent: int
    failed: int
    pending: int


class CampaignPage(BaseModel):
    items: list[CampaignSummary]
    next_before: int | None


async def _read(session, campaign: Campaign) -> CampaignRead:
    variants = await campaigns.variants_of(session, campaign.id)
    labels = {variant.id: variant.label for variant in variants}
    stats = await campaigns.stats(session, campaign.id)
    results = await attribution.results(session, campaign)
    return CampaignRead(
        id=campaign.id, name=campaign.name, status=campaign.status, segment_id=campaign.segment_id, rule=campaign.rule,
        send_at=campaign.send_at, quiet_hours=campaign.quiet_hours, frequency_cap=campaign.frequency_cap,
        holdout_percent=campaign.holdout_percent, coupon_id=campaign.coupon_id,
        variants=[VariantRead(label=v.label, percent=v.percent, method=v.method, messages=v.messages) for v in variants],
        audience=campaign.audience, note=campaign.note, created_by=campaign.created_by, created_at=campaign.created_at,
        started_at=campaign.started_at, completed_at=campaign.completed_at,
        stats=StatsRead(
            targeted=stats.targeted, sent=stats.sent, failed=stats.failed, undetermined=stats.undetermined, pending=stats.pending,
            control=stats.control, excluded=stats.excluded, duplicates_avoided=stats.duplicates_avoided, clicks=results.clicks,
            clickers=results.clickers, redeemed=results.treated.redeemed, orders=results.treated.orders,
            revenue=results.treated.revenue, buyers=results.treated.buyers),
        control=ControlRead(**vars(results.control)) if results.control else None,
        uplift=UpliftRead(**vars(results.uplift)) if results.uplift else None,
        delivery=campaign.delivery, by_narrowcast=campaign.by_narrowcast, line_delivering=campaign.narrowcast_sent_at is not None,
        narrowcasts=[NarrowcastRead(variant=labels.get(n.variant_id, "?"), state=n.state, uploaded=n.uploaded, request_id=n.request_id,
                                    phase=n.phase, target_count=n.target_count, success_count=n.success_count,
                                    failure_count=n.failure_count, error=n.error)
                     for n in await campaign_narrowcasts.of_campaign(session, campaign.id)],
        recurrence=campaign.recurrence, next_runs=await _next_runs(session, campaign),
        runs=[await _run(session, run) for run in await campaigns.runs_of(session, campaign.id)] if campaign.recurrence else [],
        parent_id=campaign.parent_id, occurrence_at=campaign.occurrence_at,
    )


async def _next_runs(session, campaign: Campaign) -> list[datetime]:
    if not campaign.recurrence or campaign.status in ("cancelled", "paused", "draft") or campaign.send_at is None:
        return []
    zone = await faq.shop_timezone(session)
    after = recurrence.next_runs(campaign.recurrence, after=campaign.send_at, zone=zone, count=2)
    return [campaign.send_at, *after]


async def _run(session, run: Campaign) -> RunRead:
    stats = await campaigns.stats(session, run.id)
    return RunRead(id=run.id, name=run.name, status=run.status, occurrence_at=run.occurrence_at, started_at=run.started_at,
                   targeted=stats.targeted, sent=stats.sent)


def _variants(body: CampaignIn) -> list[campaigns.VariantIn]:
    if (body.messages is None) == (body.variants is None):
        raise Invalid("messages", "give either messages or variants")
    if body.messages is not None:
        return [campaigns.VariantIn(messages=body.messages, percent=100)]
    return [campaigns.VariantIn(messages=v.messages, percent=v.percent) for v in body.variants or []]


async def create_campaign(request: web.Request) -> web.Response:
    body = await parse_body(request, CampaignIn)
    async with transaction(services(request).sessions) as session:
        campaign = await campaigns.create(
            session, name=body.name, segment_id=body.segment_id, rule=body.rule, variants=_variants(body), send_at=body.send_at,
            schedule=not body.draft, quiet_hours=body.quiet_hours, frequency_cap=body.frequency_cap,
            holdout_percent=body.holdout_percent, track_links=body.track_links, coupon_id=body.coupon_id, delivery=body.delivery,
            recurrence=body.recurrence, now=services(request).clock(), actor=actor(request),
        )
        return json_answer(await _read(session, campaign), status=201)


async def get_campaign(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        return json_answer(await _read(session, await campaigns.get(session, path_id(request))))


async def list_campaigns(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await campaigns.list_page(session, limit=limit, after=int_query(request, "before"))
        items = [await _summary(session, row) for row in rows]
    return json_answer(CampaignPage(items=items, next_before=next_cursor(rows, limit)))


async def _summary(session, campaign: Campaign) -> CampaignSummary:
    stats = await campaigns.stats(session, campaign.id)
    return CampaignSummary(
        id=campaign.id, name=campaign.name, status=campaign.status, send_at=campaign.send_at, note=campaign.note,
        created_by=campaign.created_by, created_at=campaign.created_at, started_at=campaign.started_at,
        completed_at=campaign.completed_at, targeted=stats.targeted, sent=stats.sent, failed=stats.failed, pending=stats.pending)


def _move(action: str):
    async def view(request: web.Request) -> web.Response:
        async with transaction(services(request).sessions) as session:
            campaign = await campaigns.move(session, path_id(request), action, now=services(request).clock(), actor=actor(request))
            return json_answer(await _read(session, campaign))

    view.__name__ = f"{action}_campaign"
    return view


class TestSendIn(BaseModel):
    model_config = {"extra": "forbid"}

    line_user_ids: list[str] = Field(min_length=1, max_length=campaigns.TEST_RECIPIENTS_MAX,
                                     description="the shop's own LINE accounts (friends of the account) to send to")


class TestSendOut(BaseModel):
    deliveries: int = Field(description="messages queued: one per variant and account")


async def test_send_campaign(request: web.Request) -> web.Response:
    body = await parse_body(request, TestSendIn)
    async with transaction(services(request).sessions) as session:
        delivery_ids = await campaigns.test_send(session, path_id(request), body.line_user_ids, now=services(request).clock(),
                                                 actor=actor(request))
    for delivery_id in delivery_ids:  # after the commit (a worker's sweeper sends them if this process dies first)
        await services(request).support.send(delivery_id)
    return json_answer(TestSendOut(deliveries=len(delivery_ids)))


_ID = [id_param(Campaign.id)]
_STATE = {409: "the campaign's state does not allow it (code campaign_state)"}

ENDPOINTS = [
    Endpoint("POST", "/campaigns", create_campaign,
             "Create a campaign and schedule it (201; `draft: true` saves it unscheduled): a name, a saved segment or an inline "
             "rule, 1–5 messages (or 2–4 A/B variants), `send_at` (null: now), quiet hours and the frequency cap (both on "
             "unless switched off), an optional control group. 400 names the field at fault.",
             roles=MARKETING, request=CampaignIn, response=CampaignRead, statuses=(201,)),
    Endpoint("GET", "/campaigns", list_campaigns,
             "Campaigns, newest first, with their progress (cursor paging with `before`); results on each campaign's own page",
             roles=MARKETING, response=CampaignPage, query=[cursor_param("before", Campaign.id), LIMIT]),
    Endpoint("GET", "/campaigns/{id}", get_campaign, "A campaign with its status and results so far",
             roles=MARKETING, response=CampaignRead, path_params=_ID),
    Endpoint("POST", "/campaigns/{id}/test", test_send_campaign,
             "Send the campaign's messages (each variant) to a few of the shop's own LINE accounts as a test: names filled "
             "in, links untracked, no coupon granted, not counted in the results", roles=MARKETING, request=TestSendIn,
             response=TestSendOut, path_params=_ID),
    Endpoint("POST", "/campaigns/{id}/schedule", _move("schedule"), "Schedule a draft", roles=MARKETING,
             response=CampaignRead, path_params=_ID, errors=_STATE),
    Endpoint("POST", "/campaigns/{id}/pause", _move("pause"),
             "Pause a scheduled or running campaign: every worker takes no more of its batches (within a second); "
             "requests already in flight finish; a narrowcast already handed to LINE cannot be paused (409)", roles=MARKETING, response=CampaignRead, path_params=_ID, errors=_STATE),
    Endpoint("POST", "/campaigns/{id}/resume", _move("resume"), "Resume a paused campaign", roles=MARKETING,
             response=CampaignRead, path_params=_ID, errors=_STATE),
    Endpoint("POST", "/campaigns/{id}/cancel", _move("cancel"),
             "Cancel a campaign for good: nothing more of it is sent (a recurring one: no more runs); a narrowcast "
             "already handed to LINE cannot be cancelled (409)", roles=MARKETING, response=CampaignRead,
             path_params=_ID, errors=_STATE),
]
