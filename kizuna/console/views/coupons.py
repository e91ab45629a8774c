"""クーポン: the coupon definitions (list, new, edit, stop and restart issuing). The rules are
storage/coupons.py's (`check_coupon` on every create and change), as for the REST API, and
so are the roles: marketers and admins. Redeeming a code at the till is redeem.py's page.

Validity is entered as dates in the shop's time zone: 配布開始日 is from the start of that
day, 有効期限 through its end. A change sends only the fields that were changed (as the
API's PATCH), so a time set to the minute through the API is kept unless edited here.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from aiohttp import web

from kizuna.storage import coupons
from kizuna.storage.errors import ServiceError
from kizuna.storage.models import CouponTrigger, DiscountType

from .. import forms
from ..context import CONTEXT, db
from ..render import render
from ..routes import MARKETING, Refused, route, see_other

NOTICES = ("coupon_created", "coupon_saved", "coupon_stopped", "coupon_restarted")
ID = "{coupon_id:[0-9]{1,9}}"
TEXT_FIELDS = ("title", "description", "discount_type", "discount_value", "valid_days", "valid_from", "valid_until",
               "stock", "image_url")
CHECKS = ("one_per_customer", "registration")
BLANK = {"title": "", "description": "", "discount_type": DiscountType.AMOUNT, "discount_value": "", "valid_days": "30",
         "valid_from": "", "valid_until": "", "stock": "", "image_url": "", "one_per_customer": "on", "registration": ""}


def _day(moment: datetime | None, tz, *, end: bool) -> str:
    """A stored moment as the date the form shows (an end is exclusive: the day before it)."""
    if moment is None:
        return ""
    local = moment.astimezone(tz) - (timedelta(microseconds=1) if end else timedelta(0))
    return local.date().isoformat()


def _moment(text: str, tz, *, end: bool) -> datetime | str | None:
    """A date from the form as the moment the service stores: the start of the day, or (for
    the end of validity) the start of the next. Not a date: the text, for the service to refuse."""
    text = text.strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text.replace("/", "-"))
    except ValueError:
        return text
    return datetime.combine(day + timedelta(days=1) if end else day, time(0), tzinfo=tz)


def _form_of(coupon, tz) -> dict[str, str]:
    number = lambda value: "" if value is None else str(value)  # noqa: E731
    return {
        "title": coupon.title, "description": coupon.description or "", "discount_type": coupon.discount_type,
        "discount_value": str(coupon.discount_value), "valid_days": number(coupon.valid_days),
        "valid_from": _day(coupon.valid_from, tz, end=False), "valid_until": _day(coupon.valid_until, tz, end=True),
        "stock": number(coupon.stock), "image_url": coupon.image_url or "",
        "one_per_customer": "on" if coupon.one_per_customer else "", "registration": "on" if coupon.trigger else "",
    }


def _values(form: dict[str, str], tz) -> dict:
    """The coupon as the service takes it; what the form cannot read stays text for it to refuse."""
    return {
        "title": form["title"], "description": form["description"] or None, "discount_type": form["discount_type"],
        "discount_value": forms.whole_number(form["discount_value"]), "valid_days": forms.whole_number(form["valid_days"]),
        "valid_from": _moment(form["valid_from"], tz, end=False), "valid_until": _moment(form["valid_until"], tz, end=True),
        "stock": forms.whole_number(form["stock"]), "image_url": form["image_url"].strip() or None,
        "one_per_customer": forms.checked(form, "one_per_customer"),
        "trigger": CouponTrigger.REGISTRATION if forms.checked(form, "registration") else None,
    }


async def _posted(request: web.Request) -> dict[str, str]:
    return await forms.posted(request, *TEXT_FIELDS, *CHECKS, limit=3000)


async def coupon_list(request: web.Request) -> web.StreamResponse:
    async with db(request) as session:
        rows = await coupons.list_coupons(session, limit=500)
    return render(request, "coupons.html", {"coupons": rows, "notice": forms.notice(request, NOTICES)})


async def _form_page(request: web.Request, *, coupon=None, form: dict, errors=None, status: int = 200) -> web.Response:
    return render(request, "coupon_form.html", {
        "coupon": coupon, "form": form, "errors": errors or {}, "kinds": [str(kind) for kind in DiscountType],
        "notice": forms.notice(request, NOTICES),
    }, status=status)


async def coupon_new(request: web.Request) -> web.StreamResponse:
    return await _form_page(request, form=dict(BLANK))


async def coupon_create(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    form = await _posted(request)
    try:
        async with db(request) as session:
            coupon = await coupons.create_coupon(session, _values(form, ctx.timezone), actor=ctx.actor())
    except ServiceError as error:
        return await _form_page(request, form=form, errors=forms.problems(error, "coupon"), status=400)
    return see_other(_detail_url(request, coupon.id, "coupon_created"))


def _detail_url(request: web.Request, coupon_id: int, notice: str) -> str:
    return str(request.app.router["coupon"].url_for(coupon_id=str(coupon_id)).with_query({"notice": notice}))


async def _coupon(request: web.Request):
    async with db(request) as session:
        coupon = await coupons.get_coupon(session, int(request.match_info["coupon_id"]))
    if coupon is None:
        raise Refused(404, "error.404")
    return coupon


async def coupon_detail(request: web.Request) -> web.StreamResponse:
    coupon = await _coupon(request)
    return await _form_page(request, coupon=coupon, form=_form_of(coupon, request[CONTEXT].timezone))


async def coupon_update(request: web.Request) -> web.StreamResponse:
    ctx = request[CONTEXT]
    coupon = await _coupon(request)
    form = await _posted(request)
    before, after = _values(_form_of(coupon, ctx.timezone), ctx.timezone), _values(form, ctx.timezone)
    changes = {name: value for name, value in after.items() if value != before[name]}
    try:
        async with db(request) as session:
            await coupons.update_coupon(session, coupon.id, changes, actor=ctx.actor())
    except ServiceError as error:
        return await _form_page(request, coupon=coupon, form=form, errors=forms.problems(error, "coupon"), status=400)
    return see_other(_detail_url(request, coupon.id, "coupon_saved"))


async def coupon_active(request: web.Request) -> web.StreamResponse:
    """配布を停止 / 再開: a stopped coupon is not issued any more; codes already given stay usable."""
    ctx = request[CONTEXT]
    coupon = await _coupon(request)
    active = (await forms.posted(request, "active"))["active"] == "true"
    async with db(request) as session:
        await coupons.update_coupon(session, coupon.id, {"active": active}, actor=ctx.actor())
    return see_other(_detail_url(request, coupon.id, "coupon_restarted" if active else "coupon_stopped"))


ROUTES = [
    route("GET", "/coupons", coupon_list, name="coupons", roles=MARKETING),
    route("GET", "/coupons/new", coupon_new, name="coupon_new", roles=MARKETING),
    route("POST", "/coupons", coupon_create, name="coupon_create", roles=MARKETING),
    route("GET", f"/coupons/{ID}", coupon_detail, name="coupon", roles=MARKETING),
    route("POST", f"/coupons/{ID}", coupon_update, name="coupon_update", roles=MARKETING),
    route("POST", f"/coupons/{ID}/active", coupon_active, name="coupon_active", roles=MARKETING),
]
