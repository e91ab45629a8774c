"""定型文 (canned responses): admins keep the replies support staff pick in the composer."""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import canned
from kizuna.storage.errors import NotFound, ServiceError

from .. import outcomes
from ..context import CONTEXT, db
from ..render import render
from ..routes import ADMIN_ONLY, Refused, route, see_other

ID = "{canned_id:[0-9]{1,9}}"
FIELDS = ("shortcut", "title", "text")


def _list_url(request: web.Request, **query: str) -> str:
    url = request.app.router["canned"].url_for()
    return str(url.with_query(query) if query else url)


async def _page(request: web.Request, *, form: dict | None = None, error: str | None = None, status: int = 200) -> web.Response:
    async with db(request) as session:
        rows = await canned.list_all(session)
    notice, flagged = outcomes.shown(request.query)
    return render(request, "canned.html", {
        "rows": rows, "form": form or {key: "" for key in FIELDS}, "notice": notice, "error": error or flagged,
    }, status=status)


async def _fields(request: web.Request) -> dict[str, str]:
    form = await request.post()
    return {key: str(form.get(key, ""))[:6000] for key in FIELDS}


async def canned_list(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def canned_create(request: web.Request) -> web.StreamResponse:
    fields = await _fields(request)
    try:
        async with db(request) as session:
            await canned.create(session, **fields, actor=request[CONTEXT].actor())
    except ServiceError as error:  # the form comes back as typed
        return await _page(request, form=fields, error=f"outcome.error.{outcomes.error_key(error)}", status=400)
    return see_other(_list_url(request, notice="canned_created"))


async def canned_update(request: web.Request) -> web.StreamResponse:
    fields = await _fields(request)
    try:
        async with db(request) as session:
            await canned.update(session, int(request.match_info["canned_id"]), **fields, actor=request[CONTEXT].actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    except ServiceError as error:
        return see_other(_list_url(request, error=outcomes.error_key(error)))
    return see_other(_list_url(request, notice="canned_updated"))


async def canned_delete(request: web.Request) -> web.StreamResponse:
    try:
        async with db(request) as session:
            await canned.delete(session, int(request.match_info["canned_id"]), actor=request[CONTEXT].actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    return see_other(_list_url(request, notice="canned_deleted"))


ROUTES = [
    route("GET", "/canned", canned_list, name="canned", roles=ADMIN_ONLY),
    route("POST", "/canned", canned_create, name="canned_create", roles=ADMIN_ONLY),
    route("POST", f"/canned/{ID}", canned_update, name="canned_update", roles=ADMIN_ONLY),
    route("POST", f"/canned/{ID}/delete", canned_delete, name="canned_delete", roles=ADMIN_ONLY),
]
