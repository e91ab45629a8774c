"""Customer tags (タグ): free-text labels staff put on a customer, at most once each.

Adding and removing are customer edits: each is audited (`customer.edited`) in the
caller's transaction. A tag is normalised before it is stored (NFKC, spaces squeezed),
so 「ＶＩＰ」 and 「VIP」 are one tag.
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, customers
from .errors import Invalid
from .models import TAG_MAX, CustomerTag
from .types import utcnow

MAX_TAGS_PER_CUSTOMER = 50


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


async def add(session: AsyncSession, customer_id: int, text: str, *, actor: audit.Actor) -> bool:
    """Tag the customer; False when they had the tag already (nothing is recorded then)."""
    tag = normalize(text)
    customer = await customers.get_existing(session, customer_id)
    if await session.get(CustomerTag, (customer_id, tag)) is not None:
        return False
    count = (await session.execute(sa.select(sa.func.count()).where(CustomerTag.customer_id == customer_id))).scalar_one()
    if count >= MAX_TAGS_PER_CUSTOMER:
        raise Invalid("tag", f"a customer has at most {MAX_TAGS_PER_CUSTOMER} tags")
    try:
        async with session.begin_nested():  # two staff adding the same tag at once: one row
            session.add(CustomerTag(customer_id=customer_id, tag=tag, created_at=utcnow()))
            await session.flush()
    except sa.exc.IntegrityError:
        return False
    audit.record(session, actor, audit.Action.CUSTOMER_EDITED, target=customers.audit_target(customer), tag_added=tag)
    return True


async def remove(session: AsyncSession, customer_id: int, text: str, *, actor: audit.Actor) -> bool:
    """Untag the customer; False when they did not have the tag."""
    tag = normalize(text)
    customer = await customers.get_existing(session, customer_id)
    deleted = (await session.execute(
        sa.delete(CustomerTag).where(CustomerTag.customer_id == customer_id, CustomerTag.tag == tag)
    )).rowcount
    if not deleted:
        return False
    audit.record(session, actor, audit.Action.CUSTOMER_EDITED, target=customers.audit_target(customer), tag_removed=tag)
    return True
