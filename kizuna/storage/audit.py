"""The audit log: who did what, when, from where. Append-only.

`record` adds a row to the caller's session, so the entry commits or rolls back with the
action it records. Nothing here (or anywhere) updates or deletes a row, and the database
refuses to (triggers from migration 0008). Readable by admins in the console.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import STAFF_EMAIL_MAX, AuditEntry
from .types import utcnow


class Action(StrEnum):
    """What happened. Add a member for a new kind of action (the column is free text so
    adding one needs no migration; the console shows unknown ones by their value)."""

    LOGIN = "login"
    LOGIN_FAILED = "login.failed"
    LOGIN_THROTTLED = "login.throttled"
    LOGOUT = "logout"
    STAFF_CREATED = "staff.created"
    STAFF_ROLE_CHANGED = "staff.role_changed"
    STAFF_DISABLED = "staff.disabled"
    STAFF_ENABLED = "staff.enabled"
    STAFF_SESSIONS_ENDED = "staff.sessions_ended"
    STAFF_PASSWORD_RESET = "staff.password_reset"
    STAFF_TOTP_RESET = "staff.totp_reset"
    PASSWORD_CHANGED = "account.password_changed"
    TOTP_ENABLED = "account.totp_enabled"
    TOTP_DISABLED = "account.totp_disabled"
    # For the parts of the console built next (issue 13): recorded by their services.
    EXPORT = "export"
    CUSTOMER_EDITED = "customer.edited"
    # 名寄せ (issue 14): storage/merges.py
    CUSTOMER_MERGED = "customer.merged"
    CUSTOMER_UNMERGED = "customer.unmerged"
    MERGE_DISMISSED = "merge_candidate.dismissed"
    COUPON_GRANTED = "coupon.granted"
    SETTINGS_CHANGED = "settings.changed"
    # What staff change about the bot and the coupons, recorded by the services that change
    # it (storage/faq.py, storage/coupons.py, storage/texts.py, flows/faq/settings.py, the
    # rich menu setup) whenever the caller says who acts (`actor=`): the REST API and the
    # console always do.
    FAQ_CREATED = "faq.created"
    FAQ_UPDATED = "faq.updated"
    FAQ_DELETED = "faq.deleted"
    FAQ_IMPORTED = "faq.imported"
    KEYWORD_RULE_CREATED = "keyword_rule.created"
    KEYWORD_RULE_UPDATED = "keyword_rule.updated"
    KEYWORD_RULE_DELETED = "keyword_rule.deleted"
    BUSINESS_HOURS_CHANGED = "business_hours.changed"
    THRESHOLDS_CHANGED = "thresholds.changed"
    TEXT_CHANGED = "text.changed"
    TEXT_RESET = "text.reset"
    COUPON_CREATED = "coupon.created"
    COUPON_UPDATED = "coupon.updated"
    COUPON_REDEEMED = "coupon.redeemed"
    SEGMENT_CREATED = "segment.created"
    CAMPAIGN_CREATED = "campaign.created"
    CAMPAIGN_PAUSED = "campaign.paused"
    CAMPAIGN_RESUMED = "campaign.resumed"
    CAMPAIGN_CANCELLED = "campaign.cancelled"
    CAMPAIGN_TEST_SENT = "campaign.test_sent"
    COUPON_REVOKED = "coupon.revoked"
    RICH_MENU_SETUP = "rich_menu.setup"
    API_TOKEN_CREATED = "api_token.created"
    API_TOKEN_REVOKED = "api_token.revoked"
    # Tags for every customer of a segment at once (storage/tags.py bulk_change), with the counts.
    TAG_BULK_ADDED = "tag.bulk_added"
    TAG_BULK_REMOVED = "tag.bulk_removed"
    # 流入経路 (storage/friend_sources.py)
    FRIEND_SOURCE_CREATED = "friend_source.created"
    FRIEND_SOURCE_ARCHIVED = "friend_source.archived"
    FRIEND_SOURCE_RESTORED = "friend_source.restored"
    # Retention (storage/retention.py, campaigns/retention.py)
    RETENTION_POLICY_CHANGED = "retention.policy_changed"
    RETENTION_RUN = "retention.run"
    # Reads of customer data, with the customers read in audit_customer_reads (storage/audit_reads.py):
    # what a breach report lists. A segment export is EXPORT, its members recorded the same way.
    CUSTOMER_VIEWED = "customer.viewed"  # the console's customer page
    CONVERSATION_VIEWED = "conversation.viewed"  # the console's conversation page
    CUSTOMER_READ = "customer.read"  # GET /api/v1/customers/{id}
    CUSTOMERS_LISTED = "customers.listed"  # GET /api/v1/customers: the page's customers
    TIMELINE_READ = "timeline.read"  # GET /api/v1/customers/{id}/interactions
    ORDERS_READ = "orders.read"  # the API's orders of a customer
    CUSTOMER_EXPORTED = "customer.exported"  # one customer's whole record (data-subject export)
    # Data-subject requests (flows/data_rights.py); an export of a customer's record is `EXPORT`
    # with the target customer:<id>. Targets name customers by id only (this log outlives an erase).
    CUSTOMER_CORRECTED = "customer.corrected"
    CUSTOMER_PROCESSING_STOPPED = "customer.processing_stopped"
    CUSTOMER_PROCESSING_RESUMED = "customer.processing_resumed"
    CUSTOMER_ERASED = "customer.erased"


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member (id and e-mail), the command line, or an API token's name;
    from where (client address and browser)."""

    label: str
    staff_id: int | None = None
    ip: str | None = None
    user_agent: str | None = None

    def at(self, ip: str | None, user_agent: str | None) -> "Actor":
        return Actor(self.label, self.staff_id, ip, user_agent)


CLI = Actor("cli")


def record(session: AsyncSession, actor: Actor, action: Action, *, target: str | None = None, at: datetime | None = None,
           **details: Any) -> AuditEntry:
    """Add an entry to the caller's transaction (committed with the action, or not at all).
    `at`: the services' clock, where the caller has one (default: now)."""
    entry = AuditEntry(
        at=at or utcnow(), actor_staff_id=actor.staff_id, actor=actor.label[:STAFF_EMAIL_MAX], action=str(action),
        target=target[:200] if target else None, details=details,
        ip=actor.ip[:45] if actor.ip else None, user_agent=actor.user_agent[:200] if actor.user_agent else None,
    )
    session.add(entry)
    return entry


def record_by(session: AsyncSession, actor: Actor | None, action: Action, *, target: str | None = None, **details: Any) -> None:
    """`record` when someone is named: the services that also serve the bot and the tests
    (which name no one) take an optional `actor`."""
    if actor is not None:
        record(session, actor, action, target=target, **details)


def excerpt(text: str | None, limit: int = 100) -> str | None:
    """A long text (an answer, a bot text) as the audit log keeps it: its beginning."""
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


async def page(
    session: AsyncSession, *, limit: int, before_id: int | None = None, action: str | None = None,
    actor_staff_id: int | None = None,
) -> list[AuditEntry]:
    """Newest first; `before_id` pages back."""
    statement = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(AuditEntry.id < before_id)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    if actor_staff_id is not None:
        statement = statement.where(AuditEntry.actor_staff_id == actor_staff_id)
    return list((await session.execute(statement)).scalars())
