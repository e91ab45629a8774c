"""クーポン and クーポン利用 over real HTTP: coupon definitions (the rules are
storage/coupons.py's), and redeeming a code at the till with every refusal said plainly and
nothing changed; the redemption is on the customer's timeline and in the audit log."""

from __future__ import annotations

import html
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from kizuna.storage import coupons
from kizuna.storage.coupon_codes import generate_code
from kizuna.storage.db import transaction
from kizuna.storage.models import Coupon, CouponGrant, Customer, GrantStatus, Interaction
from kizuna.storage.types import utcnow
from tests.console.helpers import Console

JST = timezone(timedelta(hours=9))
COUPON = {"title": "誕生月 10%OFF", "description": "", "discount_type": "percent", "discount_value": "10", "valid_days": "30",
          "valid_from": "", "valid_until": "", "stock": "", "image_url": "", "one_per_customer": "on"}


async def all_coupons(console: Console) -> list[Coupon]:
    async with console.sessions() as session:
        return list((await session.execute(sa.select(Coupon).order_by(Coupon.id).execution_options(populate_existing=True))).scalars())


async def marketer_browser(console: Console):
    return await console.logged_in(await console.add_staff("marketer@example.com", "marketer"))


async def test_coupons_are_created_listed_changed_and_stopped(console):
    browser = await marketer_browser(console)
    response, page = await browser.get("/console/coupons")
    assert response.status == 200 and "クーポンはまだありません" in page
    assert (await browser.get("/console/coupons/new"))[0].status == 200

    response, _ = await browser.post("/console/coupons", {**COUPON, "valid_until": "2026-12-31", "stock": "1,000",
                                                          "registration": "on"})
    assert response.status == 303
    [coupon] = await all_coupons(console)
    assert response.headers["Location"] == f"/console/coupons/{coupon.id}?notice=coupon_created"
    assert (coupon.discount_type, coupon.discount_value, coupon.stock, coupon.trigger) == ("percent", 10, 1000, "registration")
    assert coupon.valid_until == datetime(2027, 1, 1, tzinfo=JST)  # through the end of 12/31, shop time
    response, page = await browser.get("/console/coupons")
    assert "10%OFF" in page and "2026年12月31日" in page and "会員登録特典" in page
    response, page = await browser.get(f"/console/coupons/{coupon.id}")
    assert response.status == 200 and 'value="2026-12-31"' in page

    response, _ = await browser.post(f"/console/coupons/{coupon.id}", {**COUPON, "title": "誕生月 15%OFF", "discount_value": "15",
                                                                       "valid_until": "2026-12-31", "stock": "1000", "registration": "on"})
    assert response.status == 303
    [coupon] = await all_coupons(console)
    assert (coupon.title, coupon.discount_value, coupon.valid_until) == ("誕生月 15%OFF", 15, datetime(2027, 1, 1, tzinfo=JST))
    assert (await browser.post(f"/console/coupons/{coupon.id}/active", {"active": "false"}))[0].status == 303
    [coupon] = await all_coupons(console)
    assert not coupon.active
    log = [(row.action, row.details) for row in await console.audit() if row.action.startswith("coupon.")]
    assert log == [("coupon.created", {"discount": "10 percent"}), ("coupon.updated", {"changed": "title, discount_value"}),
                   ("coupon.updated", {"changed": "active"})]
    assert (await console.audit("coupon.created"))[0].target == f"coupon:{coupon.id} 誕生月 10%OFF"


async def test_a_change_keeps_what_the_form_did_not_change(console):
    """A validity set to the minute through the API is kept when only the title changes here."""
    async with transaction(console.sessions) as session:
        coupon = await coupons.create_coupon(session, {"title": "夏", "discount_type": "amount", "discount_value": 300,
                                                       "valid_until": datetime(2026, 8, 31, 18, 30, tzinfo=JST)})
    browser = await marketer_browser(console)
    response, page = await browser.get(f"/console/coupons/{coupon.id}")
    assert 'value="2026-08-31"' in page
    form = {**COUPON, "title": "夏のクーポン", "discount_type": "amount", "discount_value": "300", "valid_days": "",
            "valid_until": "2026-08-31", "one_per_customer": "on"}
    assert (await browser.post(f"/console/coupons/{coupon.id}", form))[0].status == 303
    [coupon] = await all_coupons(console)
    assert coupon.title == "夏のクーポン" and coupon.valid_until == datetime(2026, 8, 31, 18, 30, tzinfo=JST)


