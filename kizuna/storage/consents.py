"""Purposes of use and the consent ledger (issue 16 part 2), and what a withdrawal (退会) does to
the customer row.

- A **privacy notice** version (`PrivacyNotice`) is published, never edited: its URL, its text
  and a description of each purpose of use (membership, marketing messages, analytics). The
  newest published version is the current one.
- A customer's `privacy_notice_id` is the version they last accepted (at registration, or when
  they accept a newer one from the member info card); `privacy_consented_at` when.
- The **ledger** (`ConsentRecord`) has one append-only row per grant or withdrawal of one
  purpose: who, what, which notice version, through which channel, who acted, when. Nothing here
  updates a row; the retention purge removes rows past the shop's period for them (storage/
  retention.py: 37 months by default, never under APPI's 3 years).

A "no" to marketing messages at registration is a `withdrawn` row, so the ledger alone tells
whether consent was held at any moment (the last row of a purpose wins).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, texts
from .errors import Conflict, Invalid, NotFound
from .models import (
    PRIVACY_PURPOSE_MAX, PRIVACY_TEXT_MAX, PRIVACY_URL_MAX, PRIVACY_VERSION_MAX, ConsentAction, ConsentChannel, ConsentPurpose,
    ConsentRecord, Customer, CustomerIdentity, PrivacyNotice, Shop, WithdrawalData,
)

SHOP_ID = 1
HISTORY_LIMIT = 200
# What registration collects, cleared by a withdrawal when the shop deletes it (name_kana comes
# from the shop's customer records, and is registration data as much as the name).
REGISTRATION_DATA = ("full_name", "name_kana", "birthday", "gender", "prefecture", "phone", "email")
# Accepting the notice at registration grants these; marketing is asked on its own.
NOTICE_PURPOSES = (ConsentPurpose.MEMBERSHIP, ConsentPurpose.ANALYTICS)
CUSTOMER_ACTOR = "customer"
PRIVACY_URL_TEXT = "privacy_policy_url"  # the bot text holding the address the consent question links


# -- notice versions ---------------------------------------------------------------------------


async def current_notice(session: AsyncSession) -> PrivacyNotice | None:
    """The newest published version (None only when every version was removed by hand)."""
    statement = sa.select(PrivacyNotice).order_by(PrivacyNotice.published_at.desc(), PrivacyNotice.id.desc()).limit(1)
    return (await session.execute(statement)).scalar_one_or_none()


async def list_notices(session: AsyncSession) -> list[PrivacyNotice]:
    """Every version, newest first."""
    statement = sa.select(PrivacyNotice).order_by(PrivacyNotice.published_at.desc(), PrivacyNotice.id.desc())
    return list((await session.execute(statement)).scalars())


async def get_notice(session: AsyncSession, notice_id: int) -> PrivacyNotice:
    notice = await session.get(PrivacyNotice, notice_id)
    if notice is None:
        raise NotFound("no such privacy notice version")
    return notice


def _clean_text(field: str, value: Any, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(field, "must not be blank")
    value = value.strip()
    if len(value) > limit:
        raise Invalid(field, f"at most {limit} characters")
    if any(ord(ch) < 32 and ch not in "\n\r\t" for ch in value):
        raise Invalid(field, "must not contain control characters")
    return value


def check_notice(*, version: Any, url: Any, text: Any, purposes: Any) -> dict[str, Any]:
    """The notice's fields, cleaned; Invalid names the first field at fault."""
    version = _clean_text("version", version, PRIVACY_VERSION_MAX)
    if "\n" in version:
        raise Invalid("version", "one line")
    url = _clean_text("url", url, PRIVACY_URL_MAX)
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or any(ch.isspace() for ch in url):
        raise Invalid("url", "must be an https:// address")
    text = _clean_text("text", text, PRIVACY_TEXT_MAX)
    if not isinstance(purposes, dict):
        raise Invalid("purposes", "must map each purpose to its description")
    unknown = set(purposes) - {purpose.value for purpose in ConsentPurpose}
    if unknown:
        raise Invalid("purposes", f"unknown purposes: {sorted(unknown)}")
    cleaned = {}
    for purpose in ConsentPurpose:
        if purpose.value not in purposes:
            raise Invalid(f"purposes.{purpose.value}", "every purpose needs a description")
        cleaned[purpose.value] = _clean_text(f"purposes.{purpose.value}", purposes[purpose.value], PRIVACY_PURPOSE_MAX)
    return {"version": version, "url": url, "text": text, "purposes": cleaned}


