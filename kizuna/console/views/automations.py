"""オートメーション (automation rules; admins and marketers): the list with each rule's trigger and
actions in words, the editor (a form of selects), and the firing log. The rules and their checks
are campaigns/automations.py's, the same functions the REST API calls: the form only turns its
fields into a `RuleCreate`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import ValidationError

from kizuna.campaigns import automations
from kizuna.storage import automations as store
from kizuna.storage import sequences as sequence_store
from kizuna.storage.errors import Invalid, NotFound
from kizuna.storage.models import AutomationRule, AutomationTrigger, Coupon, Segment

from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import MARKETING, Refused, route, see_other

ID = "{rule_id:[0-9]{1,9}}"
ACTION_ROWS = 3  # action rows in the form (the API takes up to 10)
NOTICES = ("created", "saved", "deleted", "settings")
CONDITIONS = ("has_tag", "lacks_tag", "in_segment", "not_in_segment")
EMPTY_ACTION = {"type": "", "tag": "", "sequence_id": "", "menu": "", "coupon_id": "", "text": "", "url": "", "coupon_card": False}


async def _names(session) -> dict[str, dict[int, str]]:
    """Id → name of what rules point at (sequences, coupons, segments): the selects and the words."""
    coupons = {row.id: row.title for row in (await session.execute(sa.select(Coupon.id, Coupon.title).order_by(Coupon.id))).all()}
    segments = {row.id: row.name for row in (await session.execute(sa.select(Segment.id, Segment.name).order_by(Segment.id))).all()}
    sequences = {sequence.id: sequence.name for sequence in await sequence_store.list_all(session)}
    return {"coupons": coupons, "segments": segments, "sequences": sequences}


def describe(rule: AutomationRule, t, names: dict[str, dict[int, str]]) -> dict[str, Any]:
    """The rule in words: its trigger (with options), conditions and actions."""
    value = rule.trigger_value
    key = f"automations.when.{rule.trigger}"
    if rule.trigger == AutomationTrigger.LINK_TAPPED and value:
        key += ".campaign"
    if rule.trigger == AutomationTrigger.FRIEND_SOURCE and value:
        key += ".code"
    if rule.trigger == AutomationTrigger.SEGMENT_ENTERED and value:
        value = names["segments"].get(int(value), f"#{value}")
    when = t(key, value=value)
    options = rule.trigger_options or {}
    extras = []
    if options.get("first_only"):
        extras.append(t("automations.when.first_only"))
    if options.get("min_total") is not None:
        extras.append(t("automations.when.min_total", value=f"{int(options['min_total']):,}"))
    if options.get("destination"):
        extras.append(t("automations.when.destination", value=options["destination"]))
    conditions = []
    for condition in rule.conditions or []:
        shown = condition.get("tag") or names["segments"].get(condition.get("segment_id"), f"#{condition.get('segment_id')}")
        conditions.append(t(f"automations.if.{condition['type']}", value=shown))
    actions = []
    for action in rule.actions or []:
        kind = action["type"]
        if kind in ("add_tag", "remove_tag"):
            shown = action["tag"]
        elif kind in ("start_sequence", "stop_sequence"):
            shown = names["sequences"].get(action["sequence_id"], f"#{action['sequence_id']}")
        elif kind == "switch_rich_menu":
            shown = t(f"automations.menu.{action['menu']}")
        elif kind == "send_message":
            shown = len(action.get("messages") or [])
            if action.get("coupon_card"):
                kind = "send_message.card"
        elif kind == "grant_coupon":
            shown = names["coupons"].get(action["coupon_id"], f"#{action['coupon_id']}")
        else:
            shown = action.get("url", "")
        actions.append(t(f"automations.do.{kind}", value=shown))
    return {"when": when, "extras": extras, "conditions": conditions, "actions": actions}


def _url(request: web.Request, name: str, **query: str) -> str:
    url = request.app.router[name].url_for()
    return str(url.with_query(query) if query else url)


# -- the list ----------------------------------------------------------------------------------


async def rule_list(request: web.Request, *, settings_error: bool = False, status: int = 200) -> web.StreamResponse:
    async with db(request) as session:
        rules = await store.list_all(session)
        counts = await store.firing_counts(session)
        names = await _names(session)
        settings = await store.settings(session)
    t = request[CONTEXT].t
    notice = request.query.get("notice")
    return render(request, "automations.html", {
        "items": [{"rule": rule, "words": describe(rule, t, names), "firings": counts.get(rule.id, 0)} for rule in rules],
        "settings": settings, "settings_error": settings_error,
        "notice": f"automations.notice.{notice}" if notice in NOTICES else None,
    }, status=status)


async def rule_list_view(request: web.Request) -> web.StreamResponse:
    return await rule_list(request)


async def rule_enable(request: web.Request) -> web.StreamResponse:
    enabled = (await request.post()).get("enabled") == "1"
    try:
        async with db(request) as session:
            await automations.set_enabled(session, int(request.match_info["rule_id"]), enabled, now=_now(request))
    except NotFound:
        raise Refused(404, "error.404") from None
    return see_other(_url(request, "automations", notice="saved"))


async def settings_save(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    try:
        body = automations.SettingsUpdate(
            daily_hour=str(posted.get("daily_hour", "")).strip(), coupon_reminder_days=str(posted.get("coupon_reminder_days", "")).strip(),
            coupon_reminder_enabled=posted.get("coupon_reminder_enabled") == "on",
            coupon_reminder_text=str(posted.get("coupon_reminder_text", ""))[:1000])
    except ValidationError:
        return await rule_list(request, settings_error=True, status=400)
    async with db(request) as session:
        await automations.update_settings(session, body)
    return see_other(_url(request, "automations", notice="settings"))


def _now(request: web.Request):
    return services_of(request).clock()


def _dev(request: web.Request) -> bool:
    """http webhook URLs to localhost only on a development install (served over plain http)."""
    return services_of(request).public_url.startswith("http://")


# -- the editor --------------------------------------------------------------------------------


def _form_of(rule: AutomationRule | None) -> dict[str, Any]:
    """The form's fields for `rule` (a new rule: empty)."""
    form: dict[str, Any] = {"name": "", "enabled": True, "trigger": "tag_added", "trigger_value": "", "segment": "",
                            "first_only": False, "min_total": "", "destination": "", "condition": "", "condition_tag": "",
                            "condition_segment": "", "actions": [dict(EMPTY_ACTION) for _ in range(ACTION_ROWS)]}
    if rule is None:
        return form
    options = rule.trigger_options or {}
    form.update(name=rule.name, enabled=rule.enabled, trigger=rule.trigger,
                trigger_value="" if rule.trigger == AutomationTrigger.SEGMENT_ENTERED else rule.trigger_value or "",
                segment=rule.trigger_value if rule.trigger == AutomationTrigger.SEGMENT_ENTERED else "",
                first_only=bool(options.get("first_only")), min_total="" if options.get("min_total") is None else str(options["min_total"]),
                destination=options.get("destination") or "")
    if rule.conditions:
        condition = rule.conditions[0]
        form.update(condition=condition["type"], condition_tag=condition.get("tag", ""), condition_segment=str(condition.get("segment_id", "")))
    rows = []
    for action in list(rule.actions or [])[:ACTION_ROWS]:
        messages = action.get("messages") or []
        rows.append({**EMPTY_ACTION, **action, "text": "\n\n".join(m.get("text", "") for m in messages if m.get("type") == "text")})
    form["actions"] = rows + [dict(EMPTY_ACTION) for _ in range(ACTION_ROWS - len(rows))]
    return form


