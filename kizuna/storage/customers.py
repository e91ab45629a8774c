"""Customers: one row per person, keyed by their LINE user id when they are on LINE (a customer
known only from the shop's orders or customer records has none; see identities.py)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import identities
from .db import LIKE_ESCAPE, contains
from .errors import NotFound
from .identity_values import IdentityKind
from .models import Customer
from .types import utcnow


@dataclass(frozen=True)
class Profile:
    """What LINE tells us about a person; any field may be missing (their consent governs it)."""

    display_name: str | None = None
    picture_url: str | None = None
    status_message: str | None = None
    language: str | None = None


async def get_by_line_user_id(session: AsyncSession, line_user_id: str) -> Customer | None:
    statement = sa.select(Customer).where(Customer.line_user_id == line_user_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def exists(session: AsyncSession, line_user_id: str) -> bool:
    """Whether a customer has this LINE user id (its id only: no row to load)."""
    statement = sa.select(Customer.id).where(Customer.line_user_id == line_user_id).limit(1)
    return (await session.execute(statement)).first() is not None


async def get(session: AsyncSession, customer_id: int) -> Customer | None:
    return await session.get(Customer, customer_id)


async def by_ids(session: AsyncSession, customer_ids: set[int] | list[int]) -> dict[int, Customer]:
    """The customers with these ids (merged ones too), by id."""
    if not customer_ids:
        return {}
    statement = sa.select(Customer).where(Customer.id.in_(sorted(customer_ids)))
    return {customer.id: customer for customer in (await session.execute(statement)).scalars()}


async def get_existing(session: AsyncSession, customer_id: int) -> Customer:
    """The customer, for staff who name one by id: NotFound when there is none."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("no such customer")
    return customer


def audit_target(customer: Customer) -> str:
    """How the audit log names a customer whose details staff changed: by id only. The log is
    append-only (an erase cannot reach it), so it must never hold a name (issue 16)."""
    return f"customer:{customer.id}"


async def get_or_create(session: AsyncSession, line_user_id: str, profile: Profile | None) -> tuple[Customer, bool]:
    """The customer for a LINE user id, created on first contact.

    Per-source ordering means one source is handled by one worker at a time, but
    the API or a campaign may create the same customer concurrently: the unique
    line_user_id decides, and the loser reads the winner's row.
    """
    customer = await get_by_line_user_id(session, line_user_id)
    if customer is not None:
        return customer, False
    customer = Customer(line_user_id=line_user_id)
    if profile is not None:
        apply_profile(customer, profile)
    try:
        async with session.begin_nested():
            session.add(customer)
            await session.flush()
    except sa.exc.IntegrityError:
        existing = await get_by_line_user_id(session, line_user_id)
        assert existing is not None
        return existing, False
    # The LINE user id is an identity like any other, so orders naming it find this customer.
    await identities.add(session, [(customer.id, IdentityKind.LINE_USER_ID, line_user_id)], source="line", now=utcnow())
    return customer, True


PICTURE_URL_MAX = 2000


def https_url(value: str | None) -> str | None:
    """`value` when it is an https: URL with a host and nothing that is not plainly a URL in it;
    else None. A LINE profile's pictureUrl is the person's own data passed on by LINE: a
    `javascript:`, `data:` or `http:` one is never stored, so nothing can ever render it as a link
    or an image source (issue 16 part 7)."""
    if not isinstance(value, str) or len(value) > PICTURE_URL_MAX:
        return None
    if any(char.isspace() or not char.isprintable() or char in "\\\"<>`" for char in value):
        return None
    parsed = urlsplit(value)
    if parsed.scheme != "https" or not parsed.hostname or parsed.username or parsed.password:
        return None
    return value


def apply_profile(customer: Customer, profile: Profile) -> None:
    customer.display_name = profile.display_name
    customer.picture_url = https_url(profile.picture_url)
    customer.status_message = profile.status_message
    customer.language = profile.language
    customer.profile_refreshed_at = utcnow()


def mark_followed(customer: Customer, at: datetime) -> None:
    customer.followed = True
    customer.blocked = False
    customer.followed_at = at


def mark_unfollowed(customer: Customer, at: datetime) -> None:
    # Unfollow is LINE's only signal that the customer blocked the account.
    customer.followed = False
    customer.blocked = True
    customer.unfollowed_at = at


