"""個人情報の請求: a customer's data-subject requests from their page (export JSON / CSV, correct
their registered details, stop use and resume, erase with a typed confirmation), the request
ledger (請求台帳) and the third-party provision records (第三者提供記録). Admins only; the rules
are flows/data_rights.py, the same functions the REST API calls."""

from __future__ import annotations

from datetime import date

from aiohttp import web

from kizuna.flows import data_rights
from kizuna.storage import customers, data_requests, prefectures
from kizuna.storage.errors import Conflict, Invalid, NotFound
from kizuna.storage.models import Customer, Gender, RequestChannel

from ..context import CONTEXT, db, sessions_of
from ..forms import FORM, Problem, posted, problems
from ..render import render
from ..routes import ADMIN_ONLY, Refused, route, see_other

ID = "{customer_id:[0-9]{1,9}}"
PAGE = 50
# How a customer may have asked, as staff record it in the console (the API is its own channel).
CONSOLE_CHANNELS = tuple(channel.value for channel in RequestChannel if channel is not RequestChannel.API)


def _customer_id(request: web.Request) -> int:
    return int(request.match_info["customer_id"])


def _back(request: web.Request, customer_id: int, outcome: str) -> web.Response:
    url = request.app.router["customer"].url_for(customer_id=str(customer_id)).with_query({"dsr": outcome})
    return see_other(f"{url}#data-rights")


def _channel(form) -> RequestChannel:
    value = str(form.get("channel", "console"))
    return RequestChannel(value) if value in CONSOLE_CHANNELS else RequestChannel.CONSOLE


_CONFLICT_NOTICES = {"already_stopped": "already_stopped", "not_stopped": "not_stopped", "already_erased": "erased_before",
                     "erased": "erased_before", "merged": "merged"}


async def _run(request: web.Request, action, done: str) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await request.post()
    customer_id = _customer_id(request)
    try:
        await action(sessions_of(request), customer_id, actor=ctx.actor(), channel=_channel(form), now=ctx.now)
    except NotFound:
        raise Refused(404, "error.404") from None
    except Conflict as error:
        return _back(request, customer_id, _CONFLICT_NOTICES.get(error.code, "invalid"))
    return _back(request, customer_id, done)


async def stop(request: web.Request) -> web.StreamResponse:
    return await _run(request, data_rights.stop, "stopped")


async def resume(request: web.Request) -> web.StreamResponse:
    return await _run(request, data_rights.resume, "resumed")


async def erase(request: web.Request) -> web.StreamResponse:
    """Only when the customer number was typed into the confirmation (an erase cannot be undone)."""
    form = await request.post()
    customer_id = _customer_id(request)
    if str(form.get("confirm", "")).strip() != str(customer_id):
        return _back(request, customer_id, "confirm_mismatch")
    return await _run(request, data_rights.erase, "erased")


async def export(request: web.Request) -> web.StreamResponse:
    """The customer's record as a download (JSON, or a zip of CSVs), recorded first."""
    ctx = request[CONTEXT]
    form = await request.post()
    customer_id = _customer_id(request)
    format = str(form.get("format", "json"))
    try:
        exported = await data_rights.export(
            sessions_of(request), customer_id, format=format if format in data_rights.EXPORT_FORMATS else "json",
            actor=ctx.actor(), channel=_channel(form), now=ctx.now,
            recipient=str(form.get("recipient", ""))[:400], purpose=str(form.get("purpose", ""))[:400])
    except NotFound:
        raise Refused(404, "error.404") from None
    except Invalid:
        return _back(request, customer_id, "invalid")
    return web.Response(body=exported.body, content_type=exported.content_type,
                        headers={"Content-Disposition": f'attachment; filename="{exported.filename}"'})


# -- correct (訂正) ------------------------------------------------------------------------------

def _as_typed(customer: Customer) -> dict[str, str]:
    """The registered details as the form shows them (a birthday as 1990-01-31, empty when unset)."""
    shown = {}
    for column in customers.PROFILE_COLUMNS:
        value = getattr(customer, column)
        shown[column] = "" if value is None else value.isoformat() if isinstance(value, date) else str(value)
    return shown


