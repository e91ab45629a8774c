"""監査ログ: the audit log, newest first (admins only)."""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import audit

from ..context import CONTEXT, db
from ..render import render
from ..routes import ADMIN_ONLY, route

PAGE = 50
ACTIONS = tuple(str(action) for action in audit.Action)


@route("GET", "/audit", name="audit", roles=ADMIN_ONLY)
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
    return render(request, "audit.html", {
        "entries": entries, "actions": ACTIONS, "action": action,
        "labels": {item: ctx.t(f"action.{item}") for item in ACTIONS},
        "older_url": str(base.with_query({**keep, "before": str(entries[-1].id)})) if more and entries else None,
        "newest_url": str(base.with_query(keep)) if before_id is not None else None,
    })