async def publish_notice(
    session: AsyncSession, *, version: Any, url: Any, text: Any, purposes: Any, now: datetime, actor: audit.Actor | None,
) -> PrivacyNotice:
    """Publish a new version (it becomes the current one at once). Registered customers who
    accepted an older one are asked to accept it on their member info card.
    Invalid for bad fields; Conflict("version_taken") when the label is used."""
    values = check_notice(version=version, url=url, text=text, purposes=purposes)
    taken = (await session.execute(sa.select(PrivacyNotice.id).where(PrivacyNotice.version == values["version"]))).first()
    if taken is not None:
        raise Conflict("version_taken", f"version {values['version']!r} is already published")
    latest = await current_notice(session)
    # Published "now", but never before the current one (a clock moved back keeps the order).
    published_at = max(now, latest.published_at) if latest is not None else now
    notice = PrivacyNotice(**values, published_at=published_at, published_by=actor.label[:100] if actor else None)
    session.add(notice)
    await session.flush()
    audit.record_by(session, actor, audit.Action.SETTINGS_CHANGED, target=f"privacy_notice:{notice.id} {notice.version}",
                    setting="privacy_notice", version=notice.version, url=notice.url)
    # The bot's consent question links the `privacy_policy_url` text (the console's texts page
    # edits it too, for an address that moved without a new version): it follows the new version.
    for locale in texts.LOCALES:
        await texts.set_text(session, PRIVACY_URL_TEXT, locale, notice.url, actor=actor)
    return notice


# -- the shop's withdrawal setting --------------------------------------------------------------


async def withdrawal_data(session: AsyncSession) -> WithdrawalData:
    shop = await session.get(Shop, SHOP_ID)
    return WithdrawalData(shop.withdrawal_data) if shop is not None else WithdrawalData.DELETE


async def set_withdrawal_data(session: AsyncSession, value: Any, *, actor: audit.Actor | None) -> WithdrawalData:
    try:
        chosen = WithdrawalData(value)
    except ValueError:
        raise Invalid("withdrawal_data", "must be delete or keep") from None
    shop = await session.get(Shop, SHOP_ID)
    if shop is None:
        raise RuntimeError("the shops table has no row 1: run the migrations")
    if shop.withdrawal_data != chosen:
        before = shop.withdrawal_data
        shop.withdrawal_data = chosen.value
        audit.record_by(session, actor, audit.Action.SETTINGS_CHANGED, target="withdrawal_data",
                        setting="withdrawal_data", before=before, after=chosen.value)
    return chosen


# -- the ledger ---------------------------------------------------------------------------------


def record(
    session: AsyncSession, customer_id: int, purposes: tuple[ConsentPurpose, ...] | list[ConsentPurpose], action: ConsentAction, *,
    channel: ConsentChannel, at: datetime, notice_id: int | None, actor: str | None = CUSTOMER_ACTOR,
) -> None:
    """Append one ledger row per purpose, in the caller's transaction."""
    for purpose in purposes:
        session.add(ConsentRecord(
            customer_id=customer_id, purpose=ConsentPurpose(purpose).value, action=ConsentAction(action).value,
            notice_id=notice_id, channel=ConsentChannel(channel).value, actor=actor[:100] if actor else None, at=at,
        ))


@dataclass(frozen=True)
class HistoryRow:
    id: int
    purpose: str
    action: str
    notice_id: int | None
    notice_version: str | None
    channel: str
    actor: str | None
    at: datetime


async def history(session: AsyncSession, customer_id: int, *, limit: int = HISTORY_LIMIT) -> list[HistoryRow]:
    """The customer's ledger, newest first, with each row's notice version label."""
    statement = (
        sa.select(ConsentRecord, PrivacyNotice.version)
        .outerjoin(PrivacyNotice, PrivacyNotice.id == ConsentRecord.notice_id)
        .where(ConsentRecord.customer_id == customer_id)
        .order_by(ConsentRecord.id.desc())
        .limit(limit)
    )
    return [
        HistoryRow(row.id, row.purpose, row.action, row.notice_id, version, row.channel, row.actor, row.at)
        for row, version in (await session.execute(statement)).all()
    ]


@dataclass(frozen=True)
class NoticeCount:
    notice: PrivacyNotice
    members: int  # registered customers whose accepted version this is
    granted: int  # ledger grants made under this version (any purpose)
    withdrawn: int


