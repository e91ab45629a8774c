"""クーポン利用: redeeming a customer's coupon at the till. The clerk types or pastes the code
(a barcode scanner that types works too), sees the coupon and the customer, and confirms.
A code that cannot be used says why, plainly: already used (when), expired (when),
cancelled, another shop's, or a typo (the check character does not match).

The rules are storage/coupons.py's: `look_up` says what `redeem` would do, and `redeem`
decides (of two tills confirming one code, one wins). The roles are the REST API's till
roles without the POS systems: support and admins (a marketer has no till).
"""

from __future__ import annotations

from aiohttp import web

from kizuna.storage import coupons
from kizuna.storage.coupon_codes import read_qr
from kizuna.storage.models import CouponGrant, GrantStatus

from ..context import CONTEXT, db
from ..render import render
from ..routes import TILL, route, see_other

CODE_MAX = 64  # as the API's RedeemRequest


def _by(ctx) -> str:
    """Who redeemed, as the grant and the timeline keep it (the audit log keeps the e-mail)."""
    return f"staff:{ctx.staff.id}"


async def _redeemed(request: web.Request):
    """The grant the last confirmation redeemed (`?redeemed=<grant id>`), with its coupon and customer."""
    value = request.query.get("redeemed", "")
    if not value.isdigit() or len(value) > 18:
        return None
    async with db(request) as session:
        grant = await session.get(CouponGrant, int(value))
        if grant is None or grant.status != GrantStatus.REDEEMED:
            return None
        return await coupons.describe(session, grant)


# The till may use the camera (the console's other pages may not: security.HEADERS).
CAMERA = "camera=(self), microphone=(), geolocation=(), payment=()"


def _page(request: web.Request, *, code: str = "", found=None, refusal=None, redeemed=None, status: int = 200) -> web.Response:
    response = render(request, "redeem.html", {"code": code, "found": found, "refusal": refusal, "redeemed": redeemed},
                      status=status)
    response.headers["Permissions-Policy"] = CAMERA
    return response


async def redeem_page(request: web.Request) -> web.StreamResponse:
    return _page(request, redeemed=await _redeemed(request))


async def _code(request: web.Request) -> str:
    return str((await request.post()).get("code", ""))[:CODE_MAX]


async def redeem_check(request: web.Request) -> web.StreamResponse:
    """Step 1: what the code would redeem (nothing is changed)."""
    ctx = request[CONTEXT]
    code = await _code(request)
    try:
        async with db(request) as session:
            found = await coupons.look_up(session, code_text=code, now=ctx.now)
    except coupons.RedeemError as refusal:
        return _page(request, code=code, refusal=refusal, status=400)
    return _page(request, code=code, found=found)


async def redeem_confirm(request: web.Request) -> web.StreamResponse:
    """Step 2: redeem it. Another till may have been quicker: that is a refusal like any other."""
    ctx = request[CONTEXT]
    code = await _code(request)
    try:
        async with db(request) as session:
            grant = await coupons.redeem(session, code_text=code, by=_by(ctx), where=None, now=ctx.now, actor=ctx.actor())
    except coupons.RedeemError as refusal:
        return _page(request, code=code, refusal=refusal, status=400)
    return see_other(request.app.router["redeem"].url_for().with_query({"redeemed": str(grant.id)}))


async def redeem_scan(request: web.Request) -> web.StreamResponse:
    """A camera frame from the page's scanner (console.js): `?w=&h=`, then w×h grey bytes.
    Answers {"code": the QR code's text} or {"code": null}; the page then checks the code
    as if it had been typed (step 1), so nothing here decides anything."""
    width, height = (request.query.get(name, "") for name in ("w", "h"))
    if not (width.isdigit() and height.isdigit() and len(width) < 5 and len(height) < 5):
        raise web.HTTPBadRequest(text="w and h are the frame's size")
    try:
        text = read_qr(await request.read(), int(width), int(height))  # the body is bounded by the app's client_max_size
    except ValueError as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    return web.json_response({"code": text[:CODE_MAX] if text else None})


ROUTES = [
    route("GET", "/coupons/redeem", redeem_page, name="redeem", roles=TILL),
    route("POST", "/coupons/redeem/check", redeem_check, name="redeem_check", roles=TILL),
    route("POST", "/coupons/redeem", redeem_confirm, name="redeem_confirm", roles=TILL),
    route("POST", "/coupons/redeem/scan", redeem_scan, name="redeem_scan", roles=TILL),
]
