"""名寄せ (admins only): pairs of customers one record matched (an order's e-mail is one customer's
and its phone another's, a LINE member registered with an EC customer's e-mail), shown side by
side; an admin merges them (the customer on LINE stays) or sets them apart, and can undo a merge
for 7 days. The rules are storage/merges.py's, the same as the REST API's."""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import customers, identities, merges
from kizuna.storage.errors import Conflict, NotFound
from kizuna.storage.models import MergeStatus

from ..context import CONTEXT, db
from ..render import render
from ..routes import ADMIN_ONLY, Refused, route, see_other

ID = "{item_id:[0-9]{1,9}}"
NOTICES = ("merged", "dismissed", "undone")
ERRORS = ("not_pending", "already_merged", "both_on_line", "already_undone", "undo_expired")


async def merge_list(request: web.Request) -> web.StreamResponse:
    now = request[CONTEXT].now
    async with db(request) as session:
        candidates = await identities.merge_candidates(session, status=MergeStatus.PENDING, limit=100)
        recent = await merges.undoable(session, now=now)
        ids = {c.customer_id for c in candidates} | {c.other_customer_id for c in candidates}
        ids |= {m.customer_id for m in recent} | {m.merged_customer_id for m in recent}
        people = await customers.by_ids(session, ids)
        totals = await merges.order_totals(session, sorted(ids))
        known = await identities.of_customers(session, ids)
    query = request.query
    return render(request, "merges.html", {
        "candidates": candidates, "recent": recent, "people": people, "totals": totals, "known": known, "undo_days": merges.UNDO_DAYS,
        "notice": f"merges.notice.{query['notice']}" if query.get("notice") in NOTICES else None,
        "error": f"merges.error.{query['error']}" if query.get("error") in ERRORS else None,
    })


async def _decide(request: web.Request, decide, notice: str) -> web.StreamResponse:
    ctx = request[CONTEXT]
    url = request.app.router["merges"].url_for()
    try:
        async with db(request) as session:
            await decide(session, int(request.match_info["item_id"]), actor=ctx.actor(), now=ctx.now)
    except NotFound:
        raise Refused(404, "error.404") from None
    except Conflict as conflict:
        return see_other(url.with_query({"error": conflict.code}))
    return see_other(url.with_query({"notice": notice}))


async def merge_candidate(request: web.Request) -> web.StreamResponse:
    return await _decide(request, merges.merge, "merged")


async def dismiss_candidate(request: web.Request) -> web.StreamResponse:
    return await _decide(request, merges.dismiss, "dismissed")


async def undo_merge(request: web.Request) -> web.StreamResponse:
    return await _decide(request, merges.undo, "undone")


ROUTES = [
    route("GET", "/merges", merge_list, name="merges", roles=ADMIN_ONLY),
    route("POST", f"/merges/candidates/{ID}/merge", merge_candidate, name="merge_candidate", roles=ADMIN_ONLY),
    route("POST", f"/merges/candidates/{ID}/dismiss", dismiss_candidate, name="merge_dismiss", roles=ADMIN_ONLY),
    route("POST", f"/merges/{ID}/undo", undo_merge, name="merge_undo", roles=ADMIN_ONLY),
]