def _posted_form(posted) -> dict[str, Any]:
    def text(name: str, limit: int = 2000) -> str:
        return str(posted.get(name, ""))[:limit]

    form = {"name": text("name", 300), "enabled": posted.get("enabled") == "on", "trigger": text("trigger", 40),
            "trigger_value": text("trigger_value", 300), "segment": text("segment", 12), "first_only": posted.get("first_only") == "on",
            "min_total": text("min_total", 12), "destination": text("destination"), "condition": text("condition", 40),
            "condition_tag": text("condition_tag", 100), "condition_segment": text("condition_segment", 12), "actions": []}
    for index in range(ACTION_ROWS):
        form["actions"].append({key: text(f"action{index}_{key}", 5000) for key in ("type", "tag", "sequence_id", "menu", "coupon_id", "text", "url")}
                               | {"coupon_card": posted.get(f"action{index}_coupon_card") == "on"})
    return form


def _body_of(form: dict[str, Any]) -> dict[str, Any]:
    """The form as the API's JSON body (RuleCreate checks it)."""
    trigger = form["trigger"]
    value = form["segment"] if trigger == AutomationTrigger.SEGMENT_ENTERED else form["trigger_value"].strip()
    options: dict[str, Any] = {}
    if trigger == AutomationTrigger.ORDER_PLACED:
        options["first_only"] = form["first_only"]
        if form["min_total"].strip():
            options["min_total"] = form["min_total"].strip()
    if trigger == AutomationTrigger.LINK_TAPPED and form["destination"].strip():
        options["destination"] = form["destination"].strip()
    conditions = []
    if form["condition"] in ("has_tag", "lacks_tag"):
        conditions.append({"type": form["condition"], "tag": form["condition_tag"]})
    elif form["condition"] in ("in_segment", "not_in_segment"):
        conditions.append({"type": form["condition"], "segment_id": form["condition_segment"] or None})
    actions = []
    for row in form["actions"]:
        kind = row.get("type")
        if not kind:
            continue
        if kind in ("add_tag", "remove_tag"):
            actions.append({"type": kind, "tag": row["tag"]})
        elif kind in ("start_sequence", "stop_sequence"):
            actions.append({"type": kind, "sequence_id": row["sequence_id"] or None})
        elif kind == "switch_rich_menu":
            actions.append({"type": kind, "menu": row["menu"]})
        elif kind == "send_message":
            texts = [part.strip() for part in row["text"].replace("\r\n", "\n").split("\n\n") if part.strip()]
            actions.append({"type": kind, "messages": [{"type": "text", "text": part} for part in texts], "coupon_card": row["coupon_card"]})
        elif kind == "grant_coupon":
            actions.append({"type": kind, "coupon_id": row["coupon_id"] or None})
        elif kind == "call_webhook":
            actions.append({"type": kind, "url": row["url"].strip()})
        else:
            actions.append({"type": kind})
    return {"name": form["name"], "enabled": form["enabled"], "trigger": trigger, "trigger_value": value or None,
            "trigger_options": options, "conditions": conditions, "actions": actions}


