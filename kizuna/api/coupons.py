"""Coupons (issue 3), and the public QR image of a coupon code.

Errors keep the API's shape, `{"error": {"code", "message"}}`, with extra keys where they
help the caller: `field` for invalid input, `redeemed_at` / `expires_at` / `revoked_at`
when a redemption is refused.

Redemption answers (POST /api/v1/coupons/redeem):
  200 redeemed · 400 malformed or bad_check (a typo: ask the customer again) · 404 unknown ·
  409 already_redeemed · 410 expired or revoked · 422 other_shop (another shop's coupon).
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from kizuna.storage import coupons, customers
from kizuna.storage.coupon_codes import qr_png
from kizuna.storage.db import transaction
from kizuna.storage.models import (
    Coupon, CouponCreate, CouponGrant, CouponRead, CouponUpdate, Customer, DiscountType,
)
from kizuna.storage.roles import MARKETING, STAFF_ROLES, TILL, Role

from .http import (
    LIMIT, NOT_BLANK, TOKEN, ApiError, Endpoint, actor, bool_param, bool_query, column_max, cursor_param, found, id_param,
    int_query, json_answer, next_cursor, optional, parse_body, path_id, read_as, services,
)

QR_CACHE = "private, max-age=86400"


# -- models ---------------------------------------------------------------------------------


class CouponPage(BaseModel):
    items: list[CouponRead]
    next_before: int | None


# What `coupons.check_coupon` enforces field by field, said in the schema (it stays the one
# check); the rules across fields (a percent is at most 100, valid_days or valid_until, ...)
# are in the description.
_RULES = {
    "title": NOT_BLANK,
    "discount_value": {"minimum": 1, "maximum": coupons.MAX_AMOUNT_YEN,
                       "description": f"yen (1 to {coupons.MAX_AMOUNT_YEN}), or percent (1 to 100)"},
    "valid_days": {"minimum": 1, "maximum": coupons.MAX_VALID_DAYS},
    "stock": {"minimum": 0, "maximum": coupons.MAX_STOCK},
    "image_url": {"pattern": "^https://"},
}
_ACROSS_FIELDS = ("Give valid_days or valid_until (or both); valid_from before valid_until; "
                  "a percent discount is 1 to 100.")


def _with_rules(schema: dict) -> None:
    for name, rules in _RULES.items():
        schema["properties"][name].update(rules)
    schema["description"] = _ACROSS_FIELDS


class CouponIn(CouponCreate):
    model_config = {"extra": "forbid", "json_schema_extra": _with_rules}


class CouponChange(CouponUpdate):
    """PATCH: the fields sent are changed; null clears the optional ones (stock, valid_days, ...)."""

    model_config = {"extra": "forbid", "json_schema_extra": _with_rules}

    title: str = optional(min_length=1, max_length=40)
    discount_type: DiscountType = optional()
    discount_value: int = optional()
    one_per_customer: bool = optional()
    active: bool = optional()


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: int = Field(ge=1, le=column_max(Customer.id))


class RedeemRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64, description="as scanned or typed; case, hyphens, spaces and full width are fine")
    where: str | None = Field(default=None, max_length=100, description="store or till id")


class CouponBrief(BaseModel):
    id: int
    title: str
    discount_type: str
    discount_value: int


class CouponGrantRead(BaseModel):
    id: int
    coupon_id: int
    customer_id: int
    code: str
    status: str  # issued | redeemed | revoked (stored)
    state: str  # the status, or "expired" for an issued grant past expires_at
    issued_at: datetime
    expires_at: datetime
    redeemed_at: datetime | None
    redeemed_by: str | None
    redeemed_where: str | None
    revoked_at: datetime | None
    coupon: CouponBrief


class CouponGrantPage(BaseModel):
    items: list[CouponGrantRead]
    next_before: int | None


def _grant_read(grant: CouponGrant, coupon: Coupon, now: datetime) -> CouponGrantRead:
    return CouponGrantRead(
        id=grant.id, coupon_id=grant.coupon_id, customer_id=grant.customer_id, code=grant.code, status=grant.status,
        state=coupons.grant_state(grant, now), issued_at=grant.issued_at, expires_at=grant.expires_at,
        redeemed_at=grant.redeemed_at, redeemed_by=grant.redeemed_by, redeemed_where=grant.redeemed_where,
        revoked_at=grant.revoked_at,
        coupon=CouponBrief(id=coupon.id, title=coupon.title, discount_type=coupon.discount_type, discount_value=coupon.discount_value),
    )


# -- coupons --------------------------------------------------------------------------------


async def create_coupon(request: web.Request) -> web.Response:
    body = await parse_body(request, CouponIn)
    async with transaction(services(request).sessions) as session:
        coupon = await coupons.create_coupon(session, body.model_dump(), actor=actor(request))
    return json_answer(read_as(CouponRead, coupon), status=201)


async def list_coupons(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await coupons.list_coupons(session, active=bool_query(request, "active"), limit=limit,
                                          before_id=int_query(request, "before"))
    return json_answer(CouponPage(items=[read_as(CouponRead, row) for row in rows], next_before=next_cursor(rows, limit)))


async def get_coupon(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        coupon = found(await coupons.get_coupon(session, path_id(request)), "coupon")
    return json_answer(read_as(CouponRead, coupon))


async def update_coupon(request: web.Request) -> web.Response:
    coupon_id = path_id(request)
    body = await parse_body(request, CouponChange)
    async with transaction(services(request).sessions) as session:
        coupon = found(await coupons.update_coupon(session, coupon_id, body.model_dump(exclude_unset=True), actor=actor(request)),
                       "coupon")
    return json_answer(read_as(CouponRead, coupon))


# -- grants ---------------------------------------------------------------------------------


async def issue_coupon(request: web.Request) -> web.Response:
    coupon_id = path_id(request)
    body = await parse_body(request, GrantRequest)
    now = services(request).clock()
    async with transaction(services(request).sessions) as session:
        result = await coupons.issue_by_staff(session, coupon_id=coupon_id, customer_id=body.customer_id, now=now,
                                              by=request[TOKEN].name, actor=actor(request))
    return json_answer(_grant_read(result.grant, result.coupon, now), status=201 if result.created else 200)


async def customer_coupons(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    limit = int_query(request, "limit")
    valid_only = bool(bool_query(request, "valid_only"))
    now = services(request).clock()
    async with services(request).sessions() as session:
        await customers.get_existing(session, customer_id)
        rows = await coupons.grants_of_customer(session, customer_id, valid_only=valid_only, now=now, limit=limit,
                                                before_id=int_query(request, "before"))
    return json_answer(CouponGrantPage(items=[_grant_read(grant, coupon, now) for grant, coupon in rows],
                                       next_before=next_cursor(rows, limit, lambda row: row[0].id)))


# A refused redemption's status tells the till what to do: ask again (400), or tell the customer.
_REDEEM_STATUS = {"malformed": 400, "bad_check": 400, "unknown": 404, "already_redeemed": 409,
                  "expired": 410, "revoked": 410, "other_shop": 422}


async def redeem_coupon(request: web.Request) -> web.Response:
    body = await parse_body(request, RedeemRequest)
    now = services(request).clock()
    try:
        async with transaction(services(request).sessions) as session:
            grant = await coupons.redeem(session, code_text=body.code, by=request[TOKEN].name, where=body.where, now=now,
                                         actor=actor(request))
            coupon = await coupons.get_coupon(session, grant.coupon_id)
    except coupons.RedeemError as error:
        raise ApiError(_REDEEM_STATUS[error.code], error.code, error.message, **error.details) from None
    return json_answer(_grant_read(grant, coupon, now))


async def revoke_grant(request: web.Request) -> web.Response:
    grant_id = path_id(request)
    now = services(request).clock()
    async with transaction(services(request).sessions) as session:
        grant = await coupons.revoke(session, grant_id=grant_id, by=request[TOKEN].name, now=now, actor=actor(request))
        coupon = await coupons.get_coupon(session, grant.coupon_id)
    return json_answer(_grant_read(grant, coupon, now))


ENDPOINTS = [
    Endpoint("POST", "/coupons", create_coupon, "Create a coupon (201). 400 names the invalid field.",
             roles=MARKETING, request=CouponIn, response=CouponRead, statuses=(201,)),
    Endpoint("GET", "/coupons", list_coupons, "List coupons, newest first (cursor paging with `before`)",
             roles=STAFF_ROLES, response=CouponPage, query=[bool_param("active"), cursor_param("before", Coupon.id), LIMIT]),
    Endpoint("GET", "/coupons/{id}", get_coupon, "One coupon, with how many were issued", roles=STAFF_ROLES,
             response=CouponRead, path_params=[id_param(Coupon.id)]),
    Endpoint("PATCH", "/coupons/{id}", update_coupon,
             "Change a coupon: only the fields sent (null clears stock, valid_days, valid_until ...). "
             "400 names the invalid field; nothing is changed then. Grants already issued keep their expiry.",
             roles=MARKETING, request=CouponChange, response=CouponRead, path_params=[id_param(Coupon.id)]),
    Endpoint("POST", "/coupons/{id}/grants", issue_coupon,
             "Give the coupon to a customer: 201 a new grant; 200 the grant the customer already has (one per customer); "
             "409 refused (code inactive, out_of_stock, not_yet_valid or ended); 404 unknown coupon or customer",
             roles=MARKETING, request=GrantRequest, response=CouponGrantRead, path_params=[id_param(Coupon.id)],
             statuses=(201, 200), errors={409: "refused: inactive, out_of_stock, not_yet_valid or ended"}),
    Endpoint("GET", "/customers/{id}/coupons", customer_coupons,
             "A customer's coupons, newest first; `valid_only=true`: only those usable now (cursor paging with `before`)",
             roles=STAFF_ROLES, response=CouponGrantPage, path_params=[id_param(Customer.id)],
             query=[bool_param("valid_only", default=False), cursor_param("before", CouponGrant.id), LIMIT]),
    Endpoint("POST", "/coupons/redeem", redeem_coupon,
             "Redeem a coupon code at the till (the token's name is recorded as who). 200 redeemed; "
             "400 malformed or bad_check (a typo: check the code); 404 unknown; 409 already_redeemed (with redeemed_at); "
             "410 expired (with expires_at) or revoked; 422 other_shop (another shop's coupon)",
             roles=TILL, request=RedeemRequest, response=CouponGrantRead,
             errors={404: "unknown: no coupon has this code", 409: "already_redeemed (with redeemed_at)",
                     410: "expired (with expires_at) or revoked (with revoked_at)", 422: "other_shop: another shop's coupon"}),
    Endpoint("POST", "/coupons/grants/{id}/revoke", revoke_grant,
             "Cancel an unused grant (200; revoking twice is fine). 409 already_redeemed. The stock is not given back.",
             roles=(Role.ADMIN,), response=CouponGrantRead, path_params=[id_param(CouponGrant.id)],
             errors={409: "already_redeemed (with redeemed_at)"}),
]


# -- the QR image: public, outside /api/v1 ----------------------------------------------------


async def coupon_qr(request: web.Request) -> web.Response:
    """`GET /coupons/{code}/qr.png`: no login, the code is the secret (55 random bits).
    Anything that is not an issued code of this shop is the same plain 404."""
    async with services(request).sessions() as session:
        code = await coupons.known_code(session, request.match_info["code"])
    if code is None:
        raise web.HTTPNotFound()
    return web.Response(body=qr_png(code), content_type="image/png",
                        headers={"Cache-Control": QR_CACHE, "X-Content-Type-Options": "nosniff"})


PUBLIC_ROUTES = [web.get("/coupons/{code}/qr.png", coupon_qr)]