async def counts_per_notice(session: AsyncSession) -> list[NoticeCount]:
    """For the console: per version, newest first, how many members accepted it as their latest,
    and the ledger's grants and withdrawals under it (two grouped queries)."""
    notices = await list_notices(session)
    members = dict((await session.execute(
        sa.select(Customer.privacy_notice_id, sa.func.count())
        .where(Customer.registered.is_(True), Customer.privacy_notice_id.is_not(None))
        .group_by(Customer.privacy_notice_id)
    )).all())
    actions: dict[tuple[int, str], int] = {
        (notice_id, action): count for notice_id, action, count in (await session.execute(
            sa.select(ConsentRecord.notice_id, ConsentRecord.action, sa.func.count())
            .where(ConsentRecord.notice_id.is_not(None))
            .group_by(ConsentRecord.notice_id, ConsentRecord.action)
        )).all()
    }
    return [
        NoticeCount(notice, members.get(notice.id, 0), actions.get((notice.id, ConsentAction.GRANTED.value), 0),
                    actions.get((notice.id, ConsentAction.WITHDRAWN.value), 0))
        for notice in notices
    ]


async def members_on_older_notice(session: AsyncSession) -> int:
    """Registered customers who have not accepted the current version (asked on their member info card)."""
    current = await current_notice(session)
    if current is None:
        return 0
    statement = sa.select(sa.func.count()).select_from(Customer).where(
        Customer.registered.is_(True), Customer.privacy_notice_id.is_not(None), Customer.privacy_notice_id != current.id,
    )
    return (await session.execute(statement)).scalar_one()


# -- the customer row: accepting a notice, withdrawing ------------------------------------------


def needs_acceptance(customer: Customer, current: PrivacyNotice | None) -> bool:
    """A member who accepted an older version than the current one is asked to accept it. A member
    with no version on record (registered through the shop's own systems, whose consent the
    shop holds there) is not asked: the chat never accepted anything for them."""
    return bool(customer.registered and current is not None and customer.privacy_notice_id is not None
                and customer.privacy_notice_id != current.id)


def accept_notice(session: AsyncSession, customer: Customer, notice: PrivacyNotice, *, channel: ConsentChannel, at: datetime,
                  actor: str | None = CUSTOMER_ACTOR) -> bool:
    """The customer accepts `notice` (a newer version, from the member info card); False when it
    was theirs already. The purposes the notice covers are granted again under it."""
    if customer.privacy_notice_id == notice.id:
        return False
    customer.privacy_notice_id = notice.id
    customer.privacy_consented_at = at
    record(session, customer.id, NOTICE_PURPOSES, ConsentAction.GRANTED, channel=channel, at=at, notice_id=notice.id, actor=actor)
    if customer.marketing_opt_in:
        record(session, customer.id, (ConsentPurpose.MARKETING,), ConsentAction.GRANTED, channel=channel, at=at,
               notice_id=notice.id, actor=actor)
    return True


def end_membership(customer: Customer, *, delete_data: bool, at: datetime) -> list[str]:
    """What a withdrawal changes on the customer row: no longer a member, marketing off at once,
    and (when the shop deletes it) the registration data cleared. Returns the columns cleared.
    The LINE profile (display name, picture) stays: it is LINE's, refreshed on every follow."""
    customer.registered = False
    customer.withdrawn_at = at
    customer.marketing_opt_in = False
    customer.marketing_consent_changed_at = at
    cleared: list[str] = []
    if delete_data:
        for column in REGISTRATION_DATA:
            if getattr(customer, column) is not None:
                cleared.append(column)
            setattr(customer, column, None)
    return cleared


async def forget_identities(session: AsyncSession, customer_id: int, refs: list[tuple[str, str]]) -> int:
    """Remove the customer's e-mail and phone identities that registration data gave (`refs`:
    identities.profile_refs taken before the data was cleared): a deleted e-mail must not keep
    recognising the customer. The LINE user id stays (they are still a friend)."""
    kept_kinds = {"line_user_id"}
    removed = 0
    for kind, value in refs:
        if kind in kept_kinds:
            continue
        statement = sa.delete(CustomerIdentity).where(
            CustomerIdentity.customer_id == customer_id, CustomerIdentity.kind == kind, CustomerIdentity.value == value,
        )
        removed += (await session.execute(statement)).rowcount or 0
    return removed