# The form's part a refusal names (its first path element), for a Japanese-first message.
FIELD_LABELS = {"name": "automations.field.name", "trigger": "automations.field.trigger",
                "trigger_value": "automations.field.trigger_value", "trigger_options": "automations.field.trigger",
                "conditions": "automations.field.condition", "actions": "automations.col.when"}


def _problem(request: web.Request, where: str, message: str) -> str:
    """「…」を確認してください, with the service's own words after it (they name the exact field)."""
    label = FIELD_LABELS.get(where.split(".")[0].split("[")[0])
    head = request[CONTEXT].t("automations.invalid.field", field=request[CONTEXT].t(label)) if label else ""
    return f"{head} — {where}: {message}" if head else f"{where}: {message}"


def _validation_problem(request: web.Request, error: ValidationError) -> str:
    first = error.errors()[0]
    return _problem(request, ".".join(str(part) for part in first["loc"]), first["msg"])


async def _editor(request: web.Request, rule: AutomationRule | None, form: dict[str, Any], *, error: str | None = None,
                  status: int = 200) -> web.Response:
    async with db(request) as session:
        names = await _names(session)
    return render(request, "automation_editor.html", {
        "rule": rule, "form": form, "error": error, "names": names, "triggers": [trigger.value for trigger in AutomationTrigger],
        "action_types": [kind.value for kind in automations.ActionType], "conditions": CONDITIONS, "menus": automations.RICH_MENUS,
        "notice": "automations.notice.created" if request.query.get("notice") == "created" else None,
    }, status=status)


