"""配信 (admins and marketers): campaigns to a segment — the list, the editor, a campaign's page.

The rules are campaigns/campaigns.py's, as for the REST API (api/campaigns.py): the editor's form
is turned into the service's arguments and what the service refuses is shown beside the field it
names (`messages[1].text` beside the second message). The workers send (bot/campaign_sender.py);
this page only creates, moves (pause, resume, cancel, schedule a draft) and reads.

- The editor: a name, the audience (a saved segment or one of the CRM presets, kept as an inline
  rule), 1–5 messages (text with {name}, or an image URL), when (now or a date and time in the
  shop's zone), quiet hours and the frequency cap (on unless switched off), a control group. Beside
  it a LINE-like preview (static/campaigns.js draws it as the form changes; the server draws the
  same on a re-render) and the estimated audience after blocks, opt-outs and the cap
  (`POST /campaigns/estimate`, the same form, answered in JSON; storage/campaign_batches.estimate
  uses the snapshot's own CASE). An optional A/B test sends two versions (the API takes up to four).
  An optional coupon (each recipient gets their own grant, a coupon card after the messages) and
  the tracked-links switch (on: links become /r/{token} per recipient, so the campaign is pushed
  one by one).
- A campaign's page: status, schedule, note (quiet hours, LINE's quota), a progress bar the page
  polls for every second while the campaign is scheduled or running (`GET /campaigns/{id}/progress`,
  a background request: it never keeps a session alive), the buttons its state allows, the figures
  and a chart of sent / failed / control; the results (campaigns/attribution.py: taps, redemptions,
  orders and revenue of the recipients against the control group, the purchase-rate difference
  with its interval) as figures and a chart; a test send to the shop's own LINE accounts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aiohttp import web

from kizuna.campaigns import attribution, campaigns, churn, insight, messages as campaign_messages, recurrence, rules, segments
from kizuna.storage import campaign_batches, campaign_insights, campaign_narrowcasts, coupons
from kizuna.storage.errors import Conflict, Invalid, NotFound, ServiceError
from kizuna.storage.models import CAMPAIGN_NAME_MAX, CAMPAIGN_RECURRENCE_MAX, Campaign, CampaignDelivery, CampaignStatus, RecipientStatus

from .. import forms, segment_form
from ..i18n import MESSAGES
from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import MARKETING, Refused, route, see_other

ID = "{campaign_id:[0-9]{1,9}}"
LIST_LIMIT = 50  # a page of the list (each row reads its campaign's figures)
SLOTS = campaign_messages.MAX_MESSAGES
KINDS = ("text", "image")
WHENS = ("now", "at", "repeat")  # the schedule picker: now, at a time, 繰り返し (a cron rule)
MOVES = ("pause", "resume", "cancel", "schedule")
# Which buttons a state offers (the service decides; a stale page gets its Conflict).
MOVES_BY_STATUS = {
    CampaignStatus.DRAFT: ("schedule", "cancel"),
    CampaignStatus.SCHEDULED: ("pause", "cancel"),
    CampaignStatus.RUNNING: ("pause", "cancel"),
    CampaignStatus.PAUSED: ("resume", "cancel"),
}
LIVE_STATUSES = (CampaignStatus.SCHEDULED, CampaignStatus.RUNNING)
EXCLUDED = (RecipientStatus.BLOCKED, RecipientStatus.OPTED_OUT, RecipientStatus.CAPPED, RecipientStatus.NOT_ON_LINE)
NOTICES = ("created", "started", "drafted", "pause", "resume", "cancel", "schedule", "tested")
PREVIEW_NAME = "花子"  # the name {name} shows in the preview
# A message's refusal: `messages[1].text`, or with A/B `variants[1].messages[0].text`.
_SLOT_FIELD = re.compile(r"^(?:variants\[(\d)\]\.)?messages\[(\d)\]")
_VARIANT_MESSAGES = re.compile(r"^variants\[(\d)\]\.messages$")
PREFIXES = ("m", "b")  # the form's names of variant A's and B's message slots (m0_text, b0_text …)


# -- the editor's form ------------------------------------------------------------------------


@dataclass
class Slot:
    kind: str = "text"
    text: str = ""
    image: str = ""

    @property
    def empty(self) -> bool:
        return not (self.text.strip() if self.kind == "text" else self.image.strip())

    def message(self) -> dict:
        if self.kind == "image":
            url = self.image.strip()
            return {"type": "image", "originalContentUrl": url, "previewImageUrl": url}
        return {"type": "text", "text": self.text}


@dataclass
class Editor:
    name: str = ""
    audience: str = ""  # "segment:12" or "preset:loyal"
    slots: list[Slot] = field(default_factory=lambda: [Slot()])  # variant A (the only one without A/B)
    ab: bool = False  # an A/B split: variant B's messages, `split` % of the audience to A
    slots_b: list[Slot] = field(default_factory=lambda: [Slot()])
    split: str = "50"
    when: str = "now"  # now | at
    send_at: str = ""  # datetime-local, shop time
    quiet_hours: bool = True
    frequency_cap: bool = True
    holdout: str = "0"
    coupon: str = ""  # a coupon's id, or "" for none
    track_links: bool = True
    delivery: str = CampaignDelivery.AUTO  # auto | multicast | narrowcast
    recurrence: str = "0 10 * * 1"  # the cron rule, with when == "repeat"


def _read_slots(form, prefix: str) -> list[Slot]:
    count = forms.whole_number(str(form.get(f"{prefix}_slots", "1")))
    count = min(max(count if isinstance(count, int) else 1, 1), SLOTS)
    slots = []
    for index in range(count):
        kind = str(form.get(f"{prefix}{index}_type", "text"))
        slots.append(Slot(kind=kind if kind in KINDS else "text", text=str(form.get(f"{prefix}{index}_text", ""))[:6000],
                          image=str(form.get(f"{prefix}{index}_image", ""))[:2100]))
    return slots


def _read(form) -> Editor:
    return Editor(
        name=str(form.get("name", ""))[:300], audience=str(form.get("audience", ""))[:40], slots=_read_slots(form, "m"),
        ab=form.get("ab") == "on", slots_b=_read_slots(form, "b"), split=str(form.get("split", "50"))[:10],
        when=str(form.get("when")) if form.get("when") in WHENS else "now", send_at=str(form.get("send_at", ""))[:30],
        quiet_hours=form.get("quiet_hours") == "on", frequency_cap=form.get("frequency_cap") == "on",
        holdout=str(form.get("holdout", "0"))[:10], coupon=str(form.get("coupon", ""))[:10],
        track_links=form.get("track_links") == "on",
        delivery=str(form.get("delivery")) if form.get("delivery") in set(CampaignDelivery) else CampaignDelivery.AUTO,
        recurrence=str(form.get("recurrence", ""))[:CAMPAIGN_RECURRENCE_MAX * 2],
    )


def _coupon_id(editor: Editor) -> int | None:
    """The chosen coupon (the service checks that it exists and is active)."""
    value = editor.coupon.strip()
    if not value:
        return None
    if not value.isdigit():
        raise Invalid("coupon_id", "no such active coupon")
    return int(value)


def _messages(slots: list[Slot]) -> list[dict]:
    """The slots with something in them, in order (an empty slot is a slot not used)."""
    return [slot.message() for slot in slots if not slot.empty]


def _variants(editor: Editor) -> list[campaigns.VariantIn]:
    if not editor.ab:
        return [campaigns.VariantIn(messages=_messages(editor.slots), percent=100)]
    split = forms.whole_number(editor.split)
    if not isinstance(split, int):
        raise Invalid("variants[0].percent", "must be a whole number")
    return [campaigns.VariantIn(messages=_messages(editor.slots), percent=split),
            campaigns.VariantIn(messages=_messages(editor.slots_b), percent=100 - split)]


def _send_at(editor: Editor, zone) -> datetime | None:
    if editor.when != "at":  # now, or a recurrence's own times
        return None
    try:
        local = datetime.fromisoformat(editor.send_at.strip())
    except ValueError:
        raise Invalid("send_at", "must be a date and time") from None
    return local.replace(tzinfo=zone) if local.tzinfo is None else local


def _holdout(editor: Editor) -> int:
    value = forms.whole_number(editor.holdout)
    if value is None:
        return 0
    if not isinstance(value, int):
        raise Invalid("holdout_percent", "must be a whole number")
    return value


@dataclass(frozen=True)
class Audience:
    segment_id: int | None
    rule: dict | None


def _audience(choice: str, presets: list[segments.Preset]) -> Audience:
    kind, _, key = choice.partition(":")
    if kind == "segment" and key.isdigit() and len(key) < 10:
        return Audience(int(key), None)
    preset = next((p for p in presets if kind == "preset" and p.key == key), None)
    if preset is None:
        raise Invalid("segment_id", "choose a segment")
    return Audience(None, preset.rule)


async def _presets(request: web.Request, session) -> list[segments.Preset]:
    ctx = request[CONTEXT]
    return segments.presets(ctx.now, getattr(ctx.timezone, "key", "Asia/Tokyo"), churn_model=await churn.model_fitted(session))


def _problems(error: ServiceError) -> dict[str, forms.Problem]:
    """{field of the form: Problem}: a message's refusal at its slot (`msg-b-1`: B's second), others at theirs."""
    if isinstance(error, Invalid):
        # Two refusals of the messages as a whole that are not about their number: the service
        # names only the field, so its message tells them apart (as the API shows it anyway).
        where = "messages_b" if error.field.startswith("variants[1]") else "messages"
        if error.field.endswith("messages") and "coupon" in error.message:
            return {where: forms.Problem("invalid.campaign.messages_coupon", f"{error.field}: {error.message}")}
        if error.field.endswith("messages") and "links" in error.message:
            return {where: forms.Problem("invalid.campaign.links", f"{error.field}: {error.message}")}
        slot = _SLOT_FIELD.match(error.field)
        if slot is not None:
            prefix = PREFIXES[int(slot.group(1) or 0)]
            return {f"msg-{prefix}-{slot.group(2)}": forms.Problem("invalid.campaign.message", f"{error.field}: {error.message}")}
        whole = _VARIANT_MESSAGES.match(error.field)
        if whole is not None:  # a variant without messages
            name = "messages" if whole.group(1) == "0" else "messages_b"
            return {name: forms.Problem(f"invalid.campaign.{name}", f"{error.field}: {error.message}")}
        if error.field.startswith("variants"):  # a variant's share, or the shares' sum
            return {"split": forms.Problem("invalid.campaign.split", f"{error.field}: {error.message}")}
        name = {"segment_id": "audience", "rule": "audience", "coupon_id": "coupon"}.get(
            error.field.split(".")[0].split("[")[0], error.field.split(".")[0].split("[")[0])
        key = f"invalid.campaign.{name}"
        return {name: forms.Problem(key if key in MESSAGES else "invalid.field", f"{error.field}: {error.message}")}
    return forms.problems(error, "campaign")


def _slot_problems(errors: dict, editor: Editor) -> dict[str, forms.Problem]:
    """A message's refusal names its place among the messages sent (empty slots are skipped):
    shown at the slot the marketer sees ({"m1": problem} for A's second slot)."""
    out = {}
    for key, problem in errors.items():
        if key.startswith("msg-"):
            _, prefix, position = key.split("-")
            used = [index for index, slot in enumerate(editor.slots if prefix == "m" else editor.slots_b) if not slot.empty]
            position = int(position)
            out[f"{prefix}{used[position] if position < len(used) else position}"] = problem
    return out


async def _editor_page(request: web.Request, editor: Editor, *, errors: dict | None = None, status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    async with db(request) as session:
        saved = await segments.list_page(session, limit=500, after=None)
        presets = await _presets(request, session)
        active_coupons = await coupons.list_coupons(session, active=True, limit=200)
    errors = errors or {}
    if not editor.send_at:
        editor.send_at = _next_hour(ctx.now, ctx.timezone)
    return render(request, "campaign_editor.html", {
        "editor": editor, "errors": errors, "slot_errors": _slot_problems(errors, editor), "saved": saved, "presets": presets,
        "slots_max": SLOTS, "kinds": KINDS, "preview": _preview(_messages(editor.slots)), "preview_b": _preview(_messages(editor.slots_b)),
        "preview_name": PREVIEW_NAME, "split_b": _split_b(editor.split),
        "holdout_max": campaigns.MAX_HOLDOUT_PERCENT, "cap": campaigns.FREQUENCY_CAP, "name_max": CAMPAIGN_NAME_MAX,
        "min_send_at": ctx.now.astimezone(ctx.timezone).strftime("%Y-%m-%dT%H:%M"),
        "zone": getattr(ctx.timezone, "key", str(ctx.timezone)), "coupons": active_coupons,
        "coupon": next((c for c in active_coupons if str(c.id) == editor.coupon), None),
        "deliveries": list(CampaignDelivery), "narrowcast_min": campaigns.NARROWCAST_MIN_AUDIENCE,
        "recurrence_max": CAMPAIGN_RECURRENCE_MAX, "recurrence_preview": _recurrence_preview(ctx, editor),
    }, status=status)


def _recurrence_preview(ctx, editor: Editor) -> dict:
    """The rule's next three runs as staff read them (12/07(月) 10:00), or why it is refused."""
    zone = getattr(ctx.timezone, "key", "Asia/Tokyo")
    try:
        rule = recurrence.check(editor.recurrence, zone=zone, now=ctx.now)
    except Invalid as error:
        return {"runs": [], "problem": error.message}
    runs = recurrence.next_runs(rule, after=ctx.now, zone=zone, count=3)
    return {"runs": [recurrence.label(run, zone) for run in runs], "problem": None,
            "explain": recurrence.describe(rule) if ctx.locale == "en" else None}


def _split_b(split: str) -> str:
    value = forms.whole_number(split)
    return str(100 - value) if isinstance(value, int) and 0 <= value <= 100 else ""


def _next_hour(now: datetime, zone) -> str:
    local = now.astimezone(zone).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return local.strftime("%Y-%m-%dT%H:%M")


def _preview(messages: list[dict]) -> list[dict]:
    """The messages as a customer called 花子 would see them ({name} filled)."""
    return campaign_messages.render(messages, display_name=PREVIEW_NAME, full_name=None)


async def campaign_new(request: web.Request) -> web.StreamResponse:
    editor = Editor()
    segment = request.query.get("segment", "")
    if segment.isdigit() and len(segment) < 10:
        editor.audience = f"segment:{segment}"
    return await _editor_page(request, editor)


async def campaign_create(request: web.Request) -> web.StreamResponse:
    """The editor's form: `action` says which button: add (a message slot), remove-N, create, draft."""
    ctx = request[CONTEXT]
    form = await request.post()
    editor = _read(form)
    action = str(form.get("action", "create"))
    slots_of = {"m": editor.slots, "b": editor.slots_b}
    kind, _, rest = action.partition("-")  # add-m, remove-b-2
    if kind == "add" and rest in slots_of:
        if len(slots_of[rest]) < SLOTS:
            slots_of[rest].append(Slot())
        return await _editor_page(request, editor)
    prefix, _, index = rest.partition("-")
    if kind == "remove" and prefix in slots_of and index.isdigit():
        kept = [slot for position, slot in enumerate(slots_of[prefix]) if position != int(index)] or [Slot()]
        slots_of[prefix][:] = kept
        return await _editor_page(request, editor)
    if action not in ("create", "draft"):  # refresh (Enter in a field): the preview, nothing saved
        return await _editor_page(request, editor)
    try:
        async with db(request) as session:
            audience = _audience(editor.audience, await _presets(request, session))
            campaign = await campaigns.create(
                session, name=editor.name, segment_id=audience.segment_id, rule=audience.rule,
                variants=_variants(editor),
                send_at=_send_at(editor, ctx.timezone), schedule=action != "draft", quiet_hours=editor.quiet_hours,
                frequency_cap=editor.frequency_cap, holdout_percent=_holdout(editor), track_links=editor.track_links,
                coupon_id=_coupon_id(editor), delivery=editor.delivery,
                recurrence=editor.recurrence if editor.when == "repeat" else None, now=services_of(request).clock(),
                actor=ctx.actor(),
            )
    except ServiceError as error:
        return await _editor_page(request, editor, errors=_problems(error), status=400)
    url = request.app.router["campaign"].url_for(campaign_id=str(campaign.id))
    notice = "drafted" if action == "draft" else "created" if campaign.send_at is not None else "started"
    return see_other(url.with_query({"notice": notice}))


async def campaign_estimate(request: web.Request) -> web.StreamResponse:
    """The live estimate: the editor's form in, {count, text, excluded, control} out (400: {error})."""
    ctx = request[CONTEXT]
    editor = _read(await request.post())
    try:
        async with db(request) as session:
            audience = _audience(editor.audience, await _presets(request, session))
            rule = audience.rule if audience.segment_id is None else (await segments.get(session, audience.segment_id)).rule
            counts = await campaign_batches.estimate(session, await segments.audience(session, rule, now=ctx.now), now=ctx.now,
                                                     cap=campaigns.FREQUENCY_CAP if editor.frequency_cap else None)
        holdout = _holdout(editor)
    except (Invalid, NotFound) as error:
        field = error.field if isinstance(error, Invalid) else "segment_id"
        key = "campaigns.estimate.no_audience" if field in ("segment_id", "rule") else "invalid.campaign.holdout_percent"
        return web.json_response({"error": ctx.t(key)}, status=400)
    reachable = counts.get(RecipientStatus.QUEUED, 0)
    control = reachable * holdout // 100  # about: the control group is drawn per campaign
    return web.json_response(_estimate_answer(ctx, reachable - control, control, counts))


def _estimate_answer(ctx, count: int, control: int, counts: dict[str, int]) -> dict:
    excluded = {str(status): counts.get(status, 0) for status in EXCLUDED}
    parts = [ctx.t(f"campaigns.excluded.{status}") + " " + ctx.t("campaigns.people", count=f"{n:,}")
             for status, n in excluded.items() if n]
    if control:
        parts.append(ctx.t("campaigns.control.about", count=f"{control:,}"))
    return {"count": count, "text": ctx.t("campaigns.people", count=f"{count:,}"), "excluded": excluded, "control": control,
            "detail": ctx.t("campaigns.estimate.excluded", parts="、".join(parts)) if parts else ctx.t("campaigns.estimate.none_excluded")}


# -- the list and a campaign's page -----------------------------------------------------------


def _progress(stats: campaigns.Stats) -> dict:
    done = stats.sent + stats.failed + stats.undetermined
    return {"targeted": stats.targeted, "sent": stats.sent, "failed": stats.failed, "undetermined": stats.undetermined,
            "pending": stats.pending, "control": stats.control, "done": done,
            "percent": round(100 * done / stats.targeted) if stats.targeted else 0}


async def _audience_label(ctx, session, campaign: Campaign, names: dict[int, str]) -> str:
    if campaign.segment_id is not None:
        if campaign.segment_id not in names:
            try:
                names[campaign.segment_id] = (await segments.get(session, campaign.segment_id)).name
            except NotFound:
                names[campaign.segment_id] = f"#{campaign.segment_id}"
        return names[campaign.segment_id]
    try:
        return segment_form.words(rules.check(campaign.rule), ctx.t)
    except Invalid as error:
        return f"{error.field}: {error.message}"


async def campaign_list(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    names: dict[int, str] = {}
    rows = []
    before = request.query.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 10 else None
    async with db(request) as session:
        for campaign in await campaigns.list_page(session, limit=LIST_LIMIT, after=before_id):
            stats = await campaigns.stats(session, campaign.id)
            rows.append({"campaign": campaign, "progress": _progress(stats),
                         "audience": await _audience_label(ctx, session, campaign, names)})
    url = request.app.router["campaigns"].url_for()
    return render(request, "campaigns.html", {
        "rows": rows, "first_url": url if before_id is not None else None,
        "next_url": url.with_query({"before": str(rows[-1]["campaign"].id)}) if len(rows) == LIST_LIMIT else None,
    })


async def _campaign(request: web.Request, session) -> Campaign:
    try:
        return await campaigns.get(session, int(request.match_info["campaign_id"]))
    except NotFound:
        raise Refused(404, "error.404") from None


async def campaign_page(request: web.Request) -> web.StreamResponse:
    return await _campaign_view(request)


async def _campaign_view(request: web.Request, *, test_ids: str = "", test_error: str | None = None,
                         status: int = 200) -> web.StreamResponse:
    ctx = request[CONTEXT]
    async with db(request) as session:
        campaign = await _campaign(request, session)
        stats = await campaigns.stats(session, campaign.id)
        variants = await campaigns.variants_of(session, campaign.id)
        audience = await _audience_label(ctx, session, campaign, {})
        results = await attribution.results(session, campaign)
        coupon = await coupons.get_coupon(session, campaign.coupon_id) if campaign.coupon_id else None
        line_figures = insight.line_figures(await campaign_insights.of(session, campaign.id))  # cached by a worker, never asked here
        modes = await _modes(ctx, session, campaign)
    progress = _progress(stats)
    error = request.query.get("error")
    return render(request, "campaign.html", {
        "campaign": campaign, "stats": stats, "progress": progress, "audience": audience,
        "variants": [{"label": v.label, "percent": v.percent, "method": v.method, "preview": _preview(v.messages)} for v in variants],
        "moves": [move for move in MOVES_BY_STATUS.get(campaign.status, ())
                  if not (campaign.narrowcast_sent_at is not None and move in ("pause", "cancel"))],
        "live": campaign.status in LIVE_STATUSES, **modes,
        "notice": _notice(request),
        "error": ctx.t("conflict.campaign_state") if error == "state" else None,
        "chart": _chart(ctx, progress), "excluded": EXCLUDED, "preview_name": PREVIEW_NAME,
        "results": _results(ctx, stats, results), "results_chart": _results_chart(ctx, results), "coupon": coupon,
        "test_ids": test_ids, "test_error": test_error, "test_max": campaigns.TEST_RECIPIENTS_MAX,
        "line": line_figures, "insight_threshold": 20,
    }, status=status)


async def _modes(ctx, session, campaign: Campaign) -> dict:
    """What the page shows of the delivery mode and the recurrence: the narrowcast's stages with
    LINE's counts, a recurring campaign's next runs and its runs, a run's recurring campaign."""
    zone = getattr(ctx.timezone, "key", "Asia/Tokyo")
    next_runs: list[str] = []
    if campaign.recurrence and campaign.status == CampaignStatus.SCHEDULED and campaign.send_at is not None:
        later = recurrence.next_runs(campaign.recurrence, after=campaign.send_at, zone=zone, count=2)
        next_runs = [recurrence.label(when, zone) for when in (campaign.send_at, *later)]
    runs = []
    if campaign.recurrence:
        for run in await campaigns.runs_of(session, campaign.id):
            run_stats = await campaigns.stats(session, run.id)
            runs.append({"campaign": run, "label": recurrence.label(run.occurrence_at or run.created_at, zone),
                         "sent": run_stats.sent, "targeted": run_stats.targeted})
    parent = await session.get(Campaign, campaign.parent_id) if campaign.parent_id else None
    return {"next_runs": next_runs, "runs": runs, "parent": parent, "line_delivering": campaign.narrowcast_sent_at is not None,
            "narrowcasts": await _narrowcasts(session, campaign)}


async def _narrowcasts(session, campaign: Campaign) -> list[dict]:
    """A narrowcast campaign's stages, one a variant, with its label."""
    narrowcasts = await campaign_narrowcasts.of_campaign(session, campaign.id) if campaign.by_narrowcast else []
    labels = {v.id: v.label for v in await campaigns.variants_of(session, campaign.id)} if narrowcasts else {}
    return [{"label": labels.get(n.variant_id, "?"), "row": n} for n in narrowcasts]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _results(ctx, stats: campaigns.Stats, results: attribution.Results) -> dict:
    """The results' figures as the page shows them: the recipients', the control group's, the difference."""
    treated, control, uplift = results.treated, results.control, results.uplift
    answer = {"clicks": results.clicks, "clickers": results.clickers, "click_rate": _rate(results.clickers, stats.sent),
              "treated": treated, "treated_rate": treated.rate, "control": control,
              "control_rate": control.rate if control else None, "uplift": uplift, "interval": None}
    if uplift is not None:
        if uplift.low is not None:
            answer["interval"] = ctx.t("campaigns.results.interval", low=_points(uplift.low), high=_points(uplift.high))
        elif control is not None and control.size < attribution.MIN_GROUP:
            answer["interval"] = ctx.t("campaigns.results.no_interval.control", n=attribution.MIN_GROUP)
        else:
            answer["interval"] = ctx.t("campaigns.results.no_interval.treated", n=attribution.MIN_GROUP)
    return answer


def _points(value: float) -> str:
    """A rate difference in percentage points, signed: +2.5pt."""
    return f"{value * 100:+.1f}pt"


def _results_chart(ctx, results: attribution.Results) -> dict:
    """Purchase and redemption rates (%) of the recipients beside the control group's."""
    def rates(group: attribution.Group) -> list[float]:
        if not group.size:
            return [0, 0]
        return [round(100 * group.buyers / group.size, 1), round(100 * group.redeemed / group.size, 1)]

    datasets = [{"label": ctx.t("campaigns.results.treated"), "data": rates(results.treated), "color": "green"}]
    if results.control is not None:
        datasets.append({"label": ctx.t("campaigns.results.control"), "data": rates(results.control), "color": "gray"})
    return {"labels": [ctx.t("campaigns.results.purchase_rate"), ctx.t("campaigns.results.redeem_rate")], "datasets": datasets}


async def campaign_test_send(request: web.Request) -> web.StreamResponse:
    """テスト配信: the campaign's messages to up to 10 of the shop's own LINE accounts (one id a line)."""
    ctx = request[CONTEXT]
    text = str((await request.post()).get("line_user_ids", ""))[:2000]
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    campaign_id = int(request.match_info["campaign_id"])
    try:
        async with db(request) as session:
            delivery_ids = await campaigns.test_send(session, campaign_id, ids, now=services_of(request).clock(), actor=ctx.actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    except Invalid as error:
        key = "campaigns.test.invalid.ids" if error.field == "line_user_ids" else "campaigns.test.invalid.friend"
        place = error.field.partition("[")[2].rstrip("]")
        who = ids[int(place)] if place.isdigit() and int(place) < len(ids) else ""
        return await _campaign_view(request, test_ids=text, test_error=ctx.t(key, n=campaigns.TEST_RECIPIENTS_MAX, id=who),
                                    status=400)
    for delivery_id in delivery_ids:  # after the commit (a worker's sweeper sends them if this process dies first)
        await services_of(request).support.send(delivery_id)
    url = request.app.router["campaign"].url_for(campaign_id=str(campaign_id))
    return see_other(url.with_query({"notice": "tested"}).with_fragment("test"))


def _notice(request: web.Request) -> str | None:
    value = request.query.get("notice")
    return f"campaigns.notice.{value}" if value in NOTICES else None


def _chart(ctx, progress: dict) -> dict:
    return {"labels": [ctx.t("campaigns.stat.sent"), ctx.t("campaigns.stat.failed"), ctx.t("campaigns.stat.undetermined"),
                       ctx.t("campaigns.stat.control")],
            "data": [progress["sent"], progress["failed"], progress["undetermined"], progress["control"]],
            "colors": ["green", "red", "amber", "gray"], "label": ctx.t("campaigns.chart.label")}


async def campaign_progress(request: web.Request) -> web.StreamResponse:
    """What the page's progress bar and figures show, polled every second while it runs."""
    ctx = request[CONTEXT]
    async with db(request) as session:
        campaign = await _campaign(request, session)
        stats = await campaigns.stats(session, campaign.id)
        narrowcasts = await _narrowcasts(session, campaign)
    progress = _progress(stats)
    return web.json_response({
        "status": campaign.status, "status_text": ctx.t(f"campaigns.status.{campaign.status}"), "note": campaign.note,
        "live": campaign.status in LIVE_STATUSES, **progress,
        "progress_text": ctx.t("campaigns.progress", done=f"{progress['done']:,}", targeted=f"{progress['targeted']:,}")
        if campaign.started_at is not None else ctx.t("campaigns.progress.not_started"),
        "excluded": stats.excluded, "duplicates_avoided": stats.duplicates_avoided,
        # A narrowcast's stages move while the campaign stays running: the page redraws its card,
        # and reloads once LINE delivers (the buttons that no longer apply go).
        "line_delivering": campaign.narrowcast_sent_at is not None,
        "narrowcasts": [{"label": n["label"], "state_text": ctx.t(f"campaigns.narrowcast.state.{n['row'].state}"),
                         **{key: getattr(n["row"], key) for key in ("uploaded", "target_count", "success_count", "failure_count")}}
                        for n in narrowcasts],
    })


async def campaign_move(request: web.Request) -> web.StreamResponse:
    """一時停止 / 再開 / 中止 / 予約: the service's move (audited there)."""
    ctx = request[CONTEXT]
    action = request.match_info["action"]
    campaign_id = int(request.match_info["campaign_id"])
    url = request.app.router["campaign"].url_for(campaign_id=str(campaign_id))
    try:
        async with db(request) as session:
            await campaigns.move(session, campaign_id, action, now=services_of(request).clock(), actor=ctx.actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    except Conflict:
        return see_other(url.with_query({"error": "state"}))
    return see_other(url.with_query({"notice": action}))


ROUTES = [
    route("GET", "/campaigns", campaign_list, name="campaigns", roles=MARKETING),
    route("GET", "/campaigns/new", campaign_new, name="campaign_new", roles=MARKETING),
    route("POST", "/campaigns/new", campaign_create, name="campaign_create", roles=MARKETING),
    route("POST", "/campaigns/estimate", campaign_estimate, name="campaign_estimate", roles=MARKETING),
    route("GET", f"/campaigns/{ID}", campaign_page, name="campaign", roles=MARKETING),
    route("GET", f"/campaigns/{ID}/progress", campaign_progress, name="campaign_progress", roles=MARKETING, background=True),
    route("POST", f"/campaigns/{ID}/{{action:{'|'.join(MOVES)}}}", campaign_move, name="campaign_move", roles=MARKETING),
    route("POST", f"/campaigns/{ID}/test", campaign_test_send, name="campaign_test_send", roles=MARKETING),
]
