"""Login (password, then the TOTP code when the account has one), logout, language."""

from __future__ import annotations

import math

from aiohttp import web

from kizuna.storage import staff as staff_store

from .. import auth, i18n, security
from ..context import CONTEXT, db, sessions_of
from ..render import render
from ..routes import Access, route, see_other

LOGIN_NOTICES = ("logged_out", "expired")


def _home(request: web.Request) -> str:
    return str(request.app.router["home"].url_for())


def _login_page(request: web.Request, *, error: str | None = None, status: int = 200, email: str = "", **values) -> web.Response:
    notice = request.query.get("notice")
    return render(request, "login.html", {
        "error": error, "email": email, "next": security.safe_next(request.query.get("next"), ""),
        "notice": f"login.{notice}" if notice in LOGIN_NOTICES and error is None else None, **values,
    }, status=status)


def _throttled(request: web.Request, template: str, retry_after, **values) -> web.Response:
    ctx = request[CONTEXT]
    minutes = max(1, math.ceil(retry_after.total_seconds() / 60))
    if template == "login.html":
        response = _login_page(request, error=ctx.t("login.throttled", minutes=minutes), status=429, **values)
    else:
        response = render(request, template, {"error": ctx.t("login.throttled", minutes=minutes), "next": ""}, status=429)
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after.total_seconds())))
    return response


def _with_session(response: web.StreamResponse, request: web.Request, cookie: str) -> web.StreamResponse:
    security.set_cookie(response, security.SESSION_COOKIE, cookie, https=request[CONTEXT].settings.https)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    if ctx.logged_in:
        return see_other(security.safe_next(request.query.get("next"), _home(request)))
    if ctx.awaiting_totp:
        return see_other(request.app.router["login_totp"].url_for())
    return _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await request.post()
    email, password = str(form.get("email", ""))[:300], str(form.get("password", ""))[:1000]
    target = security.safe_next(str(form.get("next", "")), _home(request))
    old_cookie = security.read_cookie(request, security.SESSION_COOKIE, https=ctx.settings.https)
    outcome = await auth.log_in(sessions_of(request), ctx, email_text=email, password=password, old_cookie=old_cookie)
    if outcome.throttled:
        return _throttled(request, "login.html", outcome.retry_after, email=email)
    if outcome.failed:
        return _login_page(request, error=ctx.t("login.failed"), status=401, email=email)
    if outcome.awaiting_totp:
        location = request.app.router["login_totp"].url_for().with_query({"next": target})
        return _with_session(see_other(location), request, outcome.cookie)
    return _with_session(see_other(target), request, outcome.cookie)


async def login_totp_page(request: web.Request) -> web.StreamResponse:
    return render(request, "login_totp.html", {"error": None, "next": security.safe_next(request.query.get("next"), "")})


async def login_totp_submit(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await request.post()
    target = security.safe_next(str(form.get("next", "")), _home(request))
    outcome = await auth.second_factor(sessions_of(request), ctx, code=str(form.get("code", ""))[:20])
    if outcome.throttled:
        return _throttled(request, "login_totp.html", outcome.retry_after)
    if outcome.failed:
        return render(request, "login_totp.html", {"error": ctx.t("login.totp.failed"), "next": target}, status=401)
    return _with_session(see_other(target), request, outcome.cookie)


async def login_totp_cancel(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    await auth.log_out(sessions_of(request), ctx)
    response = see_other(request.app.router["login"].url_for())
    security.delete_cookie(response, security.SESSION_COOKIE, https=ctx.settings.https)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    await auth.log_out(sessions_of(request), ctx)
    response = see_other(request.app.router["login"].url_for().with_query({"notice": "logged_out"}))
    security.delete_cookie(response, security.SESSION_COOKIE, https=ctx.settings.https)
    return response


async def set_language(request: web.Request) -> web.StreamResponse:
    """日本語 / English: kept on the staff member's account, and in a cookie (the login page)."""
    ctx = request[CONTEXT]
    form = await request.post()
    locale = i18n.pick_locale(str(form.get("locale", "")))
    if ctx.logged_in:
        async with db(request) as session:
            account = await staff_store.get(session, ctx.staff.id)
            staff_store.set_locale(account, locale)
    response = see_other(security.safe_next(str(form.get("next", "")), _home(request)))
    security.set_cookie(response, security.LANG_COOKIE, locale, https=ctx.settings.https, max_age=365 * 86_400)
    return response


ROUTES = [
    route("GET", "/login", login_page, name="login", access=Access.PUBLIC),
    route("POST", "/login", login_submit, name="login_submit", access=Access.PUBLIC),
    route("GET", "/login/totp", login_totp_page, name="login_totp", access=Access.SECOND_FACTOR),
    route("POST", "/login/totp", login_totp_submit, name="login_totp_submit", access=Access.SECOND_FACTOR),
    route("POST", "/login/totp/cancel", login_totp_cancel, name="login_totp_cancel", access=Access.SECOND_FACTOR),
    route("POST", "/logout", logout, name="logout", before_enrolment=True),
    route("POST", "/language", set_language, name="language", access=Access.PUBLIC),
]
