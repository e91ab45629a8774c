"""The console in a real browser, as a shop's staff use it: Kizuna runs as `make run` runs it
(embedded, the LINE emulator mounted, the demo's first admin), customers follow and write
through the emulator, and Debian's Chromium (through Playwright) logs in as the demo admin,
reads the home page, switches to English, adds a support account whose display name is an
HTML payload (it must stay text: no dialog, no element), enrols two-factor authentication,
logs in again with a code, and looks at the console as the new support account.

Screenshots of every page go to the test's tmp dir (`screenshots/`); with
KIZUNA_CONSOLE_SCREENSHOTS=DIR they are also copied there (docs/screenshots/console/ is made
that way).
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pyotp
import pytest
import sqlalchemy as sa
from aiohttp import web

from kizuna.bot.app import create_app
from kizuna.bot.cli import _demo_admin
from kizuna.bot.keys import SESSIONS
from kizuna.bot.settings import Settings
from kizuna.storage.db import transaction
from kizuna.storage.models import Customer, InboundEvent
from kizuna.storage.types import utcnow
from tests.conftest import SECRET_KEY, TEST_REDIS_URL, eventually

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LAPTOP = {"width": 1366, "height": 860}
TABLET = {"width": 820, "height": 1180}  # iPad Air, portrait
HOSTILE = "<img src=x onerror=alert(1)>"
CUSTOMERS = ["山田 花子", "佐藤 健", "鈴木 美咲", "高橋 翔太", "田中 由美", "<script>alert('name')</script>"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keep_screenshots(shots: Path) -> None:
    """With KIZUNA_CONSOLE_SCREENSHOTS=DIR, copy the test's screenshots there (the committed set)."""
    target = os.environ.get("KIZUNA_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in sorted(shots.glob("*.png")):
            shutil.copyfile(png, Path(target) / png.name)


async def _customers_chat(base: str, sessions) -> None:
    """Friends through the emulator's own API (as a person in its chat page would): follows,
    messages, one block; two registrations are marked in the database."""
    async with aiohttp.ClientSession(base_url=base) as http:
        users = []
        for name in CUSTOMERS:
            async with http.post("/emulator/api/users", json={"display_name": name}) as response:
                assert response.status == 201, await response.text()
                users.append((await response.json())["user_id"])
            async with http.post(f"/emulator/api/users/{users[-1]}/follow") as response:
                assert response.status == 200
        for user, text in ((users[0], "こんにちは、営業時間を教えてください"), (users[2], "送料はいくらですか？"),
                           (users[5], "<b>bold?</b>")):
            async with http.post(f"/emulator/api/users/{user}/text", json={"text": text}) as response:
                assert response.status == 200
        async with http.post(f"/emulator/api/users/{users[3]}/unfollow") as response:
            assert response.status == 200

    async def processed() -> bool:
        async with sessions() as session:
            pending = (await session.execute(sa.select(sa.func.count()).select_from(InboundEvent)
                                             .where(InboundEvent.status == "pending"))).scalar_one()
            customers = (await session.execute(sa.select(sa.func.count()).select_from(Customer))).scalar_one()
            return customers == len(CUSTOMERS) and pending == 0

    await eventually(processed, timeout=20, what="the emulator's customers to be processed")
    async with transaction(sessions) as session:
        await session.execute(sa.update(Customer).where(Customer.display_name.in_(CUSTOMERS[:2]))
                              .values(registered=True, registered_at=utcnow()))


@asynccontextmanager
async def like_make_run(database_url: str, redis_prefix: str) -> AsyncIterator[tuple[str, Settings, web.AppRunner]]:
    """Kizuna as `make run` runs it (the emulator mounted, no LINE credentials), on a free port:
    (its base URL, its settings, its runner)."""
    port = _free_port()
    settings = Settings(_env_file=None, secret_key=SECRET_KEY, database_url=database_url, port=port,
                        redis_url=TEST_REDIS_URL, redis_prefix=redis_prefix, sweep_interval_seconds=0.5)
    assert settings.emulator and not settings.line_connected  # as with `make run`
    runner = web.AppRunner(create_app(settings, run_worker=True))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", settings, runner
    finally:
        await runner.cleanup()


async def fill_login(page, email: str, password: str) -> None:
    """Type the e-mail and password into the login page shown and press ログイン."""
    await page.get_by_label("メールアドレス").fill(email)
    await page.get_by_label("パスワード").fill(password)
    await page.get_by_role("button", name="ログイン", exact=True).click()


@asynccontextmanager
async def admin_page(base: str, sessions, **context_options) -> AsyncIterator[tuple[object, list[str]]]:
    """Chromium logged in to the console at `base` as the demo admin, at laptop size in Japanese:
    (the page, the errors it logs — script errors and console errors — for the test to check)."""
    from playwright.async_api import async_playwright

    email, password = await _demo_admin(sessions)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context(viewport=LAPTOP, locale="ja-JP", **context_options)).new_page()
            page.set_default_timeout(10_000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            await page.goto(f"{base}/console/login")
            await fill_login(page, email, password)
            yield page, errors
        finally:
            await browser.close()


async def full_shot(page, path: Path) -> None:
    """The whole page from its top (a full-page shot of a scrolled page draws the sticky menu
    where the page was scrolled to)."""
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=path, full_page=True)