async def test_coupon_refusals_name_the_field_and_change_nothing(console):
    async with transaction(console.sessions) as session:
        issued = await coupons.create_coupon(session, {"title": "配布済み", "discount_type": "amount", "discount_value": 100,
                                                       "valid_days": 30, "stock": 5, "one_per_customer": False})
        customer = Customer(line_user_id="U" + "1" * 32)
        session.add(customer)
        await session.flush()
        for _ in range(3):
            await coupons.issue(session, coupon_id=issued.id, customer_id=customer.id, now=utcnow())
    browser = await marketer_browser(console)
    before = await all_coupons(console)
    audited = len(await console.audit())
    for change, field in (
        ({"title": ""}, "title"),
        ({"title": "あ" * 41}, "title"),
        ({"discount_value": "150"}, "discount_value"),
        ({"discount_value": "1.5"}, "discount_value"),
        ({"discount_value": "abc"}, "discount_value"),
        ({"discount_type": "yen"}, "discount_type"),
        ({"valid_days": ""}, "valid_days"),
        ({"valid_days": "0"}, "valid_days"),
        ({"valid_from": "2027-01-10", "valid_until": "2027-01-01"}, "valid_until"),
        ({"valid_from": "tomorrow"}, "valid_from"),
        ({"stock": "-1"}, "stock"),
        ({"image_url": "http://example.com/a.png"}, "image_url"),
    ):
        response, page = await browser.post("/console/coupons", {**COUPON, **change})
        assert response.status == 400, change
        assert f'id="error-{field}"' in page, change
    form = {**COUPON, "title": "配布済み", "discount_type": "amount", "discount_value": "100", "stock": "5", "one_per_customer": ""}
    for change, field, message in (({"stock": "2"}, "stock", "3 already issued"),
                                   ({"one_per_customer": "on"}, "one_per_customer", "cannot change once")):
        response, page = await browser.post(f"/console/coupons/{issued.id}", {**form, **change})
        assert response.status == 400 and f'id="error-{field}"' in page and message in page, change
    assert await all_coupons(console) == before
    assert len(await console.audit()) == audited


# -- クーポン利用 ------------------------------------------------------------------------------


async def a_customer_with_a_coupon(console: Console, name: str = "<b>佐藤</b>") -> tuple[int, str]:
    async with transaction(console.sessions) as session:
        coupon = await coupons.create_coupon(session, {"title": "会員登録特典 500円OFF", "discount_type": "amount",
                                                       "discount_value": 500, "valid_days": 30, "one_per_customer": False})
        customer = Customer(line_user_id="U" + "2" * 32, display_name=name, full_name="佐藤 健", registered=True)
        session.add(customer)
        await session.flush()
        result = await coupons.issue(session, coupon_id=coupon.id, customer_id=customer.id, now=utcnow())
    return customer.id, result.grant.code


async def grant(console: Console, code: str) -> CouponGrant:
    async with console.sessions() as session:
        return (await session.execute(sa.select(CouponGrant).where(CouponGrant.code == code)
                                      .execution_options(populate_existing=True))).scalar_one()


async def test_support_redeems_a_code_at_the_till(console):
    customer_id, code = await a_customer_with_a_coupon(console)
    support = await console.add_staff("till@example.com", "support")
    browser = await console.logged_in(support)
    response, page = await browser.get("/console/coupons/redeem")
    assert response.status == 200 and "クーポンコード" in page

    typed = code.lower().replace("-", " ")  # as a clerk may type it
    response, page = await browser.post("/console/coupons/redeem/check", {"code": typed})
    assert response.status == 200 and "このクーポンを利用済みにしますか" in page
    assert "500円OFF" in page and "佐藤 健" in page and html.escape("<b>佐藤</b>") in page and "<b>佐藤</b>" not in page
    assert (await grant(console, code)).status == GrantStatus.ISSUED  # looking changes nothing

    response, _ = await browser.post("/console/coupons/redeem", {"code": code})
    redeemed = await grant(console, code)
    assert response.status == 303 and response.headers["Location"] == f"/console/coupons/redeem?redeemed={redeemed.id}"
    assert redeemed.status == GrantStatus.REDEEMED and redeemed.redeemed_by == f"staff:{support.id}"
    response, page = await browser.get(response.headers["Location"])
    assert "クーポンを利用済みにしました" in page and "佐藤 健 さま" in page
    async with console.sessions() as session:
        kinds = (await session.execute(sa.select(Interaction.kind, Interaction.sender_id)
                                       .where(Interaction.customer_id == customer_id))).all()
    assert ("coupon.redeemed", f"staff:{support.id}") in kinds
    [entry] = await console.audit("coupon.redeemed")
    assert entry.actor == "till@example.com" and entry.details["customer_id"] == customer_id and entry.ip

    # twice: refused, saying when it was used
    for path in ("/console/coupons/redeem/check", "/console/coupons/redeem"):
        response, page = await browser.post(path, {"code": code})
        assert response.status == 400 and 'data-refusal="already_redeemed"' in page and "このクーポンは利用済みです" in page
        assert "利用日時" in page
    assert len(await console.audit("coupon.redeemed")) == 1


