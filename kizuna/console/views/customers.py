"""友だち: the customers, searched by name, phone, e-mail or LINE user id, and one customer's
page (the panel of the conversation view, and the whole timeline). Every staff member sees
customers and edits their tags; the timeline (the chats) only those who answer
conversations, as with 1:1チャット."""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import audit, audit_reads, conversations, customers, tags
from kizuna.storage.errors import ServiceError

from .. import customer_panel, outcomes, security, timeline
from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import CONVERSATIONS, REFRESH_HEADER, Refused, route, see_other
from .conversations import TIMELINE_PAGE, desk, number, staff_by_id

ID = "{customer_id:[0-9]{1,9}}"
PAGE = 50


def _customer_id(request: web.Request) -> int:
    return int(request.match_info["customer_id"])


def _customer_url(request: web.Request, customer_id: int, **query: str) -> str:
    url = request.app.router["customer"].url_for(customer_id=str(customer_id))
    return str(url.with_query(query) if query else url)


async def customer_list(request: web.Request) -> web.StreamResponse:
    query = request.query.get("q", "")[:200].strip()
    before_id = number(request.query.get("before"))
    async with db(request) as session:
        rows = await customers.search(session, query, limit=PAGE + 1, before_id=before_id)
        total = await customers.count_matching(session, query)
        tagged = await tags.of_customers(session, [row.id for row in rows[:PAGE]])
    base = request.app.router["customers"].url_for()
    keep = {"q": query} if query else {}
    return render(request, "customers.html", {
        "rows": rows[:PAGE], "tags": tagged, "query": query, "total": total,
        "older_url": str(base.with_query({**keep, "before": str(rows[PAGE - 1].id)})) if len(rows) > PAGE else None,
        "first_url": str(base.with_query(keep)) if before_id is not None else None,
    })


async def customer_page(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    chats = ctx.role in CONVERSATIONS
    before_id = number(request.query.get("before"))
    async with db(request) as session:
        customer = await customers.get(session, _customer_id(request))
        if customer is None:
            raise Refused(404, "error.404")
        panel = await customer_panel.values(session, customer, now=ctx.now, timezone=ctx.timezone, locale=ctx.locale)
        ongoing = await conversations.active_for(session, customer.id)
        if request.headers.get(REFRESH_HEADER) != "1":  # a person opened it (breach scoping: storage/audit_reads.py)
            await audit_reads.read(session, ctx.actor(), audit.Action.CUSTOMER_VIEWED, [customer.id], target=f"customer:{customer.id}",
                                   at=services_of(request).clock())
        items, more = [], False
        if chats:
            staff = await staff_by_id(session)
            rows, more = await conversations.timeline(session, customer.id, limit=TIMELINE_PAGE, before_id=before_id)
    name = customer.display_name or ctx.t("home.no_name")
    if chats:
        items = timeline.build(rows, staff=staff, customer_name=name, timezone=ctx.timezone, t=ctx.t)
    notice, error = outcomes.shown(request.query)
    return render(request, "customer.html", {
        **panel, "name": name, "items": items, "chats": chats, "ongoing": ongoing,
        "older_url": _customer_url(request, customer.id, before=str(rows[0].id)) if chats and more and rows else None,
        "newest_url": _customer_url(request, customer.id) if before_id is not None else None,
        "next": _customer_url(request, customer.id), "notice": notice, "error": error,
    })


async def _tag(request: web.Request, change, notice: str) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await request.post()
    customer_id = _customer_id(request)
    back = security.safe_next(str(form.get("next", "")), _customer_url(request, customer_id))
    separator = "&" if "?" in back else "?"
    try:
        changed = await change(customer_id, ctx.actor(), str(form.get("tag", ""))[:200])
    except ServiceError as error:
        if error.code == "not_found":
            raise Refused(404, "error.404") from None
        return see_other(f"{back}{separator}error={outcomes.error_key(error)}#tags")
    return see_other(f"{back}{separator}notice={notice if changed else 'unchanged'}#tags")


async def tag_add(request: web.Request) -> web.StreamResponse:
    return await _tag(request, desk(request).add_tag, "tag_added")


async def tag_remove(request: web.Request) -> web.StreamResponse:
    return await _tag(request, desk(request).remove_tag, "tag_removed")


ROUTES = [
    route("GET", "/customers", customer_list, name="customers"),
    route("GET", f"/customers/{ID}", customer_page, name="customer"),
    route("POST", f"/customers/{ID}/tags", tag_add, name="customer_tag_add"),
    route("POST", f"/customers/{ID}/tags/remove", tag_remove, name="customer_tag_remove"),
]
