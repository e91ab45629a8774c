"""Login throttling, per account and per client address, that holds across processes.

Every attempt (a password, or a two-factor code) is stored as `pending` and committed
BEFORE it is checked; then the earlier failures are counted. Two attempts racing each
other therefore always see each other (a pending attempt counts as a failure until it
succeeds), so `max_failures` is exact however many processes answer logins.

With `max_failures` failures within `window` for an e-mail address (counted since its last
success) or from a client address, the next attempt is refused without checking the
password (the console answers 429). Refused attempts are stored as `throttled`, but do not
count: the refusal ends `window` after the failures that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import STAFF_EMAIL_MAX, LoginAttempt

KEEP_FOR = timedelta(days=1)
_COUNTED = ("pending", "failed")


@dataclass(frozen=True)
class Policy:
    max_failures: int
    window: timedelta


@dataclass(frozen=True)
class Verdict:
    throttled: bool
    by_account: bool = False
    by_address: bool = False
    retry_after: timedelta = timedelta(0)


async def record(session: AsyncSession, *, email: str, ip: str, now: datetime) -> int:
    """Store a pending attempt; commit it before calling `check`."""
    attempt = LoginAttempt(email=email[:STAFF_EMAIL_MAX], ip=ip[:45], at=now)
    session.add(attempt)
    await session.flush()
    return attempt.id


async def check(session: AsyncSession, attempt_id: int, *, policy: Policy, now: datetime) -> Verdict:
    """Whether attempt `attempt_id` may go ahead: the failures before it, for its address
    and from its client, are under `policy.max_failures`."""
    attempt = await session.get(LoginAttempt, attempt_id)
    assert attempt is not None
    since = now - policy.window
    last_success = (
        sa.select(sa.func.coalesce(sa.func.max(LoginAttempt.id), 0))
        .where(LoginAttempt.email == attempt.email, LoginAttempt.outcome == "succeeded")
        .scalar_subquery()
    )
    others = sa.and_(LoginAttempt.id != attempt_id, LoginAttempt.outcome.in_(_COUNTED), LoginAttempt.at > since)
    by_account = sa.select(sa.func.count(), sa.func.min(LoginAttempt.at)).where(
        others, LoginAttempt.email == attempt.email, LoginAttempt.id > last_success
    )
    by_address = sa.select(sa.func.count(), sa.func.min(LoginAttempt.at)).where(others, LoginAttempt.ip == attempt.ip)
    account_count, account_first = (await session.execute(by_account)).one()
    address_count, address_first = (await session.execute(by_address)).one()
    over_account = account_count >= policy.max_failures
    over_address = address_count >= policy.max_failures
    if not (over_account or over_address):
        return Verdict(False)
    # When it may lift: the window after the oldest failure counted.
    oldest = min(at for at, over in ((account_first, over_account), (address_first, over_address)) if over)
    return Verdict(True, over_account, over_address, max(oldest + policy.window - now, timedelta(seconds=1)))


async def finish(session: AsyncSession, attempt_id: int, outcome: str) -> None:
    """Set the attempt's outcome: failed, succeeded or throttled."""
    assert outcome in ("failed", "succeeded", "throttled")
    await session.execute(sa.update(LoginAttempt).where(LoginAttempt.id == attempt_id).values(outcome=outcome))


async def prune(session: AsyncSession, *, now: datetime) -> int:
    return (await session.execute(sa.delete(LoginAttempt).where(LoginAttempt.at < now - KEEP_FOR))).rowcount
