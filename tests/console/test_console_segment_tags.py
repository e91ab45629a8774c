"""「このセグメントにタグを付ける / 外す」 on a segment's page, over real HTTP: the form asks how
many it would change (nothing changed yet), the confirmation posts with the CSRF token and comes
back saying what it did; marketers and admins only; and the keyword rule form's 「タグを付ける」."""

from __future__ import annotations

import html
import re

import sqlalchemy as sa

from kizuna.campaigns import segments
from kizuna.storage import tags
from kizuna.storage.db import transaction
from kizuna.storage.models import CustomerTag, KeywordRule
from kizuna.storage.types import utcnow
from tests.console.test_console_segments import shop

MEMBERS = {"field": "registered", "op": "eq", "value": True}  # a, c and d of the shop


async def a_segment(console, name: str = "会員") -> int:
    async with transaction(console.sessions) as session:
        return (await segments.create(session, name, MEMBERS, now=utcnow())).id


async def tagged(console, tag: str) -> set[int]:
    async with console.sessions() as session:
        return set((await session.execute(sa.select(CustomerTag.customer_id).where(CustomerTag.tag == tag))).scalars())


async def test_ask_confirm_and_tag_a_segment(console):
    ids = await shop(console)
    segment_id = await a_segment(console)
    async with transaction(console.sessions) as session:
        await tags.add(session, ids["a@example.com"], "VIP", actor=None)  # has it already
    browser = await console.admin()
    page_url = f"/console/segments/{segment_id}"

    response, page = await browser.get(page_url)
    assert response.status == 200 and "このセグメントにタグを付ける / 外す" in page and "bulk-confirm" not in page

    response, page = await browser.get(f"{page_url}?bulk_tag=ＶＩＰ&bulk_action=add")
    assert response.status == 200
    assert "該当3人のうち2人にタグ「VIP」を付けます" in page and "2人に付ける" in page
    assert await tagged(console, "VIP") == {ids["a@example.com"]}  # asking changes nothing

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response, _ = await browser.post(f"{page_url}/tags", {"bulk_tag": "VIP", "bulk_action": "add"}, csrf="forged")
    assert response.status == 403
    response, _ = await browser.post(f"{page_url}/tags", {"bulk_tag": "VIP", "bulk_action": "add"}, csrf=csrf)
    assert response.status == 303
    response, page = await browser.get(response.headers["Location"])
    assert "2人にタグ「VIP」を付けました。" in page
    assert await tagged(console, "VIP") == {ids["a@example.com"], ids["c@example.com"], ids["d@example.com"]}
    [entry] = await console.audit("tag.bulk_added")
    assert entry.actor == "admin@example.com" and entry.target == f"segment:{segment_id} 会員"
    assert entry.details == {"tag": "VIP", "matched": 3, "changed": 2}

    # asked again: nobody left to tag, so no button to press
    response, page = await browser.get(f"{page_url}?bulk_tag=VIP&bulk_action=add")
    assert "該当3人のうち0人に" in page and "人に付ける</button>" not in page

    # remove
    response, page = await browser.get(f"{page_url}?bulk_tag=VIP&bulk_action=remove")
    assert "該当3人のうち3人からタグ「VIP」を外します。" in page
    response, _ = await browser.post(f"{page_url}/tags", {"bulk_tag": "VIP", "bulk_action": "remove"})
    response, page = await browser.get(response.headers["Location"])
    assert "3人からタグ「VIP」を外しました。" in page and await tagged(console, "VIP") == set()


async def test_a_bad_tag_is_said_and_nothing_changes(console):
    await shop(console)
    segment_id = await a_segment(console, name="<b>会員</b>")
    browser = await console.admin()
    response, page = await browser.get(f"/console/segments/{segment_id}?bulk_tag={'x' * 41}&bulk_action=add")
    assert response.status == 200 and "タグを確認してください" in page and "at most 40 characters" in page
    hostile = "<script>alert(1)</script>"
    response, page = await browser.get(f"/console/segments/{segment_id}?bulk_tag={hostile}&bulk_action=add")
    assert hostile not in page and html.escape(hostile) in page
    response, _ = await browser.post(f"/console/segments/{segment_id}/tags", {"bulk_tag": " ", "bulk_action": "add"})
    assert response.status == 303 and "bulk_done" not in response.headers["Location"]
    response, _ = await browser.post(f"/console/segments/{segment_id}/tags", {"bulk_tag": "VIP", "bulk_action": "toggle"})
    assert response.status == 303 and "bulk_done" not in response.headers["Location"]
    response, _ = await browser.post("/console/segments/999999/tags", {"bulk_tag": "VIP", "bulk_action": "add"})
    assert response.status == 404
    assert await console.audit("tag.bulk_added") == []


async def test_only_marketing_tags_a_segment(console):
    await shop(console)
    segment_id = await a_segment(console)
    marketer = await console.logged_in(await console.add_staff("m@example.com", "marketer"))
    support = await console.logged_in(await console.add_staff("s@example.com", "support"))
    response, _ = await support.post(f"/console/segments/{segment_id}/tags", {"bulk_tag": "VIP", "bulk_action": "add"})
    assert response.status == 403
    assert await tagged(console, "VIP") == set()
    response, _ = await marketer.post(f"/console/segments/{segment_id}/tags", {"bulk_tag": "VIP", "bulk_action": "add"})
    assert response.status == 303 and len(await tagged(console, "VIP")) == 3


async def test_the_keyword_rule_form_takes_a_tag(console):
    browser = await console.admin()
    form = {"name": "", "match_type": "contains", "pattern": "セール情報", "reply": "text", "reply_text": "毎月1日からです。",
            "flow_action": "", "priority": "0", "enabled": "on", "add_tag": "セール関心"}
    response, page = await browser.post("/console/keyword-rules", form)
    assert response.status == 303, page
    async with console.sessions() as session:
        rule = (await session.execute(sa.select(KeywordRule))).scalar_one()
    assert rule.add_tag == "セール関心"
    response, page = await browser.get(f"/console/keyword-rules/{rule.id}")
    assert 'name="add_tag" value="セール関心"' in page and "タグを付ける（任意）" in page

    response, page = await browser.post(f"/console/keyword-rules/{rule.id}", {**form, "add_tag": "x" * 41})
    assert response.status == 400 and "タグを確認してください（40文字まで" in page
    response, _ = await browser.post(f"/console/keyword-rules/{rule.id}", {**form, "add_tag": ""})
    assert response.status == 303
    async with console.sessions() as session:
        assert (await session.get(KeywordRule, rule.id, populate_existing=True)).add_tag is None
