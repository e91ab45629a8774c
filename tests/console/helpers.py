"""Helpers for the console tests over real HTTP: a running Kizuna (the `kizuna` fixture's app,
with its console at /console), staff accounts made through the storage services, browsers
played by aiohttp clients with a cookie jar. Timeouts are tested by moving a session's
timestamps in the database, never by sleeping.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pyotp
import sqlalchemy as sa

from kizuna.bot.settings import Settings
from kizuna.storage import audit, staff as staff_store, staff_sessions
from kizuna.storage.db import transaction
from kizuna.storage.models import AuditEntry, Staff, StaffSession
from kizuna.storage.types import utcnow
from tests.conftest import Kizuna, eventually, start_kizuna

PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Member:
    """A staff account made for a test, with what logging in needs."""

    id: int
    email: str
    role: str
    password: str = PASSWORD
    totp_secret: str | None = None
    _last_step: list[int] = field(default_factory=list)

    def code(self) -> str:
        """A TOTP code not used yet (each accepted code's step is spent: the next one is used)."""
        assert self.totp_secret is not None
        totp = pyotp.TOTP(self.totp_secret)
        step = totp.timecode(utcnow())
        if self._last_step and step <= self._last_step[-1]:
            step = self._last_step[-1] + 1
        self._last_step.append(step)
        return totp.generate_otp(step)


class Browser:
    """An aiohttp client that keeps cookies (also for 127.0.0.1) and never follows redirects."""

    def __init__(self, base_url: str, *, ip: str | None = None):
        self.base_url = base_url
        self.headers = {"X-Forwarded-For": ip} if ip else {}
        self.client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.client.close()

    async def get(self, path: str, *, headers: dict | None = None, **kwargs) -> tuple[aiohttp.ClientResponse, str]:
        async with self.client.get(self.base_url + path, allow_redirects=False, headers={**self.headers, **(headers or {})}, **kwargs) as response:
            return response, await response.text(errors="replace")  # (media are bytes)

    async def post(
        self, path: str, data: dict | None = None, *, csrf: bool | str = True, headers: dict | None = None, **kwargs
    ) -> tuple[aiohttp.ClientResponse, str]:
        form = dict(data or {})
        if csrf is True:
            form["csrf_token"] = await self.csrf()
        elif isinstance(csrf, str):
            form["csrf_token"] = csrf
        async with self.client.post(
            self.base_url + path, data=form, allow_redirects=False, headers={**self.headers, **(headers or {})}, **kwargs
        ) as response:
            return response, await response.text()

    async def csrf(self, path: str = "/console/login") -> str:
        """The form token of the page at `path` (the login page before login, else the home page)."""
        if self.session_cookie() and path == "/console/login":
            path = "/console/account"
        response, text = await self.get(path)
        found = CSRF_INPUT.search(text)
        assert found, f"no CSRF token on {path} ({response.status})"
        return found.group(1)

    def session_cookie(self) -> str | None:
        for cookie in self.client.cookie_jar:
            if cookie.key.endswith("kizuna_session"):
                return cookie.value
        return None

    def set_session(self, value: str) -> None:
        self.client.cookie_jar.update_cookies({"kizuna_session": value})

    async def log_in(self, member: Member, *, password: str | None = None) -> aiohttp.ClientResponse:
        response, _ = await self.post("/console/login", {"email": member.email, "password": password or member.password})
        if response.status == 303 and "/console/login/totp" in response.headers["Location"]:
            response, _ = await self.post("/console/login/totp", {"code": member.code()}, csrf=await self.csrf("/console/login/totp"))
        return response


@dataclass
class Console:
    kizuna: Kizuna
    browsers: list[Browser] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.kizuna.url

    @property
    def sessions(self):
        return self.kizuna.sessions

    def browser(self, ip: str | None = None) -> Browser:
        browser = Browser(self.url, ip=ip)
        self.browsers.append(browser)
        return browser

    async def add_staff(
        self, email: str, role: str, *, name: str | None = None, password: str = PASSWORD, totp: bool = False
    ) -> Member:
        new = await staff_store.prepare(email=email, display_name=name or email.split("@")[0], role=role, password=password)
        async with transaction(self.sessions) as session:
            staff = await staff_store.create(session, new, actor=audit.CLI)
            secret = None
            if totp:
                secret = staff_store.begin_totp(staff, self.sealer)
                staff.totp_enabled_at = utcnow()
        return Member(staff.id, staff.email, role, password, secret)

    async def logged_in(self, member: Member, ip: str | None = None) -> Browser:
        """A browser with a session for `member`, started in the database (no login request)."""
        browser = self.browser(ip)
        async with transaction(self.sessions) as session:
            staff = await session.get(Staff, member.id)
            _row, plain = await staff_sessions.start(session, staff, now=utcnow())
        browser.set_session(plain)
        return browser

    async def admin(self) -> Browser:
        """A browser logged in as an admin (with the second factor admins need)."""
        return await self.logged_in(await self.add_staff("admin@example.com", "admin", totp=True))

    async def session_row(self, plain: str) -> StaffSession | None:
        async with self.sessions() as session:
            return await session.get(StaffSession, staff_sessions.hash_id(plain))

    async def execute(self, statement) -> None:
        async with transaction(self.sessions) as session:
            await session.execute(statement)

    async def audit(self, action: str | None = None) -> list[AuditEntry]:
        statement = sa.select(AuditEntry).order_by(AuditEntry.id)
        if action is not None:
            statement = statement.where(AuditEntry.action == action)
        async with self.sessions() as session:
            return list((await session.execute(statement)).scalars())

    async def staff(self, member: Member) -> Staff:
        async with self.sessions() as session:
            return await session.get(Staff, member.id)

    @property
    def sealer(self):
        return staff_store.totp_sealer(self.kizuna.settings.secret_key)

    async def totp_secret(self, member: Member) -> str | None:
        """The account's TOTP secret as its authenticator app has it (the database keeps it sealed)."""
        stored = (await self.staff(member)).totp_secret
        return None if stored is None else self.sealer.open(stored)


async def kizuna_with(settings: Settings, emulator) -> AsyncIterator[Kizuna]:
    """A Kizuna with settings of the test's own (https, no LINE credentials ...)."""
    server, token = await start_kizuna(settings, emulator)
    try:
        yield Kizuna(server=server, emulator=emulator, settings=settings, admin_token=token)
    finally:
        await server.close()



async def stored_customer(kizuna: Kizuna, line_user_id: str) -> int:
    """The customer's id once their first event is processed (a worker may still be at it)."""
    found: list[int] = []

    async def exists() -> bool:
        status, body = await kizuna.api("GET", f"/api/v1/customers?line_user_id={line_user_id}")
        found.extend(item["id"] for item in body.get("items", []))
        return bool(found)

    await eventually(exists, what=f"the customer {line_user_id} to be stored")
    return found[0]
