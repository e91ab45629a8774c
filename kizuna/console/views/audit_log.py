"""監査ログ: the audit log, newest first (admins only)."""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import audit

from ..context import CONTEXT, db
from ..i18n import MESSAGES
from ..render import render
from ..routes import ADMIN_ONLY, route

PAGE = 50
ACTIONS = tuple(str(action) for action in audit.Action)


ROLE_VALUES = {"admin", "marketer", "support"}


def _details(ctx, entry) -> list[tuple[str, str]]:
    """The entry's details as (label, text): known keys and values in the reader's language."""
    shown = []
    for key, value in entry.details.items():
        label = ctx.t(f"audit.key.{key}") if f"audit.key.{key}" in MESSAGES else key
        if isinstance(value, bool):
            text = ctx.t("common.yes" if value else "common.no")
        elif key in ("role", "old", "new") and value in ROLE_VALUES:
            text = ctx.t(f"role.{value}")
        elif key == "reason" and f"audit.reason.{value}" in MESSAGES:
            text = ctx.t(f"audit.reason.{value}")
        else:
            text = str(value)
        shown.append((label, text))
    return shown


# Targets with a page: `kind:<id> <name>` → (route, its id parameter).
LINKED = {"staff": ("staff_detail", "staff_id"), "coupon": ("coupon", "coupon_id"), "faq": ("faq_entry", "faq_id"),
          "keyword_rule": ("keyword_rule", "rule_id")}


def _target(request: web.Request, entry) -> tuple[str, str | None]:
    """What the entry is about, and a link to its page (a staff member, a coupon, an FAQ entry ...)."""
    if not entry.target:
        return "—", None
    kind, _, rest = entry.target.partition(":")
    number, _, name = rest.partition(" ")
    if kind in LINKED and number:
        route, parameter = LINKED[kind]
        return name or number, str(request.app.router[route].url_for(**{parameter: number}))
    if kind == "text" and rest:
        return rest, str(request.app.router["text_edit"].url_for(key=rest.partition("/")[0]))
    if f"audit.target.{entry.target}" in MESSAGES:  # a setting of the shop as a whole
        return request[CONTEXT].t(f"audit.target.{entry.target}"), None
    return entry.target, None


async def audit_page(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    action = request.query.get("action") or None
    if action not in ACTIONS:
        action = None
    before = request.query.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 19 else None
    async with db(request) as session:
        entries = await audit.page(session, limit=PAGE + 1, before_id=before_id, action=action)
    more = len(entries) > PAGE
    entries = entries[:PAGE]
    base = request.app.router["audit"].url_for()
    keep = {"action": action} if action else {}
    rows = [{"entry": entry, "details": _details(ctx, entry), "target": _target(request, entry),
             "actor": ctx.t("audit.actor.cli") if entry.actor == "cli" and entry.actor_staff_id is None else entry.actor}
            for entry in entries]
    return render(request, "audit.html", {
        "rows": rows, "actions": ACTIONS, "action": action,
        "labels": {item: ctx.t(f"action.{item}") for item in ACTIONS},
        "older_url": str(base.with_query({**keep, "before": str(entries[-1].id)})) if more and entries else None,
        "newest_url": str(base.with_query(keep)) if before_id is not None else None,
    })


ROUTES = [
    route("GET", "/audit", audit_page, name="audit", roles=ADMIN_ONLY),
]