async def _correctable(request: web.Request) -> Customer:
    async with db(request) as session:
        try:
            customer = await customers.get_existing(session, _customer_id(request))
        except NotFound:
            raise Refused(404, "error.404") from None
    if customer.erased_at is not None:
        raise Refused(404, "error.404")
    return customer


def _correct_page(request: web.Request, customer: Customer, form: dict[str, str], errors: dict[str, Problem],
                  status: int = 200) -> web.Response:
    return render(request, "data_correct.html", {
        "customer": customer, "form": form, "errors": errors, "channels": CONSOLE_CHANNELS,
        "genders": [gender.value for gender in Gender], "prefectures": [p.name for p in prefectures.PREFECTURES],
    }, status=status)


async def correct_form(request: web.Request) -> web.StreamResponse:
    customer = await _correctable(request)
    return _correct_page(request, customer, {**_as_typed(customer), "channel": "console"}, {})


async def correct_save(request: web.Request) -> web.StreamResponse:
    """Only the fields staff changed go to the service, which reads each as the registration
    reads the customer's own answer; a refusal comes back beside its field with nothing stored."""
    ctx = request[CONTEXT]
    customer = await _correctable(request)
    form = await posted(request, *customers.PROFILE_COLUMNS, "channel", limit=300)
    current = _as_typed(customer)
    changes = {column: form[column].strip() for column in customers.PROFILE_COLUMNS
               if form[column].strip() != current[column]}
    if not changes:
        return _correct_page(request, customer, form, {FORM: Problem("dsr.correct.unchanged")}, status=400)
    try:
        await data_rights.correct(sessions_of(request), customer.id, changes, actor=ctx.actor(),
                                  channel=_channel(form), now=ctx.now)
    except (Invalid, Conflict, NotFound) as error:
        return _correct_page(request, customer, form, problems(error, "dsr"), status=400)
    return _back(request, customer.id, "corrected")


def _before(request: web.Request) -> int | None:
    before = request.query.get("before", "")
    return int(before) if before.isdigit() and len(before) < 10 else None


async def ledger(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    before_id = _before(request)
    async with db(request) as session:
        rows = await data_requests.page(session, limit=PAGE + 1, before_id=before_id)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    base = request.app.router["data_requests"].url_for()
    return render(request, "data_requests.html", {
        "rows": [{"row": row, "overdue": data_requests.is_overdue(row, ctx.now)} for row in rows],
        "deadline_days": data_requests.DEADLINE.days,
        "older_url": str(base.with_query({"before": str(rows[-1].id)})) if more and rows else None,
        "newest_url": str(base) if before_id is not None else None,
    })


async def provisions(request: web.Request) -> web.StreamResponse:
    before_id = _before(request)
    async with db(request) as session:
        rows = await data_requests.provisions(session, limit=PAGE + 1, before_id=before_id)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    base = request.app.router["provision_records"].url_for()
    return render(request, "provision_records.html", {
        "rows": rows,
        "older_url": str(base.with_query({"before": str(rows[-1].id)})) if more and rows else None,
        "newest_url": str(base) if before_id is not None else None,
    })


ROUTES = [
    route("POST", f"/customers/{ID}/data/export", export, name="customer_data_export", roles=ADMIN_ONLY),
    route("GET", f"/customers/{ID}/data/correct", correct_form, name="customer_data_correct", roles=ADMIN_ONLY),
    route("POST", f"/customers/{ID}/data/correct", correct_save, name="customer_data_correct_save", roles=ADMIN_ONLY),
    route("POST", f"/customers/{ID}/data/stop", stop, name="customer_data_stop", roles=ADMIN_ONLY),
    route("POST", f"/customers/{ID}/data/resume", resume, name="customer_data_resume", roles=ADMIN_ONLY),
    route("POST", f"/customers/{ID}/data/erase", erase, name="customer_data_erase", roles=ADMIN_ONLY),
    route("GET", "/data-requests", ledger, name="data_requests", roles=ADMIN_ONLY),
    route("GET", "/provision-records", provisions, name="provision_records", roles=ADMIN_ONLY),
]
