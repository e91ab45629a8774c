"""Console login and sessions over real HTTP: passwords, throttling, session ids, timeouts,
ending sessions, CSRF, security headers and cookies, TOTP, the audit trail."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from kizuna.storage.models import AuditEntry, LoginAttempt, Staff, StaffSession
from kizuna.storage.types import utcnow
from tests.conftest import make_settings

from tests.console.helpers import CSRF_INPUT, PASSWORD, Console, Member, kizuna_with


async def test_login_home_and_logout(console):
    member = await console.add_staff("hanako@example.com", "support", name="山田 花子")
    browser = console.browser()

    response, _ = await browser.get("/console/")
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    response, page = await browser.get("/console/login")
    assert response.status == 200 and 'name="csrf_token"' in page and "<html lang=\"ja\">" in page

    response = await browser.log_in(member)
    assert response.status == 303 and response.headers["Location"] == "/console/"
    cookie = browser.session_cookie()
    response, page = await browser.get("/console/")
    assert response.status == 200 and "山田 花子" in page and "今日の状況" in page

    response, _ = await browser.post("/console/logout", csrf=await browser.csrf("/console/"))
    assert response.status == 303 and response.headers["Location"] == "/console/login?notice=logged_out"
    response, _ = await browser.get("/console/")
    assert response.status == 303
    assert (await console.session_row(cookie)).ended_reason == "logout"
    # the old cookie opens nothing any more
    stale = console.browser()
    stale.set_session(cookie)
    response, _ = await stale.get("/console/")
    assert response.status == 303 and response.headers["Location"].startswith("/console/login")
    actions = [entry.action for entry in await console.audit()]
    assert actions[-2:] == ["login", "logout"]


async def test_the_console_root_and_unknown_pages(console):
    browser = console.browser()
    response, _ = await browser.get("/console")
    assert response.status == 303 and response.headers["Location"] == "/console/"
    response, page = await browser.get("/console/no/such/page")
    assert response.status == 404 and "ページが見つかりません" in page
    # its language switch works (the page set the CSRF cookie its form needs)
    token = CSRF_INPUT.search(page).group(1)
    response, _ = await browser.post("/console/language", {"locale": "en", "next": "/console/login"}, csrf=token)
    assert response.status == 303
    async with browser.client.delete(console.url + "/console/") as response:
        assert response.status == 405 and response.headers["Allow"] == "GET"


async def test_wrong_password_unknown_account_and_disabled_account_are_refused_alike(console):
    member = await console.add_staff("taro@example.com", "marketer")
    browser = console.browser()
    for email, password in (("taro@example.com", "wrong password 123"), ("nobody@example.com", PASSWORD)):
        response, page = await browser.post("/console/login", {"email": email, "password": password})
        assert response.status == 401
        assert "メールアドレスまたはパスワードが正しくありません" in page
        assert browser.session_cookie() is None
    await console.execute(sa.update(Staff).where(Staff.id == member.id).values(disabled_at=utcnow()))
    response, _ = await browser.post("/console/login", {"email": member.email, "password": PASSWORD})
    assert response.status == 401
    failed = await console.audit("login.failed")
    assert [(entry.actor, entry.details["reason"]) for entry in failed] == [
        ("taro@example.com", "wrong_password"), ("nobody@example.com", "unknown_account"), ("taro@example.com", "disabled"),
    ]
    assert all(entry.ip == "127.0.0.1" for entry in failed)


async def test_the_sixth_failure_for_one_account_is_throttled_from_any_address(console):
    member = await console.add_staff("target@example.com", "support")
    for number in range(5):
        response, _ = await console.browser(ip=f"10.0.0.{number + 1}").post(
            "/console/login", {"email": "Target@Example.com", "password": f"guess number {number}"}
        )
        assert response.status == 401
    # the right password, from yet another address: still refused, without checking it
    browser = console.browser(ip="10.0.0.99")
    response, page = await browser.post("/console/login", {"email": member.email, "password": PASSWORD})
    assert response.status == 429
    assert 0 < int(response.headers["Retry-After"]) <= 300
    assert "一時的にログインを制限しています" in page and browser.session_cookie() is None
    [entry] = await console.audit("login.throttled")
    assert entry.details == {"by_account": True, "by_address": False} and entry.ip == "10.0.0.99"
    # another account is not affected
    other = await console.add_staff("other@example.com", "support")
    assert (await console.browser(ip="10.0.0.99").log_in(other)).status == 303
    # the window passes (the attempts are moved back in time): the account may log in again
    await console.execute(sa.update(LoginAttempt).values(at=utcnow() - timedelta(seconds=301)))
    assert (await browser.log_in(member)).status == 303


async def test_the_sixth_failure_from_one_address_is_throttled_for_any_account(console):
    member = await console.add_staff("real@example.com", "support")
    attacker = console.browser(ip="192.0.2.7")
    for number in range(5):
        response, _ = await attacker.post("/console/login", {"email": f"guess{number}@example.com", "password": "password guess"})
        assert response.status == 401
    response, _ = await attacker.post("/console/login", {"email": member.email, "password": PASSWORD})
    assert response.status == 429
    [entry] = await console.audit("login.throttled")
    assert entry.details == {"by_account": False, "by_address": True}
    # the same account from another address logs in
    assert (await console.browser(ip="192.0.2.8").log_in(member)).status == 303


async def test_a_success_starts_the_account_count_again(console):
    member = await console.add_staff("clumsy@example.com", "support")
    for round_ in range(2):
        for number in range(4):
            response, _ = await console.browser(ip=f"10.1.{round_}.{number}").post(
                "/console/login", {"email": member.email, "password": "not the password"}
            )
            assert response.status == 401
        assert (await console.browser(ip=f"10.2.{round_}.1").log_in(member)).status == 303


async def test_login_gives_a_new_session_id_and_ends_the_old_one(console):
    member = await console.add_staff("rotate@example.com", "support")
    browser = console.browser()
    await browser.log_in(member)
    first = browser.session_cookie()
    await browser.log_in(member)  # again, in the same browser (it sends the first cookie)
    second = browser.session_cookie()
    assert first and second and first != second
    assert (await console.session_row(first)).ended_reason == "replaced"
    assert (await console.session_row(second)).ended_at is None
    stale = console.browser()
    stale.set_session(first)
    assert (await stale.get("/console/"))[0].status == 303
    # the cookie holds the id, the table only its hash
    async with console.sessions() as session:
        stored = (await session.execute(sa.select(StaffSession.id_hash))).scalars().all()
    assert second not in stored and len(stored[0]) == 64


async def test_idle_timeout(console):
    member = await console.add_staff("idle@example.com", "support")
    browser = await console.logged_in(member)
    cookie = browser.session_cookie()
    idle = console.kizuna.settings.session_idle_timeout_seconds
    assert idle == 1800
    await console.execute(sa.update(StaffSession).values(last_seen_at=utcnow() - timedelta(seconds=idle - 90)))
    assert (await browser.get("/console/"))[0].status == 200  # under the idle timeout: still good (and touched)
    assert utcnow() - (await console.session_row(cookie)).last_seen_at < timedelta(seconds=30)
    await console.execute(sa.update(StaffSession).values(last_seen_at=utcnow() - timedelta(seconds=idle + 1)))
    response, _ = await browser.get("/console/staff")
    assert response.status == 303 and response.headers["Location"] == "/console/login?next=/console/staff&notice=expired"
    assert (await console.session_row(cookie)).ended_reason == "idle_timeout"
    response, page = await browser.get(response.headers["Location"])
    assert "一定時間操作がなかったため" in page


async def test_absolute_timeout(console):
    member = await console.add_staff("long@example.com", "support")
    browser = await console.logged_in(member)
    cookie = browser.session_cookie()
    absolute = console.kizuna.settings.session_max_age_seconds
    assert absolute == 12 * 3600
    # busy all day: last seen just now, but logged in longer ago than the absolute timeout
    await console.execute(sa.update(StaffSession).values(created_at=utcnow() - timedelta(seconds=absolute + 1)))
    assert (await browser.get("/console/"))[0].status == 303
    assert (await console.session_row(cookie)).ended_reason == "expired"


async def test_an_admin_ends_a_staff_members_sessions(console):
    admin = await console.add_staff("boss@example.com", "admin", totp=True)
    member = await console.add_staff("worker@example.com", "support")
    laptop, tablet = console.browser(), console.browser()
    await laptop.log_in(member)
    await tablet.log_in(member)
    assert (await laptop.get("/console/"))[0].status == 200
    boss = console.browser()
    await boss.log_in(admin)
    response, page = await boss.get(f"/console/staff/{member.id}")
    assert response.status == 200 and page.count("127.0.0.1") >= 2
    response, _ = await boss.post(f"/console/staff/{member.id}/sessions/end", csrf=await boss.csrf("/console/"))
    assert response.status == 303 and response.headers["Location"] == f"/console/staff/{member.id}?notice=sessions_ended"
    for browser in (laptop, tablet):
        assert (await browser.get("/console/"))[0].status == 303
    [entry] = await console.audit("staff.sessions_ended")
    assert entry.actor == admin.email and entry.details == {"sessions_ended": 2}
    assert (await boss.get("/console/"))[0].status == 200  # the admin's own session goes on


async def test_a_disabled_account_is_logged_out_and_cannot_log_in(console):
    admin = await console.add_staff("boss@example.com", "admin", totp=True)
    member = await console.add_staff("leaver@example.com", "marketer")
    browser = console.browser()
    await browser.log_in(member)
    boss = await console.logged_in(admin)
    response, _ = await boss.post(f"/console/staff/{member.id}/disable", csrf=await boss.csrf("/console/"))
    assert response.status == 303
    assert (await browser.get("/console/"))[0].status == 303
    assert (await console.browser().log_in(member)).status == 401
    response, page = await boss.get(f"/console/staff/{member.id}")
    assert "無効" in page
    # an admin cannot disable themself, nor demote the last admin
    response, _ = await boss.post(f"/console/staff/{admin.id}/disable", csrf=await boss.csrf("/console/"))
    assert response.headers["Location"].endswith("error=cannot_disable_self")
    response, _ = await boss.post(f"/console/staff/{admin.id}/role", {"role": "support"}, csrf=await boss.csrf("/console/"))
    assert response.headers["Location"].endswith("error=last_admin")
    assert (await console.staff(admin)).role == "admin"


async def test_forms_without_the_sessions_csrf_token_are_refused(console):
    member = await console.add_staff("csrf@example.com", "support")
    other = await console.add_staff("other@example.com", "support")
    browser = await console.logged_in(member)
    foreign = await (await console.logged_in(other)).csrf("/console/")
    for token in (None, "", "x" * 43, foreign):
        data = {"locale": "en"}
        if token is not None:
            data["csrf_token"] = token
        response, page = await browser.post("/console/language", data, csrf=False)
        assert response.status == 403, token
        assert "フォームの有効期限が切れました" in page
    assert (await console.staff(member)).locale == "ja"
    response, _ = await browser.post("/console/logout", csrf=False)
    assert response.status == 403
    # the token as a header (for scripts) is accepted
    response, _ = await browser.post("/console/language", {"locale": "en"}, csrf=False,
                                     headers={"X-CSRF-Token": await browser.csrf("/console/")})
    assert response.status == 303 and (await console.staff(member)).locale == "en"
    # before login: the login form's token is bound to this browser's CSRF cookie
    stranger = console.browser()
    response, _ = await stranger.post("/console/login", {"email": member.email, "password": PASSWORD}, csrf=False)
    assert response.status == 403
    someone_elses = await console.browser().csrf()
    response, _ = await stranger.post("/console/login", {"email": member.email, "password": PASSWORD}, csrf=someone_elses)
    assert response.status == 403 and stranger.session_cookie() is None


EXPECTED_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


async def test_security_headers_on_every_kind_of_console_response(console):
    member = await console.add_staff("headers@example.com", "marketer")
    anonymous = console.browser()
    browser = await console.logged_in(member)
    responses = {
        "login page": (await anonymous.get("/console/login"))[0],
        "redirect": (await anonymous.get("/console/"))[0],
        "home": (await browser.get("/console/"))[0],
        "403": (await browser.get("/console/staff"))[0],
        "404": (await browser.get("/console/no-such-page"))[0],
        "static": (await anonymous.get("/console/static/console.css"))[0],
        "failed login": (await anonymous.post("/console/login", {"email": "a@example.com", "password": "x"}))[0],
    }
    assert {name: response.status for name, response in responses.items()} == {
        "login page": 200, "redirect": 303, "home": 200, "403": 403, "404": 404, "static": 200, "failed login": 401,
    }
    for name, response in responses.items():
        for header, value in EXPECTED_HEADERS.items():
            assert response.headers.get(header) == value, (name, header)
        assert response.headers["Cache-Control"] == ("no-cache" if name == "static" else "no-store"), name
        assert "Strict-Transport-Security" not in response.headers
    # no inline script or style in the pages: the CSP would block them
    _, page = await browser.get("/console/")
    assert "<script>" not in page and "style=" not in page and "<style" not in page


async def test_cookies_are_httponly_and_samesite_lax_and_not_secure_over_http(console):
    member = await console.add_staff("cookie@example.com", "support")
    browser = console.browser()
    response, _ = await browser.get("/console/login")
    csrf_cookie = response.headers["Set-Cookie"]
    assert csrf_cookie.startswith("kizuna_csrf=") and "HttpOnly" in csrf_cookie and "SameSite=Lax" in csrf_cookie
    assert "Secure" not in csrf_cookie
    response, _ = await browser.post("/console/login", {"email": member.email, "password": PASSWORD})
    [session_cookie] = response.headers.getall("Set-Cookie")
    assert session_cookie.startswith("kizuna_session=")
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Path=/" in session_cookie
    assert "Secure" not in session_cookie and "Max-Age" not in session_cookie and "expires" not in session_cookie.lower()


async def test_https_public_url_gives_host_prefixed_secure_cookies(database_url, emulator, redis_prefix, redis_cleanup):
    settings = make_settings(database_url, emulator.base_url, redis_prefix=redis_prefix, public_url="https://shop.example.jp")
    async for kizuna in kizuna_with(settings, emulator):
        console = Console(kizuna)
        member = await console.add_staff("tls@example.com", "support")
        browser = console.browser()
        try:
            response, page = await browser.get("/console/login")
            assert response.headers["Set-Cookie"].startswith("__Host-kizuna_csrf=")
            assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
            nonce = response.cookies["__Host-kizuna_csrf"].value
            token = CSRF_INPUT.search(page).group(1)
            # the jar keeps Secure cookies away from http://: send the CSRF cookie by hand
            async with browser.client.post(
                kizuna.url + "/console/login", data={"email": member.email, "password": PASSWORD, "csrf_token": token},
                headers={"Cookie": f"__Host-kizuna_csrf={nonce}"}, allow_redirects=False,
            ) as response:
                assert response.status == 303
                cookie = response.headers["Set-Cookie"]
            assert cookie.startswith("__Host-kizuna_session=")
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
            assert "Domain" not in cookie
        finally:
            await browser.close()


async def test_totp_enrolment_then_login_with_a_code(console):
    member = await console.add_staff("twofactor@example.com", "support")
    browser = console.browser()
    await browser.log_in(member)
    response, page = await browser.get("/console/account/totp")
    assert response.status == 200 and "<svg" in page and 'class="qr"' in page
    secret = await console.totp_secret(member)
    assert " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)) in page
    member.totp_secret = secret

    token = await browser.csrf("/console/account/totp")
    response, page = await browser.post("/console/account/totp", {"code": "000000"}, csrf=token)
    assert response.status == 400 and "コードが正しくありません" in page
    assert (await console.staff(member)).totp_enabled_at is None
    response, _ = await browser.post("/console/account/totp", {"code": member.code()}, csrf=token)
    assert response.status == 303 and response.headers["Location"] == "/console/account?notice=totp_enabled"
    assert (await console.staff(member)).totp_enabled_at is not None
    assert [entry.actor for entry in await console.audit("account.totp_enabled")] == [member.email]

    # a new login: the password opens only the code page
    fresh = console.browser()
    response, _ = await fresh.post("/console/login", {"email": member.email, "password": PASSWORD})
    assert response.status == 303 and response.headers["Location"].startswith("/console/login/totp")
    pending = fresh.session_cookie()
    assert (await fresh.get("/console/"))[0].headers["Location"] == "/console/login/totp"
    token = await fresh.csrf("/console/login/totp")
    response, page = await fresh.post("/console/login/totp", {"code": "123456"}, csrf=token)
    assert response.status == 401 and "コードが正しくないか" in page
    used = member.code()
    response, _ = await fresh.post("/console/login/totp", {"code": f"{used[:3]} {used[3:]}"}, csrf=token)  # as typed, with a space
    assert response.status == 303 and response.headers["Location"] == "/console/"
    assert fresh.session_cookie() != pending  # a new id once the second factor is done
    assert (await console.session_row(pending)).ended_reason == "second_factor_done"
    assert (await fresh.get("/console/"))[0].status == 200
    [login] = [entry for entry in await console.audit("login") if entry.details.get("second_factor")]
    assert login.actor == member.email

    # a code is good once: the same one is refused at the next login
    again = console.browser()
    await again.post("/console/login", {"email": member.email, "password": PASSWORD})
    response, _ = await again.post("/console/login/totp", {"code": used}, csrf=await again.csrf("/console/login/totp"))
    assert response.status == 401
    # wrong codes count towards the throttle like wrong passwords
    for _ in range(3):
        await again.post("/console/login/totp", {"code": "999999"}, csrf=await again.csrf("/console/login/totp"))
    response, _ = await again.post("/console/login/totp", {"code": member.code()}, csrf=await again.csrf("/console/login/totp"))
    assert response.status == 429


async def test_an_admin_without_a_second_factor_must_enrol_when_line_is_connected(console):
    admin = await console.add_staff("newadmin@example.com", "admin")
    assert console.kizuna.settings.line_connected
    browser = console.browser()
    assert (await browser.log_in(admin)).status == 303
    for path in ("/console/", "/console/staff", "/console/audit"):
        response, _ = await browser.get(path)
        assert response.status == 303 and response.headers["Location"] == "/console/account/totp", path
    response, page = await browser.get("/console/account/totp")
    assert response.status == 200 and "管理者アカウントは二段階認証の設定が必要です" in page
    assert 'href="/console/staff"' not in page  # the menu offers nothing they cannot open
    admin.totp_secret = await console.totp_secret(admin)
    response, _ = await browser.post("/console/account/totp", {"code": admin.code()}, csrf=await browser.csrf("/console/account"))
    assert response.status == 303
    assert (await browser.get("/console/staff"))[0].status == 200
    # and an admin cannot switch it off again
    response, _ = await browser.post("/console/account/totp/disable", csrf=await browser.csrf("/console/account"))
    assert response.headers["Location"] == "/console/account?error=admin_totp_required"
    assert (await console.staff(admin)).totp_enabled_at is not None


async def test_in_demo_mode_an_admin_without_a_second_factor_is_warned(database_url, emulator, redis_prefix, redis_cleanup):
    settings = make_settings(database_url, emulator.base_url, redis_prefix=redis_prefix,
                             line_channel_secret=None, line_channel_access_token=None)
    assert not settings.line_connected
    async for kizuna in kizuna_with(settings, emulator):
        console = Console(kizuna)
        admin = await console.add_staff("demo@example.com", "admin")
        browser = console.browser()
        try:
            await browser.log_in(admin)
            response, page = await browser.get("/console/staff")
            assert response.status == 200
            assert "二段階認証が未設定です" in page and "デモモード" in page
        finally:
            await browser.close()


async def test_audit_entries_are_written_with_the_action_and_cannot_be_changed(console):
    admin = await console.add_staff("auditor@example.com", "admin", totp=True)
    boss = console.browser(ip="203.0.113.9")
    await boss.log_in(admin)
    response, page = await boss.post("/console/staff", {"display_name": "新人", "email": "new@example.com", "role": "support"},
                                     csrf=await boss.csrf("/console/"))
    assert response.status == 200 and "new@example.com" in page
    [created] = [entry for entry in await console.audit("staff.created") if entry.actor == admin.email]
    new_id = int(created.target.split()[0].removeprefix("staff:"))
    response, _ = await boss.post(f"/console/staff/{new_id}/role", {"role": "marketer"}, csrf=await boss.csrf("/console/"))
    assert response.status == 303
    [changed] = await console.audit("staff.role_changed")
    assert changed.actor == admin.email and changed.actor_staff_id == admin.id
    assert changed.details == {"old": "support", "new": "marketer"} and changed.ip == "203.0.113.9"
    assert changed.user_agent and changed.at <= utcnow()
    response, page = await boss.get("/console/audit")
    assert response.status == 200 and "役割の変更" in page and "203.0.113.9" in page
    response, page = await boss.get("/console/audit?action=staff.role_changed")
    assert "役割の変更" in page and "スタッフ追加</span>" not in page

    # append-only in the database itself
    for statement in (sa.update(AuditEntry).values(actor="someone else"), sa.delete(AuditEntry)):
        with pytest.raises(Exception, match="append-only"):
            await console.execute(statement)
    assert len(await console.audit()) >= 3

    # a refused change writes nothing: the entry is in the action's transaction
    before = len(await console.audit())
    response, _ = await boss.post(f"/console/staff/{admin.id}/role", {"role": "support"}, csrf=await boss.csrf("/console/"))
    assert response.headers["Location"].endswith("error=last_admin")
    assert len(await console.audit()) == before


async def test_everything_shown_is_escaped(console):
    hostile = "<img src=x onerror=alert(1)>"
    admin = await console.add_staff("escape@example.com", "admin", totp=True)
    await console.add_staff("evil@example.com", "support", name=hostile)
    async with console.sessions() as session, session.begin():
        from kizuna.storage.models import Customer

        session.add(Customer(line_user_id="U" + "e" * 32, display_name="<script>alert('x')</script>", followed=True,
                             followed_at=utcnow()))
    await console.browser().post("/console/login", {"email": '"><svg onload=alert(1)>@x.jp', "password": "x"})
    browser = await console.logged_in(admin)
    pages = {path: (await browser.get(path))[1] for path in ("/console/", "/console/staff", "/console/audit")}
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in pages["/console/"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages["/console/staff"]
    assert "&#34;&gt;&lt;svg onload=alert(1)&gt;@x.jp" in pages["/console/audit"]
    for page in pages.values():
        assert "<img src=x" not in page and "<script>alert" not in page and "<svg onload" not in page


async def test_change_password(console):
    member = await console.add_staff("changer@example.com", "support")
    browser, other_device = console.browser(), console.browser()
    await browser.log_in(member)
    await other_device.log_in(member)
    new = "a much longer new passphrase"
    cases = [
        ({"current": "wrong password!!", "new": new, "again": new}, "現在のパスワードが正しくありません"),
        ({"current": PASSWORD, "new": new, "again": new + "x"}, "確認用のパスワードが一致しません"),
        ({"current": PASSWORD, "new": "short", "again": "short"}, "12文字以上"),
    ]
    for data, message in cases:
        response, page = await browser.post("/console/account/password", data, csrf=await browser.csrf("/console/account"))
        assert response.status == 400 and message in page
    response, _ = await browser.post("/console/account/password", {"current": PASSWORD, "new": new, "again": new},
                                     csrf=await browser.csrf("/console/account"))
    assert response.status == 303 and response.headers["Location"] == "/console/account?notice=password_changed"
    assert (await browser.get("/console/"))[0].status == 200  # this session stays
    assert (await other_device.get("/console/"))[0].status == 303  # the others end
    assert (await console.browser().log_in(member)).status == 401
    assert (await console.browser().log_in(member, password=new)).status == 303
    [entry] = await console.audit("account.password_changed")
    assert entry.details == {"sessions_ended": 1}


async def test_an_admin_adds_staff_and_resets_a_password(console):
    admin = await console.add_staff("owner@example.com", "admin", totp=True)
    boss = await console.logged_in(admin)
    token = await boss.csrf("/console/")
    response, page = await boss.post("/console/staff", {"display_name": "佐藤", "email": "Sato@Example.com", "role": "support"}, csrf=token)
    assert response.status == 200 and "この画面を閉じると二度と表示されません" in page
    password = page.split('id="new-password" class="secret">')[1].split("<")[0]
    assert len(password) == 19
    async with console.sessions() as session:
        sato = (await session.execute(sa.select(Staff).where(Staff.email == "sato@example.com"))).scalar_one()
    member = Member(sato.id, sato.email, "support", password)
    assert (await console.browser().log_in(member)).status == 303
    for data, message in (
        ({"display_name": "佐藤", "email": "sato@example.com", "role": "support"}, "すでに登録されています"),
        ({"display_name": "x", "email": "not-an-address", "role": "support"}, "メールアドレスの形式が正しくありません"),
        ({"display_name": "x", "email": "pos@example.com", "role": "pos"}, "役割を選んでください"),
        ({"display_name": "", "email": "blank@example.com", "role": "support"}, "表示名を入力してください"),
    ):
        response, page = await boss.post("/console/staff", data, csrf=token)
        assert response.status == 400 and message in page, data
    response, page = await boss.post(f"/console/staff/{member.id}/password", csrf=token)
    assert response.status == 200
    new_password = page.split('id="new-password" class="secret">')[1].split("<")[0]
    assert (await console.browser().log_in(member)).status == 401
    member.password = new_password
    assert (await console.browser().log_in(member)).status == 303
    assert [entry.action for entry in await console.audit() if entry.actor == admin.email][-1] == "staff.password_reset"


async def test_language_switch_is_kept_per_staff_member_and_in_a_cookie(console):
    member = await console.add_staff("lang@example.com", "support")
    anonymous = console.browser()
    response, _ = await anonymous.post("/console/language", {"locale": "en", "next": "/console/login"})
    assert response.status == 303 and response.headers["Location"] == "/console/login"
    _, page = await anonymous.get("/console/login")
    assert '<html lang="en">' in page and "Log in to the console" in page
    browser = await console.logged_in(member)
    _, page = await browser.get("/console/")
    assert '<html lang="ja">' in page  # the account's language (ja) counts once logged in
    response, _ = await browser.post("/console/language", {"locale": "en", "next": "/console/account"}, csrf=await browser.csrf("/console/"))
    assert response.headers["Location"] == "/console/account"
    assert (await console.staff(member)).locale == "en"
    _, page = await (await console.logged_in(member)).get("/console/")  # another device: English too
    assert '<html lang="en">' in page and "Friends" in page and "Today" in page


async def test_after_login_only_console_paths_are_followed(console):
    member = await console.add_staff("next@example.com", "support")
    for target, expected in (("/console/account", "/console/account"), ("https://evil.example/", "/console/"),
                             ("//evil.example/console/", "/console/"), ("/emulator/", "/console/")):
        browser = console.browser()
        response, _ = await browser.post("/console/login", {"email": member.email, "password": PASSWORD, "next": target})
        assert response.headers["Location"] == expected, target


def test_client_address_ignores_x_forwarded_for_unless_trusted():
    from aiohttp.test_utils import make_mocked_request

    from kizuna.console.security import client_ip

    request = make_mocked_request("GET", "/console/", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.5"})
    assert client_ip(request, trust_forwarded_for=True) == "203.0.113.5"
    assert client_ip(request, trust_forwarded_for=False) != "203.0.113.5"
    spoofed = make_mocked_request("GET", "/console/", headers={"X-Forwarded-For": "not an address"})
    assert client_ip(spoofed, trust_forwarded_for=True) != "not an address"


def test_every_text_has_japanese_and_english():
    from kizuna.console.i18n import MESSAGES
    from kizuna.storage.audit import Action

    assert all(ja and en for ja, en in MESSAGES.values())
    assert all(f"action.{action}" in MESSAGES for action in Action)
    assert all(f"role.{role}" in MESSAGES for role in ("admin", "marketer", "support"))


def test_totp_codes_from_other_apps_are_read_as_typed():
    from kizuna.storage.staff import _matching_step

    secret = pyotp.random_base32()
    now = utcnow()
    code = pyotp.TOTP(secret).at(now)
    full_width = code.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    for typed in (code, f" {code[:3]} {code[3:]} ", full_width):
        assert _matching_step(secret, typed, now) is not None, typed
    assert _matching_step(secret, "12345", now) is None
    assert _matching_step(secret, pyotp.TOTP(secret).at(now - timedelta(minutes=5)), now) is None

