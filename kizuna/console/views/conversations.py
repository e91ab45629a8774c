"""1:1チャット: the inbox (対応待ち / 自分の担当 / すべて / 解決済み) and one conversation beside
its customer, with what support staff do there (admins and support only; marketers get 403).
Thin: every action is a `SupportDesk` call (flows/support.py), as the REST API's will be."""

from __future__ import annotations

import logging
import re

from aiohttp import web

from kizuna.appkeys import SERVICES
from kizuna.flows.support import SupportDesk
from kizuna.storage import audit, audit_reads, canned, conversations, coupons, customers
from kizuna.storage import faq as faq_store
from kizuna.storage import staff as staff_store
from kizuna.storage.errors import ServiceError
from kizuna.storage.models import ConversationPriority
from kizuna.storage.roles import CONVERSATION_ROLES

from .. import customer_panel, outcomes, timeline
from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import CONVERSATIONS, REFRESH_HEADER, Refused, route, see_other

log = logging.getLogger("kizuna.console")

ID = "{conversation_id:[0-9]{1,9}}"
PAGE = 50
TIMELINE_PAGE = 200
FAQ_SHOWN = 10
TEXT_MAX = 10_000  # characters read from a form (the service checks LINE's limit)


def desk(request: web.Request) -> SupportDesk:
    return request.config_dict[SERVICES].support


def _conversation_id(request: web.Request) -> int:
    return int(request.match_info["conversation_id"])


def conversation_url(request: web.Request, conversation_id: int, *, anchor: str = "", **query: str) -> str:
    url = request.app.router["conversation"].url_for(conversation_id=str(conversation_id))
    return str(url.with_query(query) if query else url) + (f"#{anchor}" if anchor else "")


def number(text: str | None) -> int | None:
    """An id or a page number from a query or a form (ASCII digits only), else None."""
    return int(text) if text and re.fullmatch(r"[0-9]{1,9}", text) else None


async def staff_by_id(session) -> dict:
    return {member.id: member for member in await staff_store.list_all(session)}


# -- the inbox ----------------------------------------------------------------------------------


