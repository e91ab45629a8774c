"""Logging in: the password step, the TOTP step, throttling and the audit trail.

Each step is three short transactions, so no database lock is held while argon2 works:
1. store the attempt as pending and commit (the throttle then sees it, in any process);
2. count the failures before it (429 when over the limit) and read the account;
3. outside any transaction, check the password; then record the outcome, the audit entry
   and the new session together.

A login always starts a new session id: the session the browser had (if any) is ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from kizuna.storage import audit, login_attempts, staff, staff_sessions
from kizuna.storage.db import transaction

from . import config
from .context import Context

log = logging.getLogger("kizuna.console.auth")


@dataclass
class Outcome:
    """What a login step came to: `cookie` (a new session id to set) when it succeeded;
    `throttled` with `retry_after`, or `failed`, when not. `awaiting_totp`: the password
    was right and the code page comes next."""

    cookie: str | None = None
    awaiting_totp: bool = False
    throttled: bool = False
    retry_after: timedelta = timedelta(0)

    @property
    def failed(self) -> bool:
        return self.cookie is None and not self.throttled


def _login_key(email_text: str) -> str:
    """The throttle's key for what was typed: the normalised address, or the text itself."""
    try:
        return staff.normalize_email(email_text)
    except staff.StaffInvalid:
        return (email_text or "").strip().lower()[:254]


async def _begin(sessions, ctx: Context, email: str) -> int:
    async with transaction(sessions) as session:
        return await login_attempts.record(session, email=email, ip=ctx.ip, now=ctx.now)


def _throttled(session, ctx: Context, email: str, verdict: login_attempts.Verdict, target: str | None) -> Outcome:
    by = " and ".join(what for what, over in (("account", verdict.by_account), ("address", verdict.by_address)) if over)
    log.warning("console login throttled (by %s): %r from %s", by, email, ctx.ip)
    audit.record(
        session, audit.Actor(email, None, ctx.ip, ctx.user_agent), audit.Action.LOGIN_THROTTLED,
        target=target, by_account=verdict.by_account, by_address=verdict.by_address,
    )
    return Outcome(throttled=True, retry_after=verdict.retry_after)


async def log_in(sessions, ctx: Context, *, email_text: str, password: str, old_cookie: str | None) -> Outcome:
    email = _login_key(email_text)
    policy = config.throttle_policy(ctx.settings)
    attempt_id = await _begin(sessions, ctx, email)
    async with transaction(sessions) as session:
        account = await staff.get_by_email(session, email)
        verdict = await login_attempts.check(session, attempt_id, policy=policy, now=ctx.now)
        if verdict.throttled:
            await login_attempts.finish(session, attempt_id, "throttled")
            return _throttled(session, ctx, email, verdict, staff.audit_target(account) if account else None)
        staff_id, password_hash = (account.id, account.password_hash) if account else (None, None)

    correct = await staff.verify_password(password_hash, password)
    new_hash = await staff.hash_password(password) if correct and staff.needs_rehash(password_hash) else None

    async with transaction(sessions) as session:
        account = await staff.get(session, staff_id) if staff_id else None
        if not correct or account is None or account.disabled_at is not None:
            reason = "unknown_account" if account is None else "disabled" if account.disabled_at else "wrong_password"
            await login_attempts.finish(session, attempt_id, "failed")
            audit.record(session, audit.Actor(email, None, ctx.ip, ctx.user_agent), audit.Action.LOGIN_FAILED,
                         target=staff.audit_target(account) if account else None, reason=reason)
            log.info("console login failed (%s): %r from %s", reason, email, ctx.ip)
            return Outcome()
        await login_attempts.finish(session, attempt_id, "succeeded")
        await staff_sessions.end_by_id(session, old_cookie, reason="replaced", now=ctx.now)
        if new_hash is not None:
            await staff.rehash(session, account.id, new_hash)
        if staff.totp_enabled(account):
            _row, cookie = await staff_sessions.start(
                session, account, now=ctx.now, awaiting_totp=True, ip=ctx.ip, user_agent=ctx.user_agent
            )
            return Outcome(cookie=cookie, awaiting_totp=True)
        cookie = await _complete(session, ctx, account, second_factor=False)
        return Outcome(cookie=cookie)


async def second_factor(sessions, ctx: Context, *, code: str) -> Outcome:
    """The code step, for a session `awaiting_totp`. A wrong code is a failed login attempt
    (counted by the same throttle as passwords)."""
    assert ctx.staff is not None and ctx.session is not None
    email = ctx.staff.email
    attempt_id = await _begin(sessions, ctx, email)
    async with transaction(sessions) as session:
        verdict = await login_attempts.check(session, attempt_id, policy=config.throttle_policy(ctx.settings), now=ctx.now)
        if verdict.throttled:
            await login_attempts.finish(session, attempt_id, "throttled")
            return _throttled(session, ctx, email, verdict, staff.audit_target(ctx.staff))
        account = await staff.get(session, ctx.staff.id)
        pending = await session.get(type(ctx.session), ctx.session.id_hash)
        if account is None or pending is None or pending.ended_at is not None or account.disabled_at is not None:
            await login_attempts.finish(session, attempt_id, "failed")
            return Outcome()
        if not await staff.use_totp_code(session, account, code, now=ctx.now, sealer=staff.totp_sealer(ctx.settings.secret_key)):
            await login_attempts.finish(session, attempt_id, "failed")
            audit.record(session, audit.Actor(email, None, ctx.ip, ctx.user_agent), audit.Action.LOGIN_FAILED,
                         target=staff.audit_target(account), reason="wrong_code")
            log.info("console login failed (wrong code): %r from %s", email, ctx.ip)
            return Outcome()
        await login_attempts.finish(session, attempt_id, "succeeded")
        staff_sessions.end(pending, reason="second_factor_done", now=ctx.now)
        cookie = await _complete(session, ctx, account, second_factor=True)
        return Outcome(cookie=cookie)


async def _complete(session, ctx: Context, account, *, second_factor: bool) -> str:
    _row, cookie = await staff_sessions.start(session, account, now=ctx.now, ip=ctx.ip, user_agent=ctx.user_agent)
    account.last_login_at = ctx.now
    audit.record(session, audit.Actor(account.email, account.id, ctx.ip, ctx.user_agent), audit.Action.LOGIN,
                 target=staff.audit_target(account), second_factor=second_factor)
    await login_attempts.prune(session, now=ctx.now)
    await staff_sessions.prune(session, now=ctx.now, timeouts=config.timeouts(ctx.settings))
    return cookie


async def log_out(sessions, ctx: Context) -> None:
    assert ctx.session is not None
    async with transaction(sessions) as session:
        row = await session.get(type(ctx.session), ctx.session.id_hash)
        if row is not None:
            staff_sessions.end(row, reason="logout", now=ctx.now)
        if ctx.staff is not None and not ctx.session.awaiting_totp:
            audit.record(session, ctx.actor(), audit.Action.LOGOUT, target=staff.audit_target(ctx.staff))
