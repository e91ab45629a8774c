"""Coupons through the REST API, as the console, the EC site and the till's POS use them,
and the public QR image. A running Kizuna over real HTTP, real database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
import sqlalchemy as sa

from kizuna.storage import customers, tokens
from kizuna.storage.coupon_codes import generate_code
from kizuna.storage.db import transaction
from kizuna.storage.models import CouponGrant
from tests.storage.test_coupon_codes import read_png

COUPON = {"title": "初回500円OFF", "discount_type": "amount", "discount_value": 500, "valid_days": 30}


async def token_for(kizuna, role: str, name: str) -> str:
    async with transaction(kizuna.sessions) as session:
        return (await tokens.create(session, name=name, role=role))[1]


async def new_customer(kizuna, line_user_id: str) -> int:
    async with transaction(kizuna.sessions) as session:
        customer, _ = await customers.get_or_create(session, line_user_id, None)
        return customer.id


async def create_coupon(kizuna, **fields) -> dict:
    status, body = await kizuna.api("POST", "/api/v1/coupons", json={**COUPON, **fields})
    assert status == 201, body
    return body


async def grant(kizuna, coupon_id: int, customer_id: int, token: str | None = None) -> tuple[int, dict]:
    return await kizuna.api("POST", f"/api/v1/coupons/{coupon_id}/grants", json={"customer_id": customer_id}, token=token)


async def redeem(kizuna, code: str, token: str | None = None, **extra) -> tuple[int, dict]:
    return await kizuna.api("POST", "/api/v1/coupons/redeem", json={"code": code, **extra}, token=token)


async def coupon_events(kizuna, line_user_id: str) -> list[str]:
    return [row["kind"] for row in await kizuna.timeline(line_user_id) if row["kind"].startswith("coupon.")]


# -- coupons ---------------------------------------------------------------------------------


async def test_create_read_list_and_patch_a_coupon(kizuna):
    created = await create_coupon(kizuna, description="ご来店1回目のお客様限定", stock=100, trigger="registration")
    assert created["issued_count"] == 0 and created["active"] is True and created["one_per_customer"] is True
    assert created["stock"] == 100 and created["trigger"] == "registration"

    status, one = await kizuna.api("GET", f"/api/v1/coupons/{created['id']}")
    assert status == 200 and one == created

    later = await create_coupon(kizuna, title="10%OFF", discount_type="percent", discount_value=10,
                                valid_days=None, valid_until="2026-12-31T23:59:59+09:00")
    assert later["valid_until"].startswith("2026-12-31T14:59:59")  # stored in UTC
    status, page = await kizuna.api("GET", "/api/v1/coupons")
    assert status == 200 and [c["id"] for c in page["items"]] == [later["id"], created["id"]]

    status, patched = await kizuna.api("PATCH", f"/api/v1/coupons/{created['id']}", json={"title": "初回限定 500円OFF", "stock": None})
    assert status == 200, patched
    assert patched["title"] == "初回限定 500円OFF" and patched["stock"] is None
    assert patched["description"] == created["description"] and patched["discount_value"] == 500  # not sent: kept
    status, page = await kizuna.api("GET", "/api/v1/coupons?active=false")
    assert status == 200 and page["items"] == []
    assert (await kizuna.api("GET", "/api/v1/coupons/999999"))[0] == 404


INVALID = [
    ({"title": ""}, "title"),
    ({"title": "あ" * 41}, "title"),
    ({"discount_type": "percent", "discount_value": 150}, "discount_value"),
    ({"discount_value": 0}, "discount_value"),
    ({"discount_type": "yen"}, "discount_type"),
    ({"valid_days": None}, "valid_days"),
    ({"valid_days": None, "valid_until": "2026-12-31T23:59:59"}, "valid_until"),  # no UTC offset
    ({"stock": -1}, "stock"),
    ({"image_url": "http://example.com/coupon.png"}, "image_url"),
    ({"valid_day": 30}, "valid_day"),  # misspelt
]


async def test_invalid_coupons_are_refused_with_the_field_named_and_nothing_saved(kizuna):
    for change, field in INVALID:
        status, body = await kizuna.api("POST", "/api/v1/coupons", json={**COUPON, **change})
        assert status == 400, (change, body)
        assert body["error"]["field"] == field and body["error"]["message"].startswith(field), (change, body)
    assert (await kizuna.api("GET", "/api/v1/coupons"))[1]["items"] == []


async def test_a_patch_that_breaks_a_rule_changes_nothing(kizuna):
    coupon = await create_coupon(kizuna)
    status, body = await kizuna.api("PATCH", f"/api/v1/coupons/{coupon['id']}", json={"discount_type": "percent", "title": "変更"})
    assert status == 400 and body["error"]["field"] == "discount_value"  # 500 %
    assert (await kizuna.api("GET", f"/api/v1/coupons/{coupon['id']}"))[1] == coupon
    status, body = await kizuna.api("PATCH", f"/api/v1/coupons/{coupon['id']}", data=b"{not json")
    assert status == 400 and body["error"]["code"] == "invalid_json"


async def test_roles(kizuna):
    support = await token_for(kizuna, "support", "support")
    pos = await token_for(kizuna, "pos", "till-1")
    marketer = await token_for(kizuna, "marketer", "marketing")
    assert (await kizuna.api("POST", "/api/v1/coupons", json=COUPON, token=support))[0] == 403
    coupon = (await kizuna.api("POST", "/api/v1/coupons", json=COUPON, token=marketer))[1]
    assert (await kizuna.api("GET", "/api/v1/coupons", token=support))[0] == 200
    assert (await kizuna.api("GET", "/api/v1/coupons", token=pos))[0] == 403
    customer_id = await new_customer(kizuna, "U" + "1" * 32)
    assert (await grant(kizuna, coupon["id"], customer_id, token=pos))[0] == 403
    status, issued = await grant(kizuna, coupon["id"], customer_id, token=marketer)
    assert status == 201
    assert (await kizuna.api("POST", f"/api/v1/coupons/grants/{issued['id']}/revoke", token=marketer))[0] == 403
    assert (await redeem(kizuna, issued["code"], token=marketer))[0] == 403
    assert (await redeem(kizuna, issued["code"], token=pos))[0] == 200


def test_openapi_lists_the_coupon_endpoints():
    from kizuna.api import openapi_document

    paths = openapi_document()["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/coupons"])
    assert {"get", "patch"} <= set(paths["/api/v1/coupons/{id}"])
    for path in ("/api/v1/coupons/{id}/grants", "/api/v1/coupons/redeem", "/api/v1/coupons/grants/{id}/revoke"):
        assert "post" in paths[path]
    assert "409" in paths["/api/v1/coupons/redeem"]["post"]["summary"]
    assert "get" in paths["/api/v1/customers/{id}/coupons"]


# -- issuing and redeeming ----------------------------------------------------------------------


async def test_issue_then_redeem_once_at_the_till(kizuna):
    line_user_id = "U" + "a" * 32
    customer_id = await new_customer(kizuna, line_user_id)
    coupon = await create_coupon(kizuna, stock=10)
    pos = await token_for(kizuna, "pos", "渋谷店POS")

    status, issued = await grant(kizuna, coupon["id"], customer_id)
    assert status == 201, issued
    assert issued["code"].startswith("KZN-") and issued["state"] == "issued" and issued["coupon"]["title"] == "初回500円OFF"
    status, again = await grant(kizuna, coupon["id"], customer_id)
    assert status == 200 and again["code"] == issued["code"]  # one per customer
    assert (await kizuna.api("GET", f"/api/v1/coupons/{coupon['id']}"))[1]["issued_count"] == 1

    typed = issued["code"].lower().replace("-", "")  # typed by hand at the till
    status, redeemed = await redeem(kizuna, typed, token=pos, where="shibuya-till-2")
    assert status == 200, redeemed
    assert (redeemed["state"], redeemed["redeemed_by"], redeemed["redeemed_where"]) == ("redeemed", "渋谷店POS", "shibuya-till-2")

    status, body = await redeem(kizuna, issued["code"], token=pos)
    assert status == 409 and body["error"]["code"] == "already_redeemed"
    assert body["error"]["redeemed_at"] == redeemed["redeemed_at"]
    assert await coupon_events(kizuna, line_user_id) == ["coupon.issued", "coupon.redeemed"]

    status, page = await kizuna.api("GET", f"/api/v1/customers/{customer_id}/coupons")
    assert status == 200 and [(g["code"], g["state"]) for g in page["items"]] == [(issued["code"], "redeemed")]
    assert (await kizuna.api("GET", f"/api/v1/customers/{customer_id}/coupons?valid_only=true"))[1]["items"] == []


async def test_issue_refusals_and_unknowns(kizuna):
    first, second = await new_customer(kizuna, "U" + "b" * 32), await new_customer(kizuna, "U" + "c" * 32)
    coupon = await create_coupon(kizuna, stock=1)
    assert (await grant(kizuna, coupon["id"], first))[0] == 201
    status, body = await grant(kizuna, coupon["id"], second)
    assert status == 409 and body["error"]["code"] == "out_of_stock"
    assert (await grant(kizuna, coupon["id"], 999_999))[0] == 404
    assert (await grant(kizuna, 999_999, first))[0] == 404
    status, body = await kizuna.api("POST", f"/api/v1/coupons/{coupon['id']}/grants", json={"customer": first})
    assert status == 400 and body["error"]["field"] == "customer_id"
    paused = await create_coupon(kizuna, active=False)
    assert (await grant(kizuna, paused["id"], first))[1]["error"]["code"] == "inactive"
    ended = await create_coupon(kizuna, valid_days=None, valid_until="2020-01-01T00:00:00+09:00")
    assert (await grant(kizuna, ended["id"], first))[1]["error"]["code"] == "ended"
    assert (await kizuna.api("GET", "/api/v1/customers/999999/coupons"))[0] == 404


async def test_expired_and_revoked_are_gone(kizuna):
    line_user_id = "U" + "d" * 32
    customer_id = await new_customer(kizuna, line_user_id)
    coupon = await create_coupon(kizuna, one_per_customer=False)
    expiring = (await grant(kizuna, coupon["id"], customer_id))[1]
    cancelled = (await grant(kizuna, coupon["id"], customer_id))[1]
    used = (await grant(kizuna, coupon["id"], customer_id))[1]
    # The expiry passes (time moves on for this grant only).
    async with transaction(kizuna.sessions) as session:
        await session.execute(sa.update(CouponGrant).where(CouponGrant.id == expiring["id"])
                              .values(expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)))

    status, body = await redeem(kizuna, expiring["code"])
    assert status == 410 and body["error"]["code"] == "expired" and body["error"]["expires_at"]

    status, revoked = await kizuna.api("POST", f"/api/v1/coupons/grants/{cancelled['id']}/revoke")
    assert status == 200 and revoked["state"] == "revoked" and revoked["revoked_at"]
    assert (await kizuna.api("POST", f"/api/v1/coupons/grants/{cancelled['id']}/revoke"))[0] == 200  # twice is fine
    status, body = await redeem(kizuna, cancelled["code"])
    assert status == 410 and body["error"]["code"] == "revoked"

    assert (await redeem(kizuna, used["code"]))[0] == 200
    status, body = await kizuna.api("POST", f"/api/v1/coupons/grants/{used['id']}/revoke")
    assert status == 409 and body["error"]["code"] == "already_redeemed"
    assert (await kizuna.api("POST", "/api/v1/coupons/grants/999999/revoke"))[0] == 404

    states = {g["id"]: g["state"] for g in (await kizuna.api("GET", f"/api/v1/customers/{customer_id}/coupons"))[1]["items"]}
    assert states == {expiring["id"]: "expired", cancelled["id"]: "revoked", used["id"]: "redeemed"}
    assert (await coupon_events(kizuna, line_user_id)).count("coupon.redeemed") == 1
    assert (await coupon_events(kizuna, line_user_id)).count("coupon.revoked") == 1


async def test_redeem_explains_codes_that_cannot_be_used(kizuna):
    customer_id = await new_customer(kizuna, "U" + "e" * 32)
    coupon = await create_coupon(kizuna)
    code = (await grant(kizuna, coupon["id"], customer_id))[1]["code"]
    typo = code[:5] + ("0" if code[5] != "0" else "1") + code[6:]

    cases = {
        typo: (400, "bad_check"),
        "hello": (400, "malformed"),
        generate_code("ABC"): (422, "other_shop"),
        generate_code("KZN"): (404, "unknown"),
    }
    for text, (expected_status, expected_code) in cases.items():
        status, body = await redeem(kizuna, text)
        assert (status, body["error"]["code"]) == (expected_status, expected_code), text
        assert body["error"]["message"]
    status, body = await redeem(kizuna, "")
    assert status == 400 and body["error"]["field"] == "code"
    assert (await redeem(kizuna, code))[0] == 200  # none of that used it up


# -- the QR image ------------------------------------------------------------------------------


async def test_qr_image_is_public_cached_privately_and_decodes_to_the_code(kizuna):
    zxingcpp = pytest.importorskip("zxingcpp")
    customer_id = await new_customer(kizuna, "U" + "f" * 32)
    coupon = await create_coupon(kizuna)
    code = (await grant(kizuna, coupon["id"], customer_id))[1]["code"]

    async with aiohttp.ClientSession() as client:  # no Authorization header
        async with client.get(f"{kizuna.url}/coupons/{code}/qr.png") as response:
            assert response.status == 200
            assert response.content_type == "image/png"
            assert response.headers["Cache-Control"] == "private, max-age=86400"
            png = await response.read()
        width, height, pixels = read_png(png)
        result = zxingcpp.read_barcode(memoryview(pixels).cast("B", (height, width)))
        assert result is not None and result.text == code

        typo = code[:5] + ("0" if code[5] != "0" else "1") + code[6:]
        refused = []
        for text in (generate_code("KZN"), typo, "not-a-code", generate_code("ABC")):
            async with client.get(f"{kizuna.url}/coupons/{text}/qr.png") as response:
                refused.append((response.status, await response.read()))
    assert {status for status, _ in refused} == {404}
    assert len({body for _, body in refused}) == 1  # nothing tells a near miss from nonsense
