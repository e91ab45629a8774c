"""One customer's whole record (APPI 開示: a data-subject's request to see their data), as a JSON
document and as CSV.

Sections follow the tables: every table that holds a customer id (or the customer's LINE user id)
has its section here, and tests/storage/test_erasure.py checks that against the models, so a new
table cannot be forgotten. Binary media are listed (id, type, size), not embedded.

CSV is a zip of one CSV per section (`customer.csv`, `orders.csv`, ...): the sections have different
columns, and one CSV per table is what a person opens in Excel and what another system imports;
a single CSV with a `section` column would need every section's columns on every row. Each file is
UTF-8 with a BOM and CRLF (Excel in Japan), and cells that a spreadsheet would run as a formula
start with ' (as the segment export does: the customer typed some of this text).
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import NotFound
from .models import (
    ApiEvent, AuditCustomerRead, AutomationCause, AutomationFiring, AutomationSegmentMember, CampaignClick, ConsentRecord, CampaignRecipient, Conversation, ConversationNote, CouponGrant, Customer, CustomerIdentity,
    CustomerMerge, CustomerMetrics, CustomerTag, DataRequest, Delivery, FlowState, FriendSourceAttribution, FriendSourceVisit,
    InboundEvent, Interaction, MediaContent, MergeCandidate, Order, OrderItem, ProvisionRecord, SequenceEnrolment,
    SequenceSegmentMember,
)

FORMAT_VERSION = 1
BOM = "\ufeff"
_RISKY = ("=", "+", "-", "@", "\t", "\r")


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return None  # never embedded (media are listed by size)
    return value


def as_dict(row: Any, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    return {column.name: _plain(getattr(row, column.name)) for column in row.__table__.columns if column.name not in leave_out}


async def _all(session: AsyncSession, statement: sa.Select, **options: Any) -> list[dict[str, Any]]:
    return [as_dict(row, **options) for row in (await session.execute(statement)).scalars()]


async def document(session: AsyncSession, customer_id: int, *, now: datetime) -> dict[str, Any]:
    """The customer's record, section by section (JSON-ready: dates as ISO 8601 text)."""
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("no such customer")
    line_id = customer.line_user_id
    conversation_ids = sa.select(Conversation.id).where(Conversation.customer_id == customer_id)
    order_ids = sa.select(Order.id).where(Order.customer_id == customer_id)
    inbound = (await _all(session, sa.select(InboundEvent).where(InboundEvent.line_user_id == line_id).order_by(InboundEvent.id))
               if line_id else [])
    message_ids = _media_ids(inbound)
    media = [] if not message_ids else [
        {"message_id": m.message_id, "content_type": m.content_type, "size": m.size, "fetched_at": _plain(m.fetched_at)}
        for m in (await session.execute(sa.select(MediaContent).where(MediaContent.message_id.in_(message_ids)))).scalars()
    ]
    by_customer = lambda model: sa.select(model).where(model.customer_id == customer_id)  # noqa: E731
    return {
        "format_version": FORMAT_VERSION,
        "exported_at": now.isoformat(),
        "customer": as_dict(customer),
        "identities": await _all(session, by_customer(CustomerIdentity).order_by(CustomerIdentity.id)),
        "tags": await _all(session, by_customer(CustomerTag).order_by(CustomerTag.tag)),
        "timeline": await _all(session, by_customer(Interaction).order_by(Interaction.id)),
        "orders": await _all(session, by_customer(Order).order_by(Order.ordered_at, Order.id)),
        "order_items": await _all(session, sa.select(OrderItem).where(OrderItem.order_id.in_(order_ids))
                                  .order_by(OrderItem.order_id, OrderItem.line_no)),
        "metrics": await _all(session, by_customer(CustomerMetrics)),
        "coupon_grants": await _all(session, by_customer(CouponGrant).order_by(CouponGrant.id)),
        "conversations": await _all(session, by_customer(Conversation).order_by(Conversation.id)),
        "conversation_notes": await _all(session, sa.select(ConversationNote).where(ConversationNote.conversation_id.in_(conversation_ids))
                                         .order_by(ConversationNote.id)),
        "deliveries": await _all(session, by_customer(Delivery).order_by(Delivery.id)),
        "campaign_recipients": await _all(session, by_customer(CampaignRecipient).order_by(CampaignRecipient.campaign_id)),
        "campaign_clicks": await _all(session, by_customer(CampaignClick).order_by(CampaignClick.id)),
        "sequence_enrolments": await _all(session, by_customer(SequenceEnrolment).order_by(SequenceEnrolment.id)),
        "sequence_segment_members": await _all(session, by_customer(SequenceSegmentMember)),
        "flow_state": await _all(session, by_customer(FlowState)),
        "api_events": await _all(session, by_customer(ApiEvent).order_by(ApiEvent.id)),
        "inbound_events": inbound,
        "media": media,
        "friend_source_attributions": await _all(session, sa.select(FriendSourceAttribution).where(sa.or_(
            FriendSourceAttribution.customer_id == customer_id,
            FriendSourceAttribution.line_user_id == (line_id or "")))),
        "friend_source_visits": (await _all(session, sa.select(FriendSourceVisit).where(FriendSourceVisit.line_user_id == line_id)
                                            .order_by(FriendSourceVisit.id)) if line_id else []),
        "merge_candidates": await _all(session, sa.select(MergeCandidate).where(sa.or_(
            MergeCandidate.customer_id == customer_id, MergeCandidate.other_customer_id == customer_id)).order_by(MergeCandidate.id)),
        "customer_merges": await _all(session, sa.select(CustomerMerge).where(sa.or_(
            CustomerMerge.customer_id == customer_id, CustomerMerge.merged_customer_id == customer_id)).order_by(CustomerMerge.id)),
        "consent_records": await _all(session, by_customer(ConsentRecord).order_by(ConsentRecord.id)),
        "automation_causes": await _all(session, by_customer(AutomationCause).order_by(AutomationCause.id)),
        "automation_firings": await _all(session, by_customer(AutomationFiring).order_by(AutomationFiring.id)),
        "automation_segment_members": await _all(session, by_customer(AutomationSegmentMember)),
        # Who at the shop read the record, by audit entry (the log itself names staff, not customers).
        "reads": await _all(session, by_customer(AuditCustomerRead).order_by(AuditCustomerRead.audit_entry_id)),
        "data_requests": await _all(session, by_customer(DataRequest).order_by(DataRequest.id)),
        "provision_records": await _all(session, sa.select(ProvisionRecord).where(ProvisionRecord.scope == f"customer:{customer_id}")
                                        .order_by(ProvisionRecord.id)),
    }


