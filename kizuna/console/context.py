"""Who is asking: the request's console context (session, staff member, language, CSRF
token), loaded once per request by the route guard (`routes.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.appkeys import SERVICES
from kizuna.flows.services import Services
from kizuna.storage import audit, staff_sessions
from kizuna.storage.coupons import get_shop, zone
from kizuna.storage.db import transaction
from kizuna.storage.models import Staff, StaffSession
from kizuna.storage.roles import Role
from kizuna.storage.types import utcnow

from . import config, i18n, security
from .config import ConsoleSettings


@dataclass(frozen=True)
class Parent:
    """The parent app's keys for what the console uses (its settings and database sessions):
    the console is given the keys, so it needs nothing from the package that defines them."""

    settings: web.AppKey
    sessions: web.AppKey


PARENT = web.AppKey("console_parent", Parent)


@dataclass
class Context:
    settings: ConsoleSettings
    now: datetime
    ip: str
    user_agent: str | None
    locale: str
    timezone: tzinfo
    staff: Staff | None = None
    session: StaffSession | None = None
    # The cookie the browser sent held a session that is no longer good (ended, timed out).
    stale_session: bool = False
    # Before login: the CSRF cookie's nonce, and whether the response must set it.
    csrf_nonce: str | None = None
    set_csrf_cookie: bool = False

    @property
    def logged_in(self) -> bool:
        return self.staff is not None and self.session is not None and not self.session.awaiting_totp

    @property
    def awaiting_totp(self) -> bool:
        return self.staff is not None and self.session is not None and self.session.awaiting_totp

    @property
    def role(self) -> Role | None:
        return Role(self.staff.role) if self.logged_in else None

    @property
    def csrf_token(self) -> str:
        if self.session is not None:
            return self.session.csrf_token
        assert self.csrf_nonce is not None
        return security.anonymous_token(self.settings.secret_key, self.csrf_nonce)

    @property
    def demo(self) -> bool:
        return not self.settings.line_connected

    @property
    def admin_without_totp(self) -> bool:
        return self.logged_in and self.staff.role == Role.ADMIN and self.staff.totp_enabled_at is None

    @property
    def must_enrol_totp(self) -> bool:
        """An admin without a second factor, with a real LINE channel: only the enrolment
        pages are open to them. In demo mode (the emulator) they get a warning instead."""
        return self.admin_without_totp and self.settings.line_connected

    def actor(self) -> audit.Actor:
        assert self.staff is not None
        return audit.Actor(self.staff.email, self.staff.id, self.ip, self.user_agent)

    def t(self, key: str, **values: object) -> str:
        return i18n.translate(self.locale, key, **values)


CONTEXT = web.RequestKey("console_context", Context)


def settings_of(request: web.Request) -> ConsoleSettings:
    return request.config_dict[request.config_dict[PARENT].settings]


def sessions_of(request: web.Request) -> async_sessionmaker[AsyncSession]:
    return request.config_dict[request.config_dict[PARENT].sessions]


def services_of(request: web.Request) -> Services:
    """The process's services (the same object the REST API and the bot use)."""
    return request.config_dict[SERVICES]


def db(request: web.Request):
    """A database transaction for a view: committed when the block ends, rolled back on error."""
    return transaction(sessions_of(request))


async def load(request: web.Request, *, touch: bool = True) -> Context:
    """`touch=False`: a request the page made by itself (`staff_sessions.resolve`)."""
    settings = settings_of(request)
    https = settings.https
    now = utcnow()
    ctx = Context(
        settings=settings, now=now, ip=security.client_ip(request, trust_forwarded_for=settings.trust_forwarded_for),
        user_agent=security.user_agent(request), locale=i18n.DEFAULT_LOCALE, timezone=zone("Asia/Tokyo"),
    )
    plain = security.read_cookie(request, security.SESSION_COOKIE, https=https)
    async with db(request) as session:
        ctx.timezone = zone((await get_shop(session)).timezone)
        if plain:
            found = await staff_sessions.resolve(session, plain, timeouts=config.timeouts(settings), now=now, touch=touch)
            if found is None:
                ctx.stale_session = True
            else:
                ctx.session, ctx.staff = found
    cookie_locale = security.read_cookie(request, security.LANG_COOKIE, https=https)
    ctx.locale = i18n.pick_locale(ctx.staff.locale if ctx.logged_in else None, cookie_locale)
    if ctx.session is None:
        ctx.csrf_nonce = security.read_cookie(request, security.CSRF_COOKIE, https=https)
        if not ctx.csrf_nonce or len(ctx.csrf_nonce) > 100:
            ctx.csrf_nonce = security.new_nonce()
            ctx.set_csrf_cookie = True
    return ctx
