"""Customer tags (タグ): free-text labels on a customer, at most once each.

Put on by staff (the console, the REST API), by the bot (a keyword rule's `add_tag`, a flow's
`ctx.tag`), and in bulk for every customer of a segment. Adding and removing by a person are
customer edits: each is audited (`customer.edited`) in the caller's transaction; the bot names
no actor and records what it did on the customer's timeline instead (flows/engine.py). A bulk
change is one set-based statement, audited once with its count (`tag.bulk_added` /
`tag.bulk_removed`); it writes no timeline row per customer (see `add_to_all`). A tag is
normalised before it is stored (NFKC, spaces squeezed), so 「ＶＩＰ」 and 「VIP」 are one tag.

The registration flow does not tag 「会員登録済み」: membership is the customer's `registered`
(a segment field of its own); a tag copying it could be removed by staff while the customer
stays a member, and two answers to "is this a member?" would drift apart.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, automations, customers, sequences
from .db import insert_on_conflict
from .errors import Invalid
from .models import TAG_MAX, AutomationTrigger, CustomerTag
from .types import utcnow

MAX_TAGS_PER_CUSTOMER = 50


class TooManyTags(Invalid):
    """The customer has MAX_TAGS_PER_CUSTOMER tags already (a 400 naming `tag`)."""

    def __init__(self) -> None:
        super().__init__("tag", f"a customer has at most {MAX_TAGS_PER_CUSTOMER} tags")


def normalize(text: str) -> str:
    """The tag as stored; Invalid when it is empty, too long or holds control characters."""
    tag = " ".join(unicodedata.normalize("NFKC", text or "").split())
    if not tag:
        raise Invalid("tag", "write a tag first")
    if len(tag) > TAG_MAX:
        raise Invalid("tag", f"a tag has at most {TAG_MAX} characters")
    if any(unicodedata.category(char).startswith("C") for char in tag):
        raise Invalid("tag", "a tag cannot hold control characters")
    return tag


async def of_customer(session: AsyncSession, customer_id: int) -> list[str]:
    statement = sa.select(CustomerTag.tag).where(CustomerTag.customer_id == customer_id).order_by(CustomerTag.created_at, CustomerTag.tag)
    return list((await session.execute(statement)).scalars())


async def of_customers(session: AsyncSession, customer_ids: list[int]) -> dict[int, list[str]]:
    """Tags of several customers at once (a list page)."""
    if not customer_ids:
        return {}
    statement = sa.select(CustomerTag.customer_id, CustomerTag.tag).where(CustomerTag.customer_id.in_(customer_ids)).order_by(CustomerTag.created_at)
    found: dict[int, list[str]] = {}
    for customer_id, tag in (await session.execute(statement)).all():
        found.setdefault(customer_id, []).append(tag)
    return found


async def known(session: AsyncSession, *, limit: int = 200) -> list[str]:
    """The tags in use, most used first (suggestions while typing)."""
    statement = (
        sa.select(CustomerTag.tag).group_by(CustomerTag.tag)
        .order_by(sa.func.count().desc(), CustomerTag.tag).limit(limit)
    )
    return list((await session.execute(statement)).scalars())


async def in_use(session: AsyncSession, *, limit: int = 1000) -> list[tuple[str, int]]:
    """(tag, customers who have it), most used first: the tags in use."""
    count = sa.func.count().label("customers")
    statement = sa.select(CustomerTag.tag, count).group_by(CustomerTag.tag).order_by(count.desc(), CustomerTag.tag).limit(limit)
    return [(tag, customers_with) for tag, customers_with in (await session.execute(statement)).all()]


async def add(session: AsyncSession, customer_id: int, text: str, *, actor: audit.Actor | None) -> bool:
    """Tag the customer; False when they had the tag already (nothing is recorded then).
    `actor` None: the bot tags (no audit entry; the caller records it on the timeline)."""
    tag = normalize(text)
    customer = await customers.get_existing(session, customer_id)
    if await session.get(CustomerTag, (customer_id, tag)) is not None:
        return False
    count = (await session.execute(sa.select(sa.func.count()).where(CustomerTag.customer_id == customer_id))).scalar_one()
    if count >= MAX_TAGS_PER_CUSTOMER:
        raise TooManyTags()
    try:
        async with session.begin_nested():  # two staff adding the same tag at once: one row
            session.add(CustomerTag(customer_id=customer_id, tag=tag, created_at=utcnow()))
            await session.flush()
    except sa.exc.IntegrityError:
        return False
    audit.record_by(session, actor, audit.Action.CUSTOMER_EDITED, target=customers.audit_target(customer), tag_added=tag)
    await sequences.on_tag_added(session, [customer_id], tag, now=utcnow())
    await automations.record(session, AutomationTrigger.TAG_ADDED, [customer_id], value=tag, now=utcnow())
    return True


async def remove(session: AsyncSession, customer_id: int, text: str, *, actor: audit.Actor | None) -> bool:
    """Untag the customer; False when they did not have the tag."""
    tag = normalize(text)
    customer = await customers.get_existing(session, customer_id)
    deleted = (await session.execute(
        sa.delete(CustomerTag).where(CustomerTag.customer_id == customer_id, CustomerTag.tag == tag)
    )).rowcount
    if not deleted:
        return False
    audit.record_by(session, actor, audit.Action.CUSTOMER_EDITED, target=customers.audit_target(customer), tag_removed=tag)
    await sequences.on_tag_removed(session, [customer_id], tag, now=utcnow())
    await automations.record(session, AutomationTrigger.TAG_REMOVED, [customer_id], value=tag, now=utcnow())
    return True


# -- in bulk: every customer of a set (a segment's compiled select of customer ids) -------------

ADD, REMOVE = "add", "remove"
BULK_ACTIONS = (ADD, REMOVE)


@dataclass(frozen=True)
class Bulk:
    """A bulk change, or what it would do: the customers in the set (`matched`) and those it
    changes (`changed`: tagged, or untagged). On adding, the customers left out are those who
    had the tag already and those at MAX_TAGS_PER_CUSTOMER."""

    tag: str
    action: str
    matched: int
    changed: int


def _check_action(action: str) -> None:
    if action not in BULK_ACTIONS:
        raise Invalid("action", f"must be {' or '.join(BULK_ACTIONS)}")


def _full() -> sa.Select:
    """The customers who have as many tags as a customer may have (one GROUP BY, not a
    subquery per customer; a short list, so NOT IN over it is a small hashed set)."""
    return (sa.select(CustomerTag.customer_id).group_by(CustomerTag.customer_id)
            .having(sa.func.count() >= MAX_TAGS_PER_CUSTOMER))


async def _count(session: AsyncSession, statement: sa.Select) -> int:
    return (await session.execute(sa.select(sa.func.count()).select_from(statement.subquery()))).scalar_one()


async def bulk_preview(session: AsyncSession, customer_ids: sa.Select, text: str, action: str) -> Bulk:
    """What `bulk_change` would do now (the console's confirmation), changing nothing."""
    tag = normalize(text)
    _check_action(action)
    ids = customer_ids.subquery("audience")
    matched = await _count(session, sa.select(ids.c.id))
    # Those who have the tag: a join; those who lack it: an outer join's misses (an anti-join,
    # not NOT IN over a list that may not fit in memory).
    had = CustomerTag.__table__.alias("had")
    joined = ids.outerjoin(had, sa.and_(had.c.customer_id == ids.c.id, had.c.tag == tag))
    if action == ADD:
        changing = sa.select(ids.c.id).select_from(joined).where(had.c.customer_id.is_(None), ids.c.id.not_in(_full()))
    else:
        changing = sa.select(ids.c.id).select_from(joined).where(had.c.customer_id.is_not(None))
    return Bulk(tag, action, matched, await _count(session, changing))


async def bulk_change(
    session: AsyncSession, customer_ids: sa.Select, text: str, action: str, *, target: str, actor: audit.Actor, now: datetime,
) -> Bulk:
    """Tag (`add`) or untag (`remove`) every customer `customer_ids` selects, in ONE statement:
    `INSERT … SELECT … ON CONFLICT DO NOTHING` or `DELETE … WHERE customer_id IN (…)`, never a
    statement per customer. Running it again changes nothing (changed 0). Audited once, with
    the counts, naming `target` (the segment).

    No timeline row per customer and no live update per customer: a bulk change may touch
    100,000 customers, and a support agent looking at one of them sees the tag itself in the
    customer panel; who put it there, when and through which segment is the audit entry's."""
    tag = normalize(text)
    _check_action(action)
    ids = customer_ids.subquery("audience")
    matched = await _count(session, sa.select(ids.c.id))
    table = CustomerTag.__table__
    if action == ADD:
        rows = sa.select(
            ids.c.id, sa.literal(tag, table.c.tag.type), sa.literal(now, table.c.created_at.type),
        ).where(ids.c.id.not_in(_full()))
        statement = (insert_on_conflict(session, table).from_select(["customer_id", "tag", "created_at"], rows)
                     .on_conflict_do_nothing())
    else:
        statement = sa.delete(table).where(table.c.tag == tag, table.c.customer_id.in_(sa.select(ids.c.id)))
        # Automation causes for those who have the tag, recorded before the DELETE takes it away.
        await automations.record(session, AutomationTrigger.TAG_REMOVED, sa.select(table.c.customer_id).where(
            table.c.tag == tag, table.c.customer_id.in_(sa.select(ids.c.id))), value=tag, now=now)
    changed = (await session.execute(statement)).rowcount
    if changed and action == ADD:  # the rows this statement wrote carry its `now`: those customers got the tag
        tagged = sa.select(table.c.customer_id).where(
            table.c.tag == tag, table.c.created_at == now, table.c.customer_id.in_(sa.select(ids.c.id)))
        await sequences.on_tag_added(session, tagged, tag, now=now)
        await automations.record(session, AutomationTrigger.TAG_ADDED, tagged, value=tag, now=now)
    elif changed:
        await sequences.on_tag_removed(session, sa.select(ids.c.id), tag, now=now)
    audit.record(session, actor, audit.Action.TAG_BULK_ADDED if action == ADD else audit.Action.TAG_BULK_REMOVED,
                 target=target, tag=tag, matched=matched, changed=changed)
    return Bulk(tag, action, matched, changed)
