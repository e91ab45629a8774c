"""The console's route table: every route declares who may use it, and the router is built
from these declarations only, so no view is reachable without its check. Each view module
lists its routes in `ROUTES`; the app factory joins the lists (`views.routes()`).

- `Access.PUBLIC`: anyone (the login page, the language switch);
- `Access.SECOND_FACTOR`: a session that passed the password and waits for its TOTP code;
- `Access.STAFF`: a logged-in staff member whose role is in `roles`. An admin who must still
  enrol a second factor reaches only the routes marked `before_enrolment`.

Requests a page makes by itself (the live updates stream, a region refreshed with the header
`X-Kizuna-Refresh: 1`) do not count as activity: they never keep a session from its idle
timeout (`background=True` routes, or that header).

The guard answers: no session → 303 to the login page; a role not in `roles` → 403; a
request that is not GET without the session's CSRF token → 403. Then the view runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlencode

from aiohttp import web

from kizuna.storage import roles as role_groups
from kizuna.storage.roles import STAFF_ROLES, Role

from . import context, security
from .render import render

log = logging.getLogger("kizuna.console")

View = Callable[[web.Request], Awaitable[web.StreamResponse]]
REFRESH_HEADER = "X-Kizuna-Refresh"

ALL_STAFF = frozenset(STAFF_ROLES)
ADMIN_ONLY = frozenset({Role.ADMIN})
# The groups the REST API checks too (storage/roles.py), so a page and its endpoint agree:
# conversations (1:1チャット) are support's and admins', never marketers'; the FAQ, keyword
# rules, business hours and coupon definitions are marketing's; redeeming a coupon at the
# till is for support and admins (a marketer has no till).
CONVERSATIONS = frozenset(role_groups.CONVERSATION_ROLES)
MARKETING = frozenset(role_groups.MARKETING)
TILL = frozenset(role_groups.TILL) & ALL_STAFF


class Access(Enum):
    PUBLIC = "public"
    SECOND_FACTOR = "second_factor"
    STAFF = "staff"


@dataclass(frozen=True)
class ConsoleRoute:
    method: str
    path: str  # inside the console (the sub-app adds /console)
    name: str
    view: View
    access: Access = Access.STAFF
    roles: frozenset[Role] = ALL_STAFF
    before_enrolment: bool = False
    background: bool = False  # only ever requested by a page itself (see the module docstring)


def route(
    method: str, path: str, view: View, *, name: str, access: Access = Access.STAFF, roles: frozenset[Role] = ALL_STAFF,
    before_enrolment: bool = False, background: bool = False,
) -> ConsoleRoute:
    """One line of a view module's `ROUTES`; only staff routes have roles."""
    return ConsoleRoute(method, path, name, view, access, roles if access is Access.STAFF else frozenset(), before_enrolment, background)


def add_routes(app: web.Application, table: Sequence[ConsoleRoute]) -> None:
    """Serve `table` (built by the app factory from the view modules' lists), every view behind its guard."""
    seen: set = set()
    for item in table:
        if {item.name, (item.method, item.path)} & seen:
            raise ValueError(f"console route declared twice: {item.method} {item.path} ({item.name})")
        seen |= {item.name, (item.method, item.path)}
        app.router.add_route(item.method, item.path, _guarded(item), name=item.name)


class Refused(Exception):
    """Answer with the error page: 403 (role, CSRF) or 404."""

    def __init__(self, status: int, message_key: str):
        super().__init__(message_key)
        self.status, self.message_key = status, message_key


def _guarded(item: ConsoleRoute) -> View:
    async def guarded(request: web.Request) -> web.StreamResponse:
        ctx = await context.load(request, touch=not item.background and request.headers.get(REFRESH_HEADER) != "1")
        request[context.CONTEXT] = ctx
        try:
            await _check(item, request, ctx)
            response = await item.view(request)
        except Refused as refused:
            response = error_page(request, refused.status, refused.message_key)
        except web.HTTPException as exc:
            if exc.status >= 400:
                raise
            response = web.Response(status=exc.status, headers=exc.headers)  # a redirect, with the cookies below
        apply_cookies(response, ctx)
        return response

    guarded.__name__ = item.view.__name__
    guarded.__doc__ = item.view.__doc__
    return guarded


async def _check(item: ConsoleRoute, request: web.Request, ctx: context.Context) -> None:
    if item.access is Access.SECOND_FACTOR:
        if not ctx.awaiting_totp:
            raise _to_login(request, ctx)
    elif item.access is Access.STAFF:
        if ctx.awaiting_totp:
            raise web.HTTPSeeOther(request.app.router["login_totp"].url_for())
        if not ctx.logged_in:
            raise _to_login(request, ctx)
        if ctx.must_enrol_totp and not item.before_enrolment:
            raise web.HTTPSeeOther(request.app.router["account_totp"].url_for())
        if ctx.role not in item.roles:
            log.info("console: %s (%s) refused %s %s", ctx.staff.email, ctx.role, request.method, request.path)
            raise Refused(403, "error.403")
    if request.method not in security.SAFE_METHODS:
        if not security.tokens_match(ctx.csrf_token, await security.submitted_token(request)):
            log.warning("console: CSRF token missing or wrong on %s %s from %s", request.method, request.path, ctx.ip)
            raise Refused(403, "error.csrf")


def _to_login(request: web.Request, ctx: context.Context) -> web.HTTPSeeOther:
    query = {}
    if request.method == "GET" and request.path_qs != str(request.app.router["home"].url_for()):
        query["next"] = request.path_qs
    if ctx.stale_session:
        query["notice"] = "expired"
    location = request.app.router["login"].url_for()
    return web.HTTPSeeOther(f"{location}?{urlencode(query)}" if query else str(location))


def apply_cookies(response: web.StreamResponse, ctx: context.Context) -> None:
    """The cookies a response owes the browser: a new CSRF nonce, the removal of a dead session's."""
    https = ctx.settings.https
    if ctx.set_csrf_cookie and ctx.csrf_nonce:
        security.set_cookie(response, security.CSRF_COOKIE, ctx.csrf_nonce, https=https)
    if ctx.stale_session and ctx.session is None and security.cookie_name(security.SESSION_COOKIE, https) not in response.cookies:
        security.delete_cookie(response, security.SESSION_COOKIE, https=https)


def see_other(location: object) -> web.Response:
    """303 to `location` (after a form, or to the login page)."""
    return web.Response(status=303, headers={"Location": str(location)})


def error_page(request: web.Request, status: int, message_key: str) -> web.Response:
    return render(request, "error.html", {"status": status, "message_key": message_key}, status=status)