async def test_every_refusal_is_said_plainly_and_changes_nothing(console):
    customer_id, code = await a_customer_with_a_coupon(console)
    coupon_id = (await grant(console, code)).coupon_id
    async with transaction(console.sessions) as session:
        expired = (await coupons.issue(session, coupon_id=coupon_id, customer_id=customer_id, now=utcnow())).grant
        revoked = (await coupons.issue(session, coupon_id=coupon_id, customer_id=customer_id, now=utcnow())).grant
        await session.execute(sa.update(CouponGrant).where(CouponGrant.id == expired.id)
                              .values(expires_at=utcnow() - timedelta(minutes=1)))
    async with transaction(console.sessions) as session:
        await coupons.revoke(session, grant_id=revoked.id, by="tests", now=utcnow())
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    admin = await console.add_staff("admin@example.com", "admin", totp=True)
    browser = await console.logged_in(admin)
    for text, refusal, sentence in (
        ("hello", "malformed", "クーポンコードではありません"),
        (typo, "bad_check", "コードに入力間違いがあります"),
        (generate_code("ABC"), "other_shop", "ほかのお店のクーポンです"),
        (generate_code("KZN"), "unknown", "このコードのクーポンはありません"),
        (expired.code, "expired", "有効期限が切れています"),
        (revoked.code, "revoked", "このクーポンは取り消されています"),
    ):
        for path in ("/console/coupons/redeem/check", "/console/coupons/redeem"):
            response, page = await browser.post(path, {"code": text})
            assert response.status == 400, (text, path)
            assert f'data-refusal="{refusal}"' in page and sentence in page, (text, path)
    assert [(await grant(console, item)).status for item in (code, expired.code, revoked.code)] == [
        GrantStatus.ISSUED, GrantStatus.ISSUED, GrantStatus.REVOKED]
    assert await console.audit("coupon.redeemed") == []


def qr_frame(text: str, width: int = 320, height: int = 240) -> bytes:
    """A grey camera frame (one byte a pixel) showing a QR code of `text` on white."""
    import numpy
    import segno

    modules = numpy.array(segno.make(text, error="m", micro=False).matrix, dtype=numpy.uint8)
    symbol = numpy.kron(numpy.where(modules == 1, 0, 255).astype(numpy.uint8), numpy.ones((6, 6), dtype=numpy.uint8))
    frame = numpy.full((height, width), 255, dtype=numpy.uint8)
    top, left = (height - symbol.shape[0]) // 2, (width - symbol.shape[1]) // 2
    frame[top:top + symbol.shape[0], left:left + symbol.shape[1]] = symbol
    return frame.tobytes()


async def test_the_till_reads_a_qr_code_from_a_camera_frame(console):
    _customer_id, code = await a_customer_with_a_coupon(console)
    browser = await console.logged_in(await console.add_staff("till@example.com", "support"))
    response, page = await browser.get("/console/coupons/redeem")
    assert response.headers["Permissions-Policy"].startswith("camera=(self)") and "data-scanner=" in page
    response, _ = await browser.get("/console/faq")
    assert response.headers["Permissions-Policy"].startswith("camera=()")  # no other page may use it
    token = await browser.csrf("/console/coupons/redeem")

    async def scan(body: bytes, query: str = "?w=320&h=240", **headers) -> tuple[int, object]:
        async with browser.client.post(f"{browser.base_url}/console/coupons/redeem/scan{query}", data=body,
                                       headers={"X-CSRF-Token": token, **headers}) as response:
            return response.status, await response.json() if response.status == 200 else None

    assert await scan(qr_frame(code)) == (200, {"code": code})
    assert await scan(bytes(320 * 240)) == (200, {"code": None})  # nothing to read
    assert (await scan(qr_frame(code), "?w=320&h=200"))[0] == 400  # not that size
    assert (await scan(bytes(641 * 480), "?w=641&h=480"))[0] == 400  # too large a frame
    assert (await scan(qr_frame(code), "?w=x&h=1"))[0] == 400
    assert (await scan(qr_frame(code), **{"X-CSRF-Token": "forged"}))[0] == 403
    assert (await grant(console, code)).status == GrantStatus.ISSUED  # reading decides nothing