async def inbox(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    try:
        tab = conversations.Tab(request.query.get("tab", "pending"))
    except ValueError:
        tab = conversations.Tab.PENDING
    page = max(1, min(number(request.query.get("page")) or 1, 1000))
    async with db(request) as session:
        rows = await conversations.inbox(session, tab=tab, staff_id=ctx.staff.id, limit=PAGE + 1, offset=(page - 1) * PAGE)
        counts = await conversations.tab_counts(session, ctx.staff.id)
        staff = await staff_by_id(session)
    base = request.app.router["conversations"].url_for()
    notice, error = outcomes.shown(request.query)
    return render(request, "conversations.html", {
        "tab": tab, "tabs": list(conversations.Tab), "counts": counts, "rows": rows[:PAGE], "staff": staff,
        "previews": {row.conversation.id: timeline.preview(row.last_message, ctx.t) for row in rows},
        "newer_url": str(base.with_query(tab=tab.value, page=str(page - 1))) if page > 1 else None,
        "older_url": str(base.with_query(tab=tab.value, page=str(page + 1))) if len(rows) > PAGE else None,
        "notice": notice, "error": error,
    })


# -- one conversation ------------------------------------------------------------------------------


async def conversation_page(request: web.Request, *, draft: str = "", error: str | None = None, status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    conversation_id = _conversation_id(request)
    faq_query = request.query.get("faq_q", "")[:100]
    before = number(request.query.get("before"))
    async with db(request) as session:
        conversation = await conversations.get(session, conversation_id)
        if conversation is None:
            raise Refused(404, "error.404")
        customer = await customers.get_existing(session, conversation.customer_id)
        staff = await staff_by_id(session)
        rows, more = await conversations.timeline(session, customer.id, limit=TIMELINE_PAGE, before_id=before)
        panel = await customer_panel.values(session, customer, now=ctx.now, timezone=ctx.timezone, locale=ctx.locale)
        replies = [(item, canned.fill(item.text, customer)) for item in await canned.list_all(session)]
        offers = await coupons.list_coupons(session, active=True, limit=100)
        answers = await faq_store.search_entries(session, faq_query, enabled=True, limit=FAQ_SHOWN)
        if request.headers.get(REFRESH_HEADER) != "1":  # a person opened it (breach scoping: storage/audit_reads.py)
            await audit_reads.read(session, ctx.actor(), audit.Action.CONVERSATION_VIEWED, [customer.id],
                                   target=f"conversation:{conversation_id}", at=services_of(request).clock())
    name = customer.display_name or ctx.t("home.no_name")
    items = timeline.build(rows, staff=staff, customer_name=name, timezone=ctx.timezone, t=ctx.t)
    notice, flagged = outcomes.shown(request.query)
    return render(request, "conversation.html", {
        **panel, "conversation": conversation, "name": name, "items": items, "staff": staff,
        "older_url": conversation_url(request, conversation_id, before=str(rows[0].id)) if more and rows else None,
        "newest_url": conversation_url(request, conversation_id) if before is not None else None,
        "assignees": [member for member in staff.values() if member.role in CONVERSATION_ROLES and member.disabled_at is None],
        "priorities": list(ConversationPriority), "replies": replies, "offers": offers, "answers": answers,
        "faq_query": faq_query, "draft": draft, "notice": notice, "error": error or flagged,
        "next": conversation_url(request, conversation_id),
    }, status=status)


async def conversation(request: web.Request) -> web.StreamResponse:
    response = await conversation_page(request)
    # Opened by a person (not a live refresh): the customer's chat shows 既読 on LINE. Best
    # effort: the page is shown whatever happens to the mark.
    if request.headers.get(REFRESH_HEADER) != "1":
        try:
            await desk(request).mark_read(_conversation_id(request))
        except Exception:
            log.warning("conversation %s: read mark not queued", request.match_info["conversation_id"], exc_info=True)
    return response


async def _act(request: web.Request, action, notice: str, *, anchor: str = "") -> web.StreamResponse:
    """Run `action()` (a SupportDesk call); back to the conversation with its outcome."""
    conversation_id = _conversation_id(request)
    try:
        done = await action()
    except ServiceError as error:  # (no such conversation: the page it goes back to says 404)
        return see_other(conversation_url(request, conversation_id, anchor=anchor, error=outcomes.error_key(error)))
    return see_other(conversation_url(request, conversation_id, anchor=anchor, notice=done if isinstance(done, str) else notice))


async def take(request: web.Request) -> web.StreamResponse:
    staff_id = request[CONTEXT].staff.id
    return await _act(request, lambda: desk(request).take(_conversation_id(request), staff_id), "taken")


async def assign(request: web.Request) -> web.StreamResponse:
    assignee = number(str((await request.post()).get("assignee_id", ""))) or 0
    return await _act(request, lambda: desk(request).assign(_conversation_id(request), assignee), "assigned")


async def labels(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    given = str(form.get("labels", ""))[:1000].replace("、", ",")
    priority = str(form.get("priority", ""))[:20]
    return await _act(request, lambda: desk(request).label(_conversation_id(request), given.split(","), priority), "labels_saved")


async def message(request: web.Request) -> web.StreamResponse:
    """The composer: a reply to the customer, or (mode "note") a note only staff see. With
    no text and a canned response chosen, the canned response is sent as it is."""
    ctx = request[CONTEXT]
    form = await request.post()
    text = str(form.get("text", ""))[:TEXT_MAX]
    canned_id = number(str(form.get("canned_id", "")))
    conversation_id = _conversation_id(request)
    try:
        if form.get("mode") == "note":
            await desk(request).note(conversation_id, ctx.actor(), text)
            notice = "noted"
        elif not text.strip() and canned_id is not None:
            await desk(request).reply_canned(conversation_id, ctx.actor(), canned_id)
            notice = "replied"
        else:
            await desk(request).reply(conversation_id, ctx.actor(), text)
            notice = "replied"
    except ServiceError as error:
        # The draft is kept: a long text must not be lost to a refusal.
        return await conversation_page(request, draft=text, error=f"outcome.error.{outcomes.error_key(error)}", status=409 if error.code != "invalid_field" else 400)
    return see_other(conversation_url(request, conversation_id, anchor="conversation", notice=notice))


async def send_coupon(request: web.Request) -> web.StreamResponse:
    actor = request[CONTEXT].actor()
    coupon_id = number(str((await request.post()).get("coupon_id", ""))) or 0

    async def action() -> str:
        sent = await desk(request).send_coupon(_conversation_id(request), actor, coupon_id)
        return "coupon_sent" if sent.created else "coupon_resent"

    return await _act(request, action, "coupon_sent", anchor="conversation")


async def send_faq(request: web.Request) -> web.StreamResponse:
    actor = request[CONTEXT].actor()
    faq_id = str((await request.post()).get("faq_id", ""))[:64]
    return await _act(request, lambda: desk(request).send_faq_answer(_conversation_id(request), actor, faq_id), "faq_sent", anchor="conversation")


async def resolve(request: web.Request) -> web.StreamResponse:
    actor = request[CONTEXT].actor()
    ask_csat = (await request.post()).get("csat") == "on"
    return await _act(request, lambda: desk(request).resolve(_conversation_id(request), actor, ask_csat=ask_csat), "resolved")


ROUTES = [
    route("GET", "/conversations", inbox, name="conversations", roles=CONVERSATIONS),
    route("GET", f"/conversations/{ID}", conversation, name="conversation", roles=CONVERSATIONS),
    route("POST", f"/conversations/{ID}/take", take, name="conversation_take", roles=CONVERSATIONS),
    route("POST", f"/conversations/{ID}/assign", assign, name="conversation_assign", roles=CONVERSATIONS),
    route("POST", f"/conversations/{ID}/labels", labels, name="conversation_labels", roles=CONVERSATIONS),
    route("POST", f"/conversations/{ID}/messages", message, name="conversation_message", roles=CONVERSATIONS),
    route("POST", f"/conversations/{ID}/coupon", send_coupon, name="conversation_coupon", roles=CONVERSATIONS),
    route("POST", f"/conversations/{ID}/faq", send_faq, name="conversation_faq", roles=CONVERSATIONS),
    route("POST", f"/conversations/{ID}/resolve", resolve, name="conversation_resolve", roles=CONVERSATIONS),
]