async def list_page(
    session: AsyncSession, *, line_user_id: str | None, limit: int, after_id: int | None
) -> list[Customer]:
    # A customer merged into another is that other one now (storage/merges.py).
    statement = sa.select(Customer).where(Customer.merged_into_id.is_(None)).order_by(Customer.id).limit(limit)
    if line_user_id is not None:
        statement = statement.where(Customer.line_user_id == line_user_id)
    if after_id is not None:
        statement = statement.where(Customer.id > after_id)
    return list((await session.execute(statement)).scalars())


def _without_spaces(column) -> Any:
    return sa.func.replace(sa.func.replace(sa.func.lower(column), " ", ""), "\u3000", "")


def _search_filter(query: str) -> Any:
    """Name (LINE name or registered name, spaces ignored), phone (as typed in Japan: 090-…),
    e-mail, or LINE user id: any one may match."""
    text = " ".join(unicodedata.normalize("NFKC", query).split()).lower()
    squeezed = text.replace(" ", "")
    matches = [
        _without_spaces(Customer.display_name).like(contains(squeezed), escape=LIKE_ESCAPE),
        _without_spaces(Customer.full_name).like(contains(squeezed), escape=LIKE_ESCAPE),
        sa.func.lower(Customer.email).like(contains(text), escape=LIKE_ESCAPE),
        sa.func.lower(Customer.line_user_id).like(contains(squeezed), escape=LIKE_ESCAPE),
    ]
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 3 and not re.search(r"[^\d\s()+\-]", text):
        # Phones are stored as E.164 (+819012345678): a national 090… number is searched without its 0.
        matches.append(Customer.phone.like(contains(digits[1:] if digits.startswith("0") else digits), escape=LIKE_ESCAPE))
    return sa.or_(*matches)


async def search(
    session: AsyncSession, query: str | None, *, limit: int, before_id: int | None = None
) -> list[Customer]:
    """友だち in the console: newest first, `before_id` pages back; `query` as `_search_filter`."""
    statement = sa.select(Customer).where(Customer.merged_into_id.is_(None)).order_by(Customer.id.desc()).limit(limit)
    if query and query.strip():
        statement = statement.where(_search_filter(query[:200]))
    if before_id is not None:
        statement = statement.where(Customer.id < before_id)
    return list((await session.execute(statement)).scalars())


async def count_matching(session: AsyncSession, query: str | None) -> int:
    statement = sa.select(sa.func.count()).select_from(Customer).where(Customer.merged_into_id.is_(None))
    if query and query.strip():
        statement = statement.where(_search_filter(query[:200]))
    return (await session.execute(statement)).scalar_one()


# -- member registration and the customer's own changes ------------------------------------

# What registration collects, by column; everything else on the row is LINE's or ours.
PROFILE_COLUMNS = ("full_name", "birthday", "gender", "prefecture", "phone", "email")


def complete_registration(
    customer: Customer, *, profile: dict[str, Any], marketing_opt_in: bool, consented_at: datetime, at: datetime
) -> None:
    """Store what the customer gave, all at once: nothing is kept before they confirm.

    `profile` maps PROFILE_COLUMNS to values (a missing or None value stays empty)."""
    unknown = set(profile) - set(PROFILE_COLUMNS)
    if unknown:
        raise ValueError(f"not registration columns: {sorted(unknown)}")
    for column in PROFILE_COLUMNS:
        setattr(customer, column, profile.get(column))
    customer.registered = True
    customer.registered_at = at
    customer.privacy_consented_at = consented_at
    # The choice was made now, whichever it was.
    customer.marketing_opt_in = marketing_opt_in
    customer.marketing_consent_changed_at = at


def update_profile(customer: Customer, column: str, value: Any) -> bool:
    """Change one registered detail; True if it changed."""
    if column not in PROFILE_COLUMNS:
        raise ValueError(f"not a profile column: {column}")
    if getattr(customer, column) == value:
        return False
    setattr(customer, column, value)
    return True


def set_marketing_opt_in(customer: Customer, opt_in: bool, at: datetime) -> bool:
    """Record the customer's choice about marketing messages; True if it changed
    (an unchanged choice keeps the time it was made)."""
    if customer.marketing_opt_in == opt_in and customer.marketing_consent_changed_at is not None:
        return False
    customer.marketing_opt_in = opt_in
    customer.marketing_consent_changed_at = at
    return True
