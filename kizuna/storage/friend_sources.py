"""Friend-add sources (流入経路): which link or QR code a friend came through, per source the
clicks, follows and blocks, and the source's tag on the people it brought.

LINE's follow webhook says nothing about where a friend came from, and LINE's add-friend URL
passes no parameter through. So, as Japanese LINE marketing tools do, a source's link
(`/f/{code}`, bot/friend_links.py) sends the person through LINE Login with the add-friend
option; the login callback tells us WHO (the ID token's `sub`, the LINE user id) came through
WHICH source, and whether they added the friend on the way (`friendship_status_changed`).

The rules, in one place:
- Attribution is per LINE user id and the first source wins: a re-follow through another source
  is recorded as a visit (`FriendSourceVisit`) but never moves the attribution.
- A person is attributed when the login shows they became a friend through it (LINE says the
  friendship changed), or when they were not a friend at the login (they are sent on to the
  add-friend page; the follow that comes later resolves it). A friend of long standing who opens
  a source's link is a visit only: the source did not bring them.
- An attribution is *resolved* when both halves are known - the login and the follow - whichever
  comes second (`record_login` or `resolve_on_follow`): the customer id is set and the source's tag
  added. An unresolved (pending) attribution may be taken over by a later source's login, since
  the first one did not bring the friend.
- The two halves of one person never miss each other: both take the same per-person lock before
  looking for the other half (`_lock_person`: a transaction-scoped advisory lock on PostgreSQL;
  SQLite transactions are serial already, BEGIN IMMEDIATE in storage/db.py), so whichever
  commits second sees the first.
- Follows per source = its resolved attributions; blocks = those whose customer is blocked now;
  friends = follows - blocks. Counted from the rows each time (one GROUP BY), never a counter
  that could drift; clicks are a counter (a click has no row of its own).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, automations, customers, sequences, tags
from .errors import Invalid, NotFound
from .models import FRIEND_SOURCE_NAME_MAX, AutomationTrigger, Customer, FriendSource, FriendSourceAttribution, FriendSourceVisit, SequenceTrigger
from .types import utcnow

# Lower-case letters and digits without look-alikes (no 0/o, 1/l/i): easy to read off a poster.
CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
CODE_LENGTH = 10  # 31^10 ≈ 8e14: not guessable, short enough for a small QR code
# Who adds a source's tag, in the audit log.
SOURCE_ACTOR = audit.Actor("friend source")


class Outcome(StrEnum):
    ATTRIBUTED = "attributed"  # this login attributed the person to the source (resolved or pending)
    KEPT = "kept"  # the person already came through a source: recorded as a visit only
    ALREADY_FRIEND = "already_friend"  # a friend before this login: a visit only


@dataclass(frozen=True)
class SourceStats:
    source: FriendSource
    follows: int
    blocks: int

    @property
    def friends(self) -> int:
        return self.follows - self.blocks


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_name(text: str) -> str:
    """The name as typed, trimmed (as segment names): any text of 1 to 100 characters. It is only
    ever shown escaped (the console's templates, the chart's JSON drawn on a canvas)."""
    name = (text or "").strip()
    if not name or len(name) > FRIEND_SOURCE_NAME_MAX:
        raise Invalid("name", f"must be text of 1 to {FRIEND_SOURCE_NAME_MAX} characters")
    return name


async def create(session: AsyncSession, name: str, tag: str | None, *, actor: audit.Actor) -> FriendSource:
    """A new source with a fresh random code; `tag` (optional) is normalised as tags are."""
    source = FriendSource(code=new_code(), name=normalize_name(name), tag=tags.normalize(tag) if tag and tag.strip() else None,
                          created_at=utcnow())
    session.add(source)
    await session.flush()
    audit.record(session, actor, audit.Action.FRIEND_SOURCE_CREATED, target=f"friend_source:{source.id}",
                 name=source.name, tag=source.tag)
    return source


async def get(session: AsyncSession, source_id: int) -> FriendSource:
    source = await session.get(FriendSource, source_id)
    if source is None:
        raise NotFound("no such friend source")
    return source


async def by_code(session: AsyncSession, code: str) -> FriendSource | None:
    return (await session.execute(sa.select(FriendSource).where(FriendSource.code == code))).scalar_one_or_none()


async def set_archived(session: AsyncSession, source_id: int, archived: bool, *, actor: audit.Actor) -> FriendSource:
    """Archive (or restore) a source: hidden from the chart and listed apart. Its link keeps
    working - printed QR codes outlive a campaign - and keeps counting."""
    source = await get(session, source_id)
    if source.archived != archived:
        source.archived = archived
        action = audit.Action.FRIEND_SOURCE_ARCHIVED if archived else audit.Action.FRIEND_SOURCE_RESTORED
        audit.record(session, actor, action, target=f"friend_source:{source.id}", name=source.name)
    return source


async def record_click(session: AsyncSession, code: str) -> FriendSource | None:
    """Count an open of the source's link (one UPDATE: concurrent clicks never lose a count);
    None for an unknown code."""
    source = await by_code(session, code)
    if source is None:
        return None
    await session.execute(sa.update(FriendSource).where(FriendSource.id == source.id).values(clicks=FriendSource.clicks + 1))
    return source


async def stats(session: AsyncSession, *, include_archived: bool = True) -> list[SourceStats]:
    """Every source with its follows and blocks, newest first: one query."""
    attributions, people = FriendSourceAttribution.__table__, Customer.__table__
    follows = sa.func.count(attributions.c.line_user_id)
    blocks = sa.func.count(people.c.id).filter(people.c.blocked.is_(True))
    joined = (
        sa.select(FriendSource, follows, blocks)
        .select_from(FriendSource.__table__
                     .outerjoin(attributions, sa.and_(attributions.c.source_id == FriendSource.id, attributions.c.resolved_at.is_not(None)))
                     .outerjoin(people, people.c.id == attributions.c.customer_id))
        .group_by(FriendSource.id)
        .order_by(FriendSource.id.desc())
    )
    if not include_archived:
        joined = joined.where(FriendSource.archived.is_(False))
    return [SourceStats(source, int(f), int(b)) for source, f, b in (await session.execute(joined)).all()]


async def of_customer(session: AsyncSession, customer_id: int) -> FriendSource | None:
    """The source a customer came through (resolved), if any."""
    statement = (sa.select(FriendSource).join(FriendSourceAttribution, FriendSourceAttribution.source_id == FriendSource.id)
                 .where(FriendSourceAttribution.customer_id == customer_id, FriendSourceAttribution.resolved_at.is_not(None)))
    return (await session.execute(statement)).scalar_one_or_none()


async def record_login(
    session: AsyncSession, source: FriendSource, line_user_id: str, *, friendship_changed: bool, is_friend: bool, now: datetime,
) -> Outcome:
    """What a verified LINE Login through `source` means (the module's rules): a visit always;
    an attribution when the person became a friend through it or is not a friend yet; resolved
    at once when their follow is already known."""
    visit = FriendSourceVisit(source_id=source.id, line_user_id=line_user_id, friendship_changed=friendship_changed, created_at=now)
    session.add(visit)
    await session.flush()
    await _lock_person(session, line_user_id)
    existing = await session.get(FriendSourceAttribution, line_user_id, with_for_update=True)
    if existing is not None and existing.resolved_at is not None:
        return Outcome.KEPT
    if is_friend and not friendship_changed and existing is None:
        return Outcome.ALREADY_FRIEND
    if existing is None:
        existing = FriendSourceAttribution(line_user_id=line_user_id, source_id=source.id, attributed_at=now)
        try:
            async with session.begin_nested():  # two logins of one person at once: one row, the first
                session.add(existing)
                await session.flush()
        except sa.exc.IntegrityError:
            return Outcome.KEPT
    else:  # pending: the earlier source did not bring the friend, this one may
        existing.source_id, existing.attributed_at = source.id, now
    visit.attributed = True
    customer = await customers.get_by_line_user_id(session, line_user_id)
    if customer is not None and customer.followed and (friendship_changed or is_friend):
        await _resolve(session, existing, source, customer, now)
    return Outcome.ATTRIBUTED


async def resolve_on_follow(session: AsyncSession, customer: Customer, now: datetime) -> FriendSource | None:
    """The follow webhook's half: a pending attribution of this LINE user is resolved now (the
    customer gets the source and its tag). The source, or None when there was nothing pending."""
    if not customer.line_user_id:
        return None
    await _lock_person(session, customer.line_user_id)
    pending = await session.get(FriendSourceAttribution, customer.line_user_id, with_for_update=True)
    if pending is None or pending.resolved_at is not None:
        return None
    source = await get(session, pending.source_id)
    await _resolve(session, pending, source, customer, now)
    return source


async def _lock_person(session: AsyncSession, line_user_id: str) -> None:
    """Hold the person's lock until the transaction ends (PostgreSQL). The callback and the
    follow each take it before reading the other's half, and a statement after the lock sees
    what the other committed (READ COMMITTED), so the second of the two always resolves."""
    if session.bind.dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"friend-source:{line_user_id}".encode()).digest()[:8], "big", signed=True)
    await session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def _resolve(session: AsyncSession, attribution: FriendSourceAttribution, source: FriendSource, customer: Customer,
                   now: datetime) -> None:
    if customer.id is None:
        await session.flush()
    attribution.customer_id, attribution.resolved_at = customer.id, now
    await sequences.enrol(session, SequenceTrigger.FRIEND_SOURCE, customer_ids=[customer.id], value=source.code, now=now)
    await automations.record(session, AutomationTrigger.FRIEND_SOURCE, [customer.id], value=source.code, now=now)
    if source.tag:
        try:
            await tags.add(session, customer.id, source.tag, actor=SOURCE_ACTOR)
        except Invalid:
            pass  # the customer is at the tag limit: attributed all the same
