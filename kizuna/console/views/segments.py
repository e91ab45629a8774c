"""セグメント (admins and marketers): saved segments with their size now, the CRM presets, the
builder, a segment's page (its rule in words, its customers) and its CSV export.

The builder is a plain form: conditions as rows of selects and inputs, posted and re-rendered
by the server (add a row, remove one, count). console/static/segments.js makes it live: rows
added and removed in the page, and a count (`POST /segments/preview`, the same form, answered
in JSON) as the conditions change. The rules are campaigns/rules.py's and the SQL
campaigns/segments.py's, as for the REST API: what the rule language refuses is shown beside
the row it names.

The 離脱予備軍 preset follows the churn model (campaigns/churn.py): ranked by its P(alive) once it
has fitted, the recency rule until then; the list page shows the model's last run (モデル推定日時,
parameters, or why it is not available). A segment about P(alive) lists its customers lowest
P(alive) first (campaigns/segments.py `default_order`).
"""

from __future__ import annotations

import json
import math
import time

from aiohttp import web

from kizuna.campaigns import churn, rules, segment_export, segments
from kizuna.storage import tags
from kizuna.storage.errors import Invalid, NotFound

from .. import segment_form
from ..context import CONTEXT, db, services_of, sessions_of
from ..render import render
from ..routes import MARKETING, Refused, route, see_other

ID = "{segment_id:[0-9]{1,9}}"
LIST_LIMIT = 100
MEMBERS_PAGE = 50


def _people(ctx, count: int) -> str:
    return ctx.t("segments.count", count=f"{count:,}")


def _problem(ctx, error: Invalid, builder: segment_form.Builder) -> tuple[int | None, str]:
    """(row index, sentence) for a refusal of the rule or the name."""
    if error.field == "name":
        return None, ctx.t("segments.invalid.name")
    index, part = segment_form.problem_row(error, builder)
    if index is None:
        return None, error.message
    where = ctx.t("segments.invalid.row", n=index + 1, part=ctx.t(f"segments.invalid.part.{part or 'value'}"))
    said = segment_form.sentence(error.message, ctx.t) if ctx.locale != "en" else None
    return index, f"{where}: {said}（{error.message}）" if said else f"{where}: {error.message}"


