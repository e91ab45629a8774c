"""漏えい調査 (admins only; APPI breach scoping): for a staff account or an API token and a period,
which customer records it read or exported (storage/audit_reads.py), as a table and as a CSV
an admin can hand to the authorities. Customers are listed by id; their names only when the
admin asks, and then only on this page or in the CSV they download (which is itself audited)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from aiohttp import web

from kizuna.storage import audit, audit_reads, staff as staff_store, tokens
from kizuna.storage.errors import Invalid, NotFound

from ..context import CONTEXT, db, services_of
from ..render import render
from ..routes import ADMIN_ONLY, route

SHOWN = 500  # customers on the page; the CSV has every one


def _day(raw: str | None, default: date) -> date | None:
    if not raw:
        return default
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        return None


async def _report(request: web.Request, *, names: bool):
    """(form values, report or None, error key or None) from the query."""
    ctx = request[CONTEXT]
    today = services_of(request).clock().astimezone(ctx.timezone).date()
    query = request.query
    form = {"actor": query.get("actor", "")[:30], "from": query.get("from", "")[:10], "to": query.get("to", "")[:10], "names": names}
    first, last = _day(form["from"], today - timedelta(days=7)), _day(form["to"], today)
    form["from"], form["to"] = (first or form["from"]), (last or form["to"])
    if not form["actor"]:
        return form, None, None
    if first is None or last is None or last < first:
        return form, None, "breach.error.period"
    since = datetime.combine(first, time(0), tzinfo=ctx.timezone)
    until = datetime.combine(last + timedelta(days=1), time(0), tzinfo=ctx.timezone)
    try:
        kind, actor_id = audit_reads.parse_actor(form["actor"])
        async with db(request) as session:
            who = await audit_reads.resolve(session, kind, actor_id)
            result = await audit_reads.report(session, who, since=since, until=until, names=names)
    except (Invalid, NotFound) as error:
        return form, None, "breach.error.period" if isinstance(error, Invalid) and error.field in ("since", "until") else "breach.error.actor"
    return form, result, None


async def breach_page(request: web.Request) -> web.StreamResponse:
    names = request.query.get("names") == "1"
    form, result, error = await _report(request, names=names)
    async with db(request) as session:
        accounts = await staff_store.list_all(session)
        api_tokens = await tokens.list_all(session)
    csv_url = None
    if result is not None:
        csv_url = str(request.app.router["breach_csv"].url_for().with_query(
            {"actor": form["actor"], "from": str(form["from"]), "to": str(form["to"]), **({"names": "1"} if names else {})}))
    return render(request, "breach.html", {
        "form": form, "result": result, "error": error, "accounts": accounts, "api_tokens": api_tokens, "csv_url": csv_url,
        "shown": result.customers[:SHOWN] if result else [], "more": bool(result and len(result.customers) > SHOWN), "limit": SHOWN,
    }, status=400 if error else 200)


async def breach_csv(request: web.Request) -> web.StreamResponse:
    names = request.query.get("names") == "1"
    form, result, error = await _report(request, names=names)
    if result is None:
        return await breach_page(request)
    async with db(request) as session:  # who took the list (with names or not) is on the record too
        audit.record(session, request[CONTEXT].actor(), audit.Action.EXPORT, target=f"breach_report:{result.who.label}"[:200],
                     format="csv", since=result.since.isoformat(), until=result.until.isoformat(), names=names,
                     customers=len(result.customers))
    name = f"breach-{result.who.kind}-{result.who.id}-{form['from']}-{form['to']}.csv"
    return web.Response(body=audit_reads.to_csv(result, names=names), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


ROUTES = [
    route("GET", "/breach", breach_page, name="breach", roles=ADMIN_ONLY),
    route("GET", "/breach.csv", breach_csv, name="breach_csv", roles=ADMIN_ONLY),
]
