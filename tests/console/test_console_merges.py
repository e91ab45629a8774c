"""名寄せ in the console over real HTTP: an EC customer (known from two orders) and a LINE member
who registered with the same e-mail are shown side by side; the admin merges them (the orders
move to the LINE customer), undoes it (they move back), and sets another pair apart. Names are
attacker-controlled text: shown escaped."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from kizuna.bot.cli import _demo_admin
from kizuna.bot.keys import SESSIONS

from kizuna.storage import orders
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, MergeCandidate, Order, OrderCreate
from kizuna.storage.types import utcnow
from tests.console.test_console_browser import CHROMIUM, CHROMIUM_ARGS, LAPTOP, fill_login, keep_screenshots, like_make_run
from tests.storage.test_merges import ec_then_line

HOSTILE = "<img src=x onerror=alert(1)>"


async def owners(console) -> set[int]:
    async with console.sessions() as session:
        return set((await session.execute(sa.select(Order.customer_id))).scalars())


async def test_an_admin_merges_a_pair_undoes_it_and_sets_another_apart(console):
    ec_id, line_id, candidate_id = await ec_then_line(console.sessions)
    browser = await console.admin()

    response, page = await browser.get("/console/merges")
    assert response.status == 200
    assert "メールアドレス「hanako@example.com」が一致しました" in page and "山田 花子" in page and "2件・6,600円" in page
    assert "確認待ち（1件）" in page

    response, _ = await browser.post(f"/console/merges/candidates/{candidate_id}/merge")
    assert response.status == 303 and response.headers["Location"] == "/console/merges?notice=merged"
    assert await owners(console) == {line_id}  # the orders are on the LINE customer's profile now
    response, page = await browser.get("/console/merges?notice=merged")
    assert "2人のお客様を統合しました。" in page and "確認待ち（0件）" in page and "取り消す" in page
    [merged] = await console.audit("customer.merged")
    assert merged.actor == "admin@example.com"

    response, _ = await browser.post(f"/console/merges/candidates/{candidate_id}/merge")  # twice: told, nothing changes
    assert response.headers["Location"] == "/console/merges?error=not_pending"
    [record_id] = [int(value) for value in re.findall(r'data-merge="(\d+)"', page)]
    response, _ = await browser.post(f"/console/merges/{record_id}/undo")
    assert response.headers["Location"] == "/console/merges?notice=undone"
    assert await owners(console) == {ec_id}
    response, _ = await browser.post("/console/merges/999999/undo")
    assert response.status == 404

    response, page = await browser.get("/console/merges")
    assert "確認待ち（1件）" in page  # undone: the pair is to decide again

    # another pair: a record whose customer number is one EC customer's and whose phone is another's;
    # one of them is named like markup. Set apart.
    async with transaction(console.sessions) as session:
        for external_id, references in (("B-1", {"external_customer_id": "ec-9"}), ("B-2", {"phone": "090-1234-5678"}),
                                        ("B-3", {"external_customer_id": "ec-9", "phone": "09012345678"})):
            order = {"external_id": external_id, "ordered_at": "2026-12-02T10:00:00+09:00", "total": 1000, **references}
            await orders.upsert(session, [OrderCreate.model_validate(order)], now=utcnow(), source="test")
        [other] = (await session.execute(sa.select(MergeCandidate).where(MergeCandidate.id != candidate_id))).scalars()
        (await session.get(Customer, other.customer_id)).full_name = HOSTILE
    response, page = await browser.get("/console/merges")
    assert "確認待ち（2件）" in page and "電話番号「+819012345678」が一致しました" in page
    assert HOSTILE not in page and html.escape(HOSTILE) in page
    response, _ = await browser.post(f"/console/merges/candidates/{other.id}/dismiss")
    assert response.headers["Location"] == "/console/merges?notice=dismissed"
    response, page = await browser.get("/console/merges")
    assert "確認待ち（1件）" in page and "+819012345678" not in page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")
async def test_the_merge_page_in_a_browser(database_url, redis_prefix, redis_cleanup, tmp_path):
    """What an admin sees: the pair side by side, merge (asked first), the merge listed for undo."""
    from playwright.async_api import async_playwright, expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        email, password = await _demo_admin(sessions)
        await ec_then_line(sessions)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await (await browser.new_context(viewport=LAPTOP, locale="ja-JP")).new_page()
                page.on("dialog", lambda dialog: dialog.accept())  # the merge asks first
                await page.goto(f"{base}/console/login")
                await fill_login(page, email, password)
                await page.locator(".sidebar").get_by_role("link", name="名寄せ").click()
                await expect(page.get_by_text("メールアドレス「hanako@example.com」が一致しました")).to_be_visible()
                await page.screenshot(path=shots / "52-merges.png", full_page=True)
                await page.get_by_role("button", name="同一人物として統合").click()
                await expect(page.get_by_text("2人のお客様を統合しました。")).to_be_visible()
                await expect(page.get_by_role("button", name="取り消す")).to_be_visible()
                await page.screenshot(path=shots / "53-merged.png", full_page=True)
            finally:
                await browser.close()
    keep_screenshots(shots)
