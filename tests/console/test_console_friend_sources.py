"""流入経路 in the console over HTTP: create (names escaped, bad input answered in the form),
the list with the link and counts, the QR code (it reads back as the link), archive, and who may."""

from __future__ import annotations

import re

import zxingcpp

from kizuna.storage import friend_sources
from kizuna.storage.models import FriendSource
from tests.storage.test_coupon_codes import read_png

HOSTILE = "<script>alert('src')</script>"


async def sources(console) -> list[FriendSource]:
    async with console.sessions() as session:
        return [row.source for row in await friend_sources.stats(session)]


async def test_a_marketer_creates_a_source_and_gets_its_link_and_qr_code(console):
    marketer = await console.logged_in(await console.add_staff("m@example.com", "marketer"))
    response, _ = await marketer.post("/console/friend-sources", {"name": HOSTILE, "tag": "ＳＮＳ"}, csrf=await marketer.csrf("/console/friend-sources"))
    assert response.status == 303 and "notice=created" in response.headers["Location"]
    [source] = await sources(console)
    assert source.tag == "SNS" and re.fullmatch(r"[a-z2-9]{10}", source.code)
    response, page = await marketer.get("/console/friend-sources")
    assert response.status == 200
    assert HOSTILE not in page and "&lt;script&gt;alert(&#39;src&#39;)&lt;/script&gt;" in page
    link = f"{console.url}/f/{source.code}"
    assert link in page and "<svg" in page  # the QR code inline

    async with marketer.client.get(f"{console.url}/console/friend-sources/{source.id}/qr.png") as answer:
        assert answer.status == 200 and answer.content_type == "image/png"
        assert "attachment" in answer.headers["Content-Disposition"]
        width, height, pixels = read_png(await answer.read())
    found = zxingcpp.read_barcode(memoryview(pixels).cast("B", (height, width)))  # zxing-cpp reads what segno wrote
    assert found is not None and found.text == link
    async with marketer.client.get(f"{console.url}/console/friend-sources/{source.id}/qr.svg") as answer:
        assert answer.status == 200 and answer.content_type == "image/svg+xml" and b"<svg" in await answer.read()
    async with marketer.client.get(f"{console.url}/console/friend-sources/999/qr.png", allow_redirects=False) as answer:
        assert answer.status == 404

    response, _ = await marketer.post(f"/console/friend-sources/{source.id}/archive", {"archived": "1"},
                                      csrf=await marketer.csrf("/console/friend-sources"))
    assert response.status == 303
    assert (await sources(console))[0].archived
    _, page = await marketer.get("/console/friend-sources")
    assert "アーカイブ済み" in page and "元に戻す" in page


async def test_bad_input_comes_back_in_the_form(console):
    marketer = await console.logged_in(await console.add_staff("m@example.com", "marketer"))
    token = await marketer.csrf("/console/friend-sources")
    for form in ({"name": "   "}, {"name": "x" * 101}, {"name": "ok", "tag": "t" * 41}):
        response, page = await marketer.post("/console/friend-sources", form, csrf=token)
        assert response.status == 400 and "alert-error" in page, form
    assert await sources(console) == []


async def test_support_staff_may_not(console):
    support = await console.logged_in(await console.add_staff("s@example.com", "support"))
    response, _ = await support.get("/console/friend-sources")
    assert response.status == 403
    response, _ = await support.post("/console/friend-sources", {"name": "x"}, csrf=await support.csrf("/console/account"))
    assert response.status == 403
    assert await sources(console) == []
