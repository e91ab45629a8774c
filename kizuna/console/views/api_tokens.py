"""APIトークン (admins only): the REST API's bearer tokens - for the shop's EC site, its POS
(role `pos`) or scripts. A new token is shown once, on the page that answers the form (never
in a URL or a log); revoking one makes its next request 401."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from kizuna.storage import tokens
from kizuna.storage.errors import Conflict, Invalid, NotFound
from kizuna.storage.roles import TOKEN_ROLES

from ..context import CONTEXT, db
from ..render import render
from ..routes import ADMIN_ONLY, Refused, route, see_other

ID = "{token_id:[0-9]{1,9}}"
NOTICES = ("token_revoked",)
EXPIRY_CHOICES = ("", "30", "90", "365")  # days; "": never
ERRORS = ("already_revoked",)


async def _page(request: web.Request, *, form: dict | None = None, error: str | None = None, created=None,
                plain: str | None = None, status: int = 200) -> web.Response:
    async with db(request) as session:
        rows = await tokens.list_all(session)
    notice = request.query.get("notice")
    error = error or (f"api_tokens.error.{request.query['error']}" if request.query.get("error") in ERRORS else None)
    return render(request, "api_tokens.html", {
        "rows": rows, "roles": [str(role) for role in TOKEN_ROLES], "form": form or {"name": "", "role": "pos", "expires_in": "90"},
        "expiry_choices": EXPIRY_CHOICES, "now": request[CONTEXT].now,
        "error": error, "notice": f"api_tokens.notice.{notice}" if notice in NOTICES else None,
        "created": created, "plain": plain,
    }, status=status)


async def api_tokens_list(request: web.Request) -> web.StreamResponse:
    return await _page(request)


async def api_token_create(request: web.Request) -> web.StreamResponse:
    posted = await request.post()
    form = {"name": str(posted.get("name", ""))[:300], "role": str(posted.get("role", ""))[:20],
            "expires_in": str(posted.get("expires_in", ""))[:5]}
    if form["expires_in"] not in EXPIRY_CHOICES:
        return await _page(request, form=form, error="api_tokens.error.expires_at", status=400)
    now = request[CONTEXT].now
    expires_at = now + timedelta(days=int(form["expires_in"])) if form["expires_in"] else None
    try:
        async with db(request) as session:
            token, plain = await tokens.create(session, name=form["name"], role=form["role"], actor=request[CONTEXT].actor(),
                                               expires_at=expires_at, now=now)
    except Invalid as invalid:
        return await _page(request, form=form, error=f"api_tokens.error.{invalid.field}", status=400)
    return await _page(request, created=token, plain=plain)


async def api_token_revoke(request: web.Request) -> web.StreamResponse:
    url = request.app.router["api_tokens"].url_for()
    try:
        async with db(request) as session:
            await tokens.revoke(session, int(request.match_info["token_id"]), actor=request[CONTEXT].actor())
    except NotFound:
        raise Refused(404, "error.404") from None
    except Conflict as conflict:
        return see_other(url.with_query({"error": conflict.code}))
    return see_other(url.with_query({"notice": "token_revoked"}))


ROUTES = [
    route("GET", "/api-tokens", api_tokens_list, name="api_tokens", roles=ADMIN_ONLY),
    route("POST", "/api-tokens", api_token_create, name="api_token_create", roles=ADMIN_ONLY),
    route("POST", f"/api-tokens/{ID}/revoke", api_token_revoke, name="api_token_revoke", roles=ADMIN_ONLY),
]
