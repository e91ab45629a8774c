"""Console sessions, stored in the database so any `serve` process can check them.

The browser holds an opaque id (32 random bytes, base64url); the table holds its SHA-256
only. A session ends when its owner logs out, after `idle` without a request, `absolute`
after login whatever happens, when an admin ends it or disables the account, or when the
password changes. `last_seen_at` is written at most once a minute, so the idle timeout
may end a session up to a minute early, never late. Ended rows are kept a while (who was logged in from where), then pruned.

A session created after a correct password for an account with two-factor authentication
`awaiting_totp`: it opens only the code page, for `AWAITING_TOTP_FOR`; the code's success
ends it and starts a full session under a new id.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Staff, StaffSession

AWAITING_TOTP_FOR = timedelta(minutes=5)
# last_seen_at is written at most this often (not on every request).
TOUCH_EVERY = timedelta(seconds=60)
KEEP_ENDED_FOR = timedelta(days=30)


@dataclass(frozen=True)
class Timeouts:
    idle: timedelta
    absolute: timedelta


def hash_id(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


async def start(
    session: AsyncSession, staff: Staff, *, now: datetime, awaiting_totp: bool = False,
    ip: str | None = None, user_agent: str | None = None,
) -> tuple[StaffSession, str]:
    """A new session for `staff`; the plain id (for the cookie) is returned only now."""
    plain = secrets.token_urlsafe(32)
    row = StaffSession(
        id_hash=hash_id(plain), staff_id=staff.id, csrf_token=secrets.token_urlsafe(32), awaiting_totp=awaiting_totp,
        created_at=now, last_seen_at=now, ip=ip[:45] if ip else None, user_agent=user_agent[:200] if user_agent else None,
    )
    session.add(row)
    await session.flush()
    return row, plain


def expiry_reason(row: StaffSession, *, timeouts: Timeouts, now: datetime) -> str | None:
    """Why `row` is no longer good at `now` ("idle_timeout", "expired"), or None."""
    if row.awaiting_totp and now - row.created_at >= AWAITING_TOTP_FOR:
        return "expired"
    if now - row.created_at >= timeouts.absolute:
        return "expired"
    if now - row.last_seen_at >= timeouts.idle:
        return "idle_timeout"
    return None


async def resolve(
    session: AsyncSession, plain: str, *, timeouts: Timeouts, now: datetime, touch: bool = True
) -> tuple[StaffSession, Staff] | None:
    """The live session with this id and its staff member, or None (unknown, ended, timed
    out, or the account is disabled). A session found timed out is ended here. `touch=False`
    for requests a page makes by itself (live updates): they are no sign that anyone is there,
    so they never keep a session from its idle timeout."""
    if not plain or len(plain) > 100:
        return None
    row = await session.get(StaffSession, hash_id(plain))
    if row is None or row.ended_at is not None:
        return None
    reason = expiry_reason(row, timeouts=timeouts, now=now)
    if reason is not None:
        row.ended_at, row.ended_reason = now, reason
        return None
    staff = await session.get(Staff, row.staff_id)
    if staff is None or staff.disabled_at is not None:
        return None
    if touch and now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return row, staff


async def still_live(session: AsyncSession, id_hash: str, *, timeouts: Timeouts, now: datetime) -> Staff | None:
    """The staff member of a session that is still good (read only: a long-lived request
    checks on its session now and then), else None."""
    row = await session.get(StaffSession, id_hash, populate_existing=True)
    if row is None or row.ended_at is not None or expiry_reason(row, timeouts=timeouts, now=now) is not None:
        return None
    staff = await session.get(Staff, row.staff_id, populate_existing=True)
    return staff if staff is not None and staff.disabled_at is None else None


def end(row: StaffSession, *, reason: str, now: datetime) -> None:
    if row.ended_at is None:
        row.ended_at, row.ended_reason = now, reason


async def end_by_id(session: AsyncSession, plain: str | None, *, reason: str, now: datetime) -> bool:
    """End the session with this plain id, if it is live (a login replacing the browser's old session)."""
    if not plain or len(plain) > 100:
        return False
    row = await session.get(StaffSession, hash_id(plain))
    if row is None or row.ended_at is not None:
        return False
    end(row, reason=reason, now=now)
    return True


async def end_all(
    session: AsyncSession, staff_id: int, *, reason: str, now: datetime, except_id_hash: str | None = None
) -> int:
    """End every live session of a staff member (but `except_id_hash`); how many were live."""
    statement = (
        sa.update(StaffSession)
        .where(StaffSession.staff_id == staff_id, StaffSession.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason)
        .execution_options(synchronize_session="fetch")
    )
    if except_id_hash is not None:
        statement = statement.where(StaffSession.id_hash != except_id_hash)
    return (await session.execute(statement)).rowcount


def _live(timeouts: Timeouts, now: datetime):
    return sa.and_(
        StaffSession.ended_at.is_(None),
        StaffSession.awaiting_totp.is_(False),
        StaffSession.created_at > now - timeouts.absolute,
        StaffSession.last_seen_at > now - timeouts.idle,
    )


async def live_counts(session: AsyncSession, *, timeouts: Timeouts, now: datetime) -> dict[int, int]:
    """Live sessions per staff id."""
    statement = (
        sa.select(StaffSession.staff_id, sa.func.count())
        .where(_live(timeouts, now))
        .group_by(StaffSession.staff_id)
    )
    return {staff_id: number for staff_id, number in (await session.execute(statement)).all()}


async def live_of(session: AsyncSession, staff_id: int, *, timeouts: Timeouts, now: datetime) -> list[StaffSession]:
    statement = (
        sa.select(StaffSession).where(StaffSession.staff_id == staff_id, _live(timeouts, now))
        .order_by(StaffSession.last_seen_at.desc())
    )
    return list((await session.execute(statement)).scalars())


async def prune(session: AsyncSession, *, now: datetime, timeouts: Timeouts) -> int:
    """Delete sessions that ended (or could only have) more than KEEP_ENDED_FOR ago."""
    cutoff = now - KEEP_ENDED_FOR
    statement = sa.delete(StaffSession).where(
        sa.or_(StaffSession.ended_at < cutoff, StaffSession.created_at < cutoff - timeouts.absolute)
    )
    return (await session.execute(statement)).rowcount