async def test_a_shop_admin_uses_the_console(database_url, redis_prefix, redis_cleanup, tmp_path):
    from playwright.async_api import async_playwright, expect

    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with like_make_run(database_url, redis_prefix) as (base, _settings, runner):
        sessions = runner.app[SESSIONS]
        email, password = await _demo_admin(sessions)  # what `kizuna demo` prints
        await _customers_chat(base, sessions)

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            dialogs: list[str] = []
            try:
                context = await browser.new_context(viewport=LAPTOP, locale="ja-JP")
                page = await context.new_page()
                page.set_default_timeout(10_000)
                page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

                async def shot(name: str, target=None) -> None:
                    await (target or page).wait_for_load_state("networkidle")
                    await (target or page).screenshot(path=shots / f"{name}.png", full_page=True)

                # -- log in as the demo admin ---------------------------------------------------
                await page.goto(f"{base}/console/")
                await expect(page).to_have_url(f"{base}/console/login")
                await expect(page.get_by_role("heading", name="管理画面にログイン")).to_be_visible()
                await shot("01-login")
                await fill_login(page, email, password)

                # -- the home page: how the shop is doing today --------------------------------
                await expect(page).to_have_url(f"{base}/console/")
                await expect(page.get_by_role("heading", name="今日の状況")).to_be_visible()
                await expect(page.locator("[data-figure=friends] .tile-value")).to_have_text("5")
                await expect(page.locator("[data-figure=blocked] .tile-value")).to_have_text("1")
                await expect(page.locator("[data-figure=registrations] .tile-value")).to_contain_text("2")
                await expect(page.locator("[data-figure=messages] .tile-value")).to_have_text("3")
                await expect(page.get_by_text("<script>alert('name')</script>", exact=True)).to_be_visible()
                await expect(page.get_by_text("二段階認証が未設定です")).to_be_visible()  # demo mode: a warning
                await shot("02-home")

                # -- English -----------------------------------------------------------------------
                await page.locator(".sidebar").get_by_role("button", name="English").click()
                await expect(page.get_by_role("heading", name="Today")).to_be_visible()
                await expect(page.locator("html")).to_have_attribute("lang", "en")
                await shot("03-home-en")

                # -- staff management: add a support account with a hostile display name -------------
                await page.get_by_role("link", name="Staff", exact=True).click()
                await expect(page).to_have_url(f"{base}/console/staff")
                await shot("04-staff-en")
                await page.get_by_label("Display name").fill(HOSTILE)
                await page.get_by_label("E-mail address (login)").fill("support@example.com")
                await page.get_by_label("Support").check()
                await page.get_by_role("button", name="Add", exact=True).click()
                await expect(page.get_by_text("The initial password, shown only now.")).to_be_visible()
                support_password = (await page.locator("#new-password").text_content()).strip()
                await shot("05-staff-created-en")

                await page.get_by_role("link", name="Back to staff").click()
                row = page.locator("tr", has_text="support@example.com")
                await expect(row.get_by_text(HOSTILE, exact=True)).to_be_visible()  # shown as text
                await page.wait_for_load_state("networkidle")
                assert await page.locator("main img").count() == 0  # and not as an element
                assert dialogs == []  # no onerror ran

                # -- back to Japanese; the member's page, the audit log, the account -------------
                await page.locator(".sidebar").get_by_role("button", name="日本語").click()
                await expect(page.get_by_role("heading", name="スタッフ管理", exact=True)).to_be_visible()
                await shot("06-staff")
                await row.get_by_role("link").click()
                await expect(page.get_by_role("heading", name=HOSTILE)).to_be_visible()
                await shot("07-staff-detail")
                # -- an API token for the shop's POS: shown once, then only its first characters ---------
                await page.locator(".sidebar").get_by_role("link", name="APIトークン").click()
                await page.get_by_label("名前（用途）").fill("POSレジ（本店）")
                await page.get_by_label("POS・外部連携").check()
                await page.get_by_role("button", name="発行する").click()
                await expect(page.locator("#new-token")).to_contain_text("kzn_")
                await shot("08-api-token-created")
                await page.locator(".sidebar").get_by_role("link", name="APIトークン").click()
                await expect(page.locator("#new-token")).to_have_count(0)
                await expect(page.get_by_role("cell", name="POSレジ（本店）")).to_be_visible()

                await page.get_by_role("link", name="監査ログ").click()
                await expect(page.locator("td", has_text="スタッフ追加").first).to_be_visible()
                await expect(page.locator("td", has_text="APIトークン発行").first).to_be_visible()
                await shot("08-audit")
                await page.get_by_role("link", name="アカウント", exact=True).click()
                await shot("09-account")

                # -- two-factor authentication: enrol, then log in again with a code ----------------
                await page.get_by_role("link", name="設定する").click()
                await expect(page.locator("svg.qr")).to_be_visible()
                await shot("10-totp-setup")
                secret = (await page.locator("#totp-secret").text_content()).replace(" ", "")
                totp = pyotp.TOTP(secret)
                step = totp.timecode(utcnow())
                await page.get_by_label("確認コード").fill(totp.generate_otp(step))
                await page.get_by_role("button", name="有効にする").click()
                await expect(page.get_by_text("二段階認証を有効にしました。")).to_be_visible()
                await expect(page.get_by_text("二段階認証が未設定です")).to_have_count(0)
                await shot("11-account-totp-on")
                await page.get_by_role("button", name="ログアウト").click()
                await expect(page.get_by_text("ログアウトしました。")).to_be_visible()
                await fill_login(page, email, password)
                await expect(page.get_by_role("heading", name="二段階認証")).to_be_visible()
                await shot("12-login-totp")
                await page.get_by_label("確認コード").fill(totp.generate_otp(step + 1))  # the next code: each is good once
                await page.get_by_role("button", name="確認").click()
                await expect(page.get_by_role("heading", name="今日の状況")).to_be_visible()

                # -- a tablet, same session -------------------------------------------------------
                tablet = await browser.new_context(viewport=TABLET, locale="ja-JP", storage_state=await context.storage_state())
                tablet_page = await tablet.new_page()
                for name, path in (("13-tablet-home", "/console/"), ("14-tablet-staff", "/console/staff")):
                    await tablet_page.goto(base + path)
                    await shot(name, tablet_page)
                assert await tablet_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # nothing overflows
                await tablet.close()

                # -- the new support account: no admin pages -----------------------------------------
                support = await (await browser.new_context(viewport=LAPTOP, locale="ja-JP")).new_page()
                support.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
                await support.goto(f"{base}/console/login")
                await fill_login(support, "support@example.com", support_password)
                await expect(support.get_by_role("heading", name="今日の状況")).to_be_visible()
                await expect(support.locator(".user-name")).to_have_text(HOSTILE)
                await expect(support.get_by_role("link", name="スタッフ管理")).to_have_count(0)
                await shot("15-support-home", support)
                response = await support.goto(f"{base}/console/staff")
                assert response.status == 403
                await expect(support.get_by_text("このページを見る権限がありません。")).to_be_visible()
                await shot("16-forbidden", support)
                assert dialogs == []
            finally:
                await browser.close()
    keep_screenshots(shots)