async def segment_list(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    async with db(request) as session:
        saved = await segments.list_page(session, limit=LIST_LIMIT, after=None)
        counts = await list_counts(session, saved, ctx.now)
        model = await churn.model_status(session)
    fitted = model is not None and model.fitted
    return render(request, "segments.html", {
        "saved": saved, "counts": counts, "presets": _presets(ctx, churn_model=fitted), "model": model,
        "churn_model_fitted": fitted, "min_repeat": churn.MIN_REPEAT_CUSTOMERS,
    })


# The list counts every saved segment, and one count can take seconds on a million customers (a
# rule on what was bought scans the recent orders): a visit counts for about this long, the
# segments it has never counted first, then the ones counted longest ago, skipping one that took
# longer last time than what is left (it comes first on a later visit); the others show the count
# they had when last counted (kept in this process). On a small shop every segment is counted on
# every visit, as before.
LIST_COUNT_BUDGET_S = 2.0
# (database, segment id, rule) -> (count, when counted, seconds it took)
_last_counts: dict[tuple[str, int, str], tuple[int | None, float, float]] = {}
_LAST_COUNTS_MAX = 10_000


async def list_counts(session, saved, now, *, budget_s: float = LIST_COUNT_BUDGET_S) -> dict[int, int | None]:
    """{segment id: its size} for the list: now, or when last counted (see above); None: not counted yet."""
    database = session.bind.url.render_as_string(hide_password=True)
    keys = {segment.id: (database, segment.id, json.dumps(segment.rule, sort_keys=True)) for segment in saved}
    oldest_first = sorted(saved, key=lambda segment: _last_counts.get(keys[segment.id], (None, -math.inf, 0.0))[1])
    deadline = time.monotonic() + budget_s
    for index, segment in enumerate(oldest_first):
        left = deadline - time.monotonic()
        if index > 0 and left <= 0:
            break
        last = _last_counts.get(keys[segment.id])
        if index > 0 and last is not None and last[2] > left:
            continue  # the oldest is always counted: a slow segment is not skipped for ever
        if len(_last_counts) >= _LAST_COUNTS_MAX:
            _last_counts.clear()
        started = time.monotonic()
        count = await _count(session, segment.rule, now)
        _last_counts[keys[segment.id]] = (count, started, time.monotonic() - started)
    return {segment.id: _last_counts.get(keys[segment.id], (None,))[0] for segment in saved}


async def _count(session, rule, now) -> int | None:
    """The rule's size now; None for a stored rule the language no longer accepts (the page
    still opens, with — for its count, rather than failing)."""
    try:
        return (await segments.preview(session, rule, now=now, sample=0)).count
    except Invalid:
        return None


def _words(ctx, rule) -> str:
    try:
        return segment_form.words(rules.check(rule), ctx.t)
    except Invalid as error:
        return f"{error.field}: {error.message}"


def _presets(ctx, *, churn_model: bool) -> list[segments.Preset]:
    """The presets, with the birth month in the shop's time zone."""
    return segments.presets(ctx.now, getattr(ctx.timezone, "key", "Asia/Tokyo"), churn_model=churn_model)


def _prefilled(request: web.Request, presets: list[segments.Preset]) -> segment_form.Builder:
    """The builder opened from a preset (`?preset=loyal`), the RFM grid (`?r=4&f=2`) or a saved
    segment (`?copy=12`, filled in by the view)."""
    query = request.query
    preset = next((p for p in presets if p.key == query.get("preset")), None)
    if preset is not None:
        return segment_form.builder_of(preset.rule) or segment_form.Builder()
    grid = [segment_form.Row(field=name, op="eq", value=query[key]) for key, name in (("r", "rfm_r"), ("f", "rfm_f"))
            if query.get(key, "") in ("1", "2", "3", "4", "5")]
    return segment_form.Builder(rows=grid) if grid else segment_form.Builder()


async def _builder_page(request: web.Request, builder: segment_form.Builder, *, name: str = "", error: Invalid | None = None,
                        status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    preview = problem = None
    problem_index = None
    if error is None and builder.rows:
        try:
            async with db(request) as session:
                preview = await segments.preview(session, segment_form.rule_of(builder), now=ctx.now)
        except Invalid as invalid:
            error = invalid
    if error is not None:
        problem_index, problem = _problem(ctx, error, builder)
    return render(request, "segment_builder.html", {
        "builder": builder, "name": name, "preview": preview, "problem": problem, "problem_index": problem_index,
        "name_problem": error is not None and error.field == "name",
        "groups": segment_form.GROUPS, "fields": rules.FIELDS, "form": segment_form, "spec": segment_form.spec_for_page(ctx.t),
        "blank": segment_form.Row(), "count_text": _people(ctx, preview.count) if preview else None,
    }, status=status)


async def segment_new(request: web.Request) -> web.StreamResponse:
    async with db(request) as session:
        presets = _presets(request[CONTEXT], churn_model=await churn.model_fitted(session))
    builder = _prefilled(request, presets)
    copy = request.query.get("copy", "")
    name = ""
    if copy.isdigit() and len(copy) < 10:
        try:
            async with db(request) as session:
                segment = await segments.get(session, int(copy))
        except NotFound:
            raise Refused(404, "error.404") from None
        builder = segment_form.builder_of(segment.rule) or builder
        name = segment.name
    preset = next((p for p in presets if p.key == request.query.get("preset")), None)
    return await _builder_page(request, builder, name=preset.name if preset else name)


async def segment_build(request: web.Request) -> web.StreamResponse:
    """The builder's form: `action` says what the button pressed asks (without JS every change
    comes through here): add, remove-N, refresh (count), save."""
    ctx = request[CONTEXT]
    form = await request.post()
    builder = segment_form.read(form)
    name = str(form.get("name", ""))[:300]
    action = str(form.get("action", "refresh"))
    if action == "add" and len(builder.rows) < segment_form.MAX_ROWS:
        builder.rows.append(segment_form.Row())
    elif action.startswith("remove-") and action[7:].isdigit():
        index = int(action[7:])
        builder.rows = [row for position, row in enumerate(builder.rows) if position != index] or [segment_form.Row()]
    elif action == "save":
        try:
            async with db(request) as session:
                segment = await segments.create(session, name, segment_form.rule_of(builder), now=ctx.now, actor=ctx.actor())
        except Invalid as error:
            return await _builder_page(request, builder, name=name, error=error, status=400)
        return see_other(request.app.router["segment"].url_for(segment_id=str(segment.id)).with_query({"notice": "created"}))
    return await _builder_page(request, builder, name=name)


async def segment_preview(request: web.Request) -> web.StreamResponse:
    """The live count: the builder's form in, {count, text, sample} or {error, row} out (400)."""
    ctx = request[CONTEXT]
    builder = segment_form.read(await request.post())
    try:
        async with db(request) as session:
            preview = await segments.preview(session, segment_form.rule_of(builder), now=ctx.now, sample=5)
    except Invalid as error:
        index, problem = _problem(ctx, error, builder)
        return web.json_response({"error": problem, "row": index}, status=400)
    customer_url = request.app.router["customer"]
    return web.json_response({
        "count": preview.count, "text": _people(ctx, preview.count),
        "sample": [{"id": member.customer.id, "url": str(customer_url.url_for(customer_id=str(member.customer.id))),
                    "name": member.customer.full_name or member.customer.display_name or ctx.t("home.no_name"),
                    "member": member.customer.registered} for member in preview.sample],
    })


async def segment_page(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    segment_id = int(request.match_info["segment_id"])
    after = request.query.get("after", "")
    after_id = int(after) if after.isdigit() and len(after) < 10 else None
    try:
        async with db(request) as session:
            segment = await segments.get(session, segment_id)
            count = await _count(session, segment.rule, ctx.now)
            members = await segments.members(session, segment_id, now=ctx.now, limit=MEMBERS_PAGE, after=after_id) if count is not None else []
            bulk = await _bulk_check(ctx, session, segment, request.query) if count is not None else None
    except NotFound:
        raise Refused(404, "error.404") from None
    url = request.app.router["segment"].url_for(segment_id=str(segment_id))
    return render(request, "segment.html", {
        "segment": segment, "count": count, "members": members, "words": _words(ctx, segment.rule),
        "by_churn_risk": segments.default_order(segment.rule) == segments.BY_CHURN_RISK,
        "editable": segment_form.builder_of(segment.rule) is not None,
        "next_url": url.with_query({"after": str(members[-1].customer.id)}) if len(members) == MEMBERS_PAGE else None,
        "first_url": url if after_id is not None else None,
        "notice": "segments.notice.created" if request.query.get("notice") == "created" else None,
        "bulk": bulk, "bulk_done": _bulk_done(ctx, request.query),
    })


# -- a tag for every customer of the segment (「このセグメントにタグを付ける / 外す」) ----------------
# The form asks first (a GET of the segment's page with `bulk_tag` and `bulk_action`: how many
# it would change, nothing changed yet); the confirmation posts (CSRF-checked as every form) and
# comes back with what it did. The change is storage/tags.py's bulk_change, as for the REST API.


async def _bulk_check(ctx, session, segment, query) -> dict | None:
    """The confirmation the form asked for: what the change would do now, or why it cannot."""
    action = query.get("bulk_action")
    if action not in tags.BULK_ACTIONS:
        return None
    text = query.get("bulk_tag", "")[:200]
    try:
        audience = await segments.audience(session, segment.rule, now=ctx.now)
        preview = await tags.bulk_preview(session, audience, text, action)
    except Invalid as error:
        return {"action": action, "tag": text, "error": error.message}
    return {"action": action, "tag": preview.tag, "matched": preview.matched, "changed": preview.changed, "error": None}


def _bulk_done(ctx, query) -> str | None:
    """What the confirmed change did (the redirect's query), in words."""
    action, changed = query.get("bulk_done"), query.get("changed", "")
    if action not in tags.BULK_ACTIONS or not changed.isdigit() or len(changed) > 9:
        return None
    return ctx.t(f"segments.tags.done.{action}", count=f"{int(changed):,}", tag=query.get("tag", "")[:40])


async def segment_tag(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    segment_id = int(request.match_info["segment_id"])
    form = await request.post()
    text, action = str(form.get("bulk_tag", ""))[:200], str(form.get("bulk_action", ""))
    url = request.app.router["segment"].url_for(segment_id=str(segment_id))
    try:
        async with db(request) as session:
            segment = await segments.get(session, segment_id)
            audience = await segments.audience(session, segment.rule, now=ctx.now)
            done = await tags.bulk_change(session, audience, text, action, target=f"segment:{segment.id} {segment.name}",
                                          actor=ctx.actor(), now=ctx.now)
    except NotFound:
        raise Refused(404, "error.404") from None
    except Invalid:  # the confirmation showed the problem already; ask again
        return see_other(url.with_query({"bulk_tag": text, "bulk_action": action if action in tags.BULK_ACTIONS else "add"}))
    return see_other(url.with_query({"bulk_done": action, "changed": str(done.changed), "tag": done.tag}))


async def segment_export_csv(request: web.Request) -> web.StreamResponse:
    """The members as CSV (campaigns/segment_export.py: audited, formula-safe, UTF-8 with BOM), streamed."""
    ctx = request[CONTEXT]
    segment_id = int(request.match_info["segment_id"])
    try:
        # The services' clock (as the REST API's export): the audit entry's time is the export's.
        chunks = await segment_export.export(sessions_of(request), segment_id, now=services_of(request).clock(), actor=ctx.actor(),
                                             via="console", recipient=request.query.get("recipient", "")[:200],
                                             purpose=request.query.get("purpose", "")[:200])
    except NotFound:
        raise Refused(404, "error.404") from None
    except Invalid:
        raise Refused(409, "segments.invalid") from None
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{segment_export.filename(segment_id)}"',
    })
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


ROUTES = [
    route("GET", "/segments", segment_list, name="segments", roles=MARKETING),
    route("GET", "/segments/new", segment_new, name="segment_new", roles=MARKETING),
    route("POST", "/segments/new", segment_build, name="segment_build", roles=MARKETING),
    route("POST", "/segments/preview", segment_preview, name="segment_preview", roles=MARKETING),
    route("GET", f"/segments/{ID}", segment_page, name="segment", roles=MARKETING),
    route("GET", f"/segments/{ID}/export.csv", segment_export_csv, name="segment_export", roles=MARKETING),
    route("POST", f"/segments/{ID}/tags", segment_tag, name="segment_tag", roles=MARKETING),
]