async def rule_new(request: web.Request) -> web.StreamResponse:
    return await _editor(request, None, _form_of(None))


async def rule_create(request: web.Request) -> web.StreamResponse:
    form = _posted_form(await request.post())
    try:
        body = automations.RuleCreate.model_validate(_body_of(form))
        async with db(request) as session:
            rule = await automations.create(session, body, created_by=request[CONTEXT].actor().label,
                                            now=_now(request), allow_http_localhost=_dev(request))
    except ValidationError as error:
        return await _editor(request, None, form, error=_validation_problem(request, error), status=400)
    except Invalid as error:
        return await _editor(request, None, form, error=_problem(request, error.field or '', error.message), status=400)
    return see_other(str(request.app.router["automation"].url_for(rule_id=str(rule.id)).with_query(notice="created")))


async def _rule(request: web.Request) -> AutomationRule:
    try:
        async with db(request) as session:
            return await store.get(session, int(request.match_info["rule_id"]))
    except NotFound:
        raise Refused(404, "error.404") from None


async def rule_edit(request: web.Request) -> web.StreamResponse:
    rule = await _rule(request)
    return await _editor(request, rule, _form_of(rule))


async def rule_update(request: web.Request) -> web.StreamResponse:
    rule = await _rule(request)
    form = _posted_form(await request.post())
    try:
        body = automations.RuleCreate.model_validate(_body_of(form))
        async with db(request) as session:
            await automations.replace(session, rule.id, body, now=_now(request), allow_http_localhost=_dev(request))
    except ValidationError as error:
        return await _editor(request, rule, form, error=_validation_problem(request, error), status=400)
    except Invalid as error:
        return await _editor(request, rule, form, error=_problem(request, error.field or '', error.message), status=400)
    return see_other(_url(request, "automations", notice="saved"))


async def rule_delete(request: web.Request) -> web.StreamResponse:
    try:
        async with db(request) as session:
            await store.delete(session, int(request.match_info["rule_id"]))
    except NotFound:
        raise Refused(404, "error.404") from None
    return see_other(_url(request, "automations", notice="deleted"))


# -- the firing log ----------------------------------------------------------------------------


async def firing_log(request: web.Request) -> web.StreamResponse:
    async with db(request) as session:
        rows = await store.recent_firings(session, limit=200)
    return render(request, "automation_log.html", {"rows": rows})


ROUTES = [
    route("GET", "/automations", rule_list_view, name="automations", roles=MARKETING),
    route("POST", "/automations/settings", settings_save, name="automation_settings", roles=MARKETING),
    route("GET", "/automations/new", rule_new, name="automation_new", roles=MARKETING),
    route("POST", "/automations/new", rule_create, name="automation_create", roles=MARKETING),
    route("GET", "/automations/log", firing_log, name="automation_log", roles=MARKETING),
    route("GET", f"/automations/{ID}", rule_edit, name="automation", roles=MARKETING),
    route("POST", f"/automations/{ID}", rule_update, name="automation_update", roles=MARKETING),
    route("POST", f"/automations/{ID}/enabled", rule_enable, name="automation_enabled", roles=MARKETING),
    route("POST", f"/automations/{ID}/delete", rule_delete, name="automation_delete", roles=MARKETING),
]