def _media_ids(inbound: list[dict[str, Any]]) -> list[str]:
    """The ids of the messages (images, files ...) the customer sent: what media_contents is keyed by."""
    ids = []
    for event in inbound:
        message = (event.get("payload") or {}).get("message")
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            ids.append(message["id"])
    return ids


# Tables the export and the erasure reach by a customer id or the LINE user id (the test compares
# this with every table of the models that has a customer_id or line_user_id column).
COVERED_TABLES = frozenset({
    "customers", "customer_identities", "customer_tags", "interactions", "orders", "order_items", "customer_metrics",
    "coupon_grants", "conversations", "conversation_notes", "deliveries", "campaign_recipients", "campaign_clicks",
    "sequence_enrolments", "sequence_segment_members", "flow_states", "api_events", "inbound_events", "media_contents",
    "friend_source_attributions", "friend_source_visits", "merge_candidates", "customer_merges", "data_requests",
    "provision_records", "consent_records", "automation_causes", "automation_firings", "automation_segment_members",
    "audit_customer_reads",
})


# -- CSV ---------------------------------------------------------------------------------------


def safe_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_RISKY) else text


def section_csv(rows: list[dict[str, Any]] | dict[str, Any]) -> bytes:
    rows = [rows] if isinstance(rows, dict) else rows
    columns: list[str] = []
    for row in rows:
        columns.extend(name for name in row if name not in columns)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([safe_cell(row.get(name)) for name in columns] for row in rows)
    return (BOM + out.getvalue()).encode("utf-8")


def as_zip(doc: dict[str, Any]) -> bytes:
    """The document as a zip of one CSV per section (see the module's docstring)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, value in doc.items():
            if isinstance(value, (dict, list)):
                archive.writestr(f"{name}.csv", section_csv(value))
    return buffer.getvalue()


def filename(customer_id: int, format: str) -> str:
    return f"customer-{customer_id}.{'zip' if format == 'csv' else 'json'}"
