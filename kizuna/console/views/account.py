"""アカウント: one's own password, language and two-factor authentication (TOTP)."""

from __future__ import annotations

import math

import segno
from aiohttp import web
from markupsafe import Markup

from kizuna.storage import login_attempts
from kizuna.storage import staff as staff_store
from kizuna.storage.roles import Role

from .. import config
from ..context import CONTEXT, db
from ..render import render
from ..routes import route, see_other

NOTICES = ("password_changed", "totp_enabled", "totp_disabled", "locale_changed")
ERRORS = ("admin_totp_required",)


def _account_url(request: web.Request, **query: str) -> str:
    url = request.app.router["account"].url_for()
    return str(url.with_query(query) if query else url)


async def _account_page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    ctx = request[CONTEXT]
    notice = request.query.get("notice")
    flag = request.query.get("error")
    return render(request, "account.html", {
        "error": error,
        "notice": f"notice.{notice}" if notice in NOTICES else None,
        "flag": "account.totp.admin_required" if flag in ERRORS else None,
        "can_disable_totp": ctx.staff.role != Role.ADMIN,
    }, status=status)


async def account(request: web.Request) -> web.StreamResponse:
    return await _account_page(request)


async def account_password(request: web.Request) -> web.StreamResponse:
    """Change one's password: the current one is checked (a failure counts towards the
    login throttle), the other sessions end, this one stays."""
    ctx = request[CONTEXT]
    form = await request.post()
    current, new, again = (str(form.get(key, ""))[:1000] for key in ("current", "new", "again"))
    async with db(request) as session:
        attempt_id = await login_attempts.record(session, email=ctx.staff.email, ip=ctx.ip, now=ctx.now)
    async with db(request) as session:
        verdict = await login_attempts.check(session, attempt_id, policy=config.throttle_policy(ctx.settings), now=ctx.now)
        if verdict.throttled:
            await login_attempts.finish(session, attempt_id, "throttled")
    if verdict.throttled:
        minutes = max(1, math.ceil(verdict.retry_after.total_seconds() / 60))
        return await _account_page(request, error=ctx.t("login.throttled", minutes=minutes), status=429)
    correct = await staff_store.verify_password(ctx.staff.password_hash, current)
    async with db(request) as session:
        await login_attempts.finish(session, attempt_id, "succeeded" if correct else "failed")
    if not correct:
        return await _account_page(request, error=ctx.t("error.password_wrong"), status=400)
    if new != again:
        return await _account_page(request, error=ctx.t("error.password_mismatch"), status=400)
    try:
        staff_store.check_password(new, email=ctx.staff.email)
    except staff_store.StaffInvalid as invalid:
        return await _account_page(request, error=ctx.t(f"error.{invalid.code}"), status=400)
    password_hash = await staff_store.hash_password(new)
    async with db(request) as session:
        me = await staff_store.get(session, ctx.staff.id)
        await staff_store.set_password(session, me, password_hash, actor=ctx.actor(), now=ctx.now, keep_session=ctx.session.id_hash)
    return see_other(_account_url(request, notice="password_changed"))


def _qr_svg(uri: str) -> Markup:
    # segno's SVG of our own otpauth:// URI: paths and numbers only, no text from anyone.
    return Markup(segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#111827", svgclass="qr", lineclass=None))


def _grouped(secret: str) -> str:
    return " ".join(secret[index:index + 4] for index in range(0, len(secret), 4))


async def account_totp(request: web.Request) -> web.StreamResponse:
    """Enrolment: a secret (kept until confirmed) as a QR code and as text, and the code form."""
    ctx = request[CONTEXT]
    if staff_store.totp_enabled(ctx.staff):
        return see_other(_account_url(request))
    sealer = staff_store.totp_sealer(ctx.settings.secret_key)
    async with db(request) as session:
        me = await staff_store.get(session, ctx.staff.id)
        secret = staff_store.begin_totp(me, sealer)
        uri = staff_store.totp_uri(me, sealer)
    return render(request, "account_totp.html", {"qr": _qr_svg(uri), "secret": _grouped(secret), "error": None})


async def account_totp_confirm(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    code = str((await request.post()).get("code", ""))[:20]
    sealer = staff_store.totp_sealer(ctx.settings.secret_key)
    async with db(request) as session:
        me = await staff_store.get(session, ctx.staff.id)
        if staff_store.totp_enabled(me):
            return see_other(_account_url(request))
        confirmed = await staff_store.confirm_totp(session, me, code, actor=ctx.actor(), now=ctx.now, sealer=sealer)
        secret = staff_store.begin_totp(me, sealer)
        uri = staff_store.totp_uri(me, sealer)
    if not confirmed:
        return render(request, "account_totp.html", {
            "qr": _qr_svg(uri), "secret": _grouped(secret), "error": ctx.t("totp.setup.failed"),
        }, status=400)
    return see_other(_account_url(request, notice="totp_enabled"))


async def account_totp_disable(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    if ctx.staff.role == Role.ADMIN:
        return see_other(_account_url(request, error="admin_totp_required"))
    async with db(request) as session:
        me = await staff_store.get(session, ctx.staff.id)
        await staff_store.reset_totp(session, me, actor=ctx.actor())
    return see_other(_account_url(request, notice="totp_disabled"))


ROUTES = [
    route("GET", "/account", account, name="account", before_enrolment=True),
    route("POST", "/account/password", account_password, name="account_password", before_enrolment=True),
    route("GET", "/account/totp", account_totp, name="account_totp", before_enrolment=True),
    route("POST", "/account/totp", account_totp_confirm, name="account_totp_confirm", before_enrolment=True),
    route("POST", "/account/totp/disable", account_totp_disable, name="account_totp_disable", before_enrolment=True),
]
