"""Data-subject requests (APPI Art. 33-35; issue 16 part 3): export (開示), correct (訂正), stop
use (利用停止) and resume, erase (消去), each answered at once and written to the request ledger
(storage/data_requests.py) with the audit log; every export also gets a third-party provision
record (part 5). The REST API and the console call these same functions.

All of them run synchronously: each touches one customer's rows (bounded by that customer's
history), so the API answers 200 with the ledger row, status `done`.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import audit, audit_reads, customer_export, customers, data_requests, erasure
from kizuna.storage import sequences as sequence_store
from kizuna.storage.db import transaction
from kizuna.storage.errors import Conflict, Invalid
from kizuna.storage.models import (
    PROVISION_TEXT_MAX, Customer, DataRequest, DataRequestKind, Direction, Interaction, RequestChannel,
)

from .registration import validators

JST = timezone(timedelta(hours=9))
EXPORT_FORMATS = ("json", "csv")
# Who receives a customer's own export unless staff say otherwise: the customer (disclosure).
DATA_SUBJECT = "本人（開示請求）"
DISCLOSURE = "本人からの開示請求への回答"


@dataclass
class Exported:
    request: DataRequest
    format: str
    body: bytes  # JSON (UTF-8) or a zip of CSVs
    filename: str

    @property
    def content_type(self) -> str:
        return "application/zip" if self.format == "csv" else "application/json"


def _text(field: str, value: str | None, default: str) -> str:
    if len(value or "") > PROVISION_TEXT_MAX or any(unicodedata.category(char) == "Cc" for char in value or ""):
        raise Invalid(field, f"at most {PROVISION_TEXT_MAX} characters, no control characters")
    # (NFKC may lengthen a little: ㍻ is 平成; the column holds PROVISION_TEXT_MAX)
    text = " ".join(unicodedata.normalize("NFKC", value or "").split())[:PROVISION_TEXT_MAX]
    return text or default


def _check_format(format: str) -> str:
    if format not in EXPORT_FORMATS:
        raise Invalid("format", "must be json or csv")
    return format


async def _live_customer(session: AsyncSession, customer_id: int) -> Customer:
    customer = await customers.get_existing(session, customer_id)
    if customer.erased_at is not None:
        raise Conflict("erased", "this customer was erased")
    return customer


def _timeline(session: AsyncSession, customer: Customer, kind: str, actor: audit.Actor, now: datetime, request: DataRequest) -> None:
    session.add(Interaction(customer_id=customer.id, direction=Direction.SYS, kind=kind, sender_type="staff",
                            sender_id=actor.label[:64], created_at=now, payload={"data_request_id": request.id}))


async def export(
    sessions: async_sessionmaker[AsyncSession], customer_id: int, *, format: str, actor: audit.Actor, channel: RequestChannel,
    now: datetime, recipient: str | None = None, purpose: str | None = None,
) -> Exported:
    """The customer's whole record (customer_export.py), with its ledger row, provision record and
    audit entry committed before it is handed out."""
    _check_format(format)
    recipient, purpose = _text("recipient", recipient, DATA_SUBJECT), _text("purpose", purpose, DISCLOSURE)
    async with transaction(sessions) as session:
        await customers.get_existing(session, customer_id)
        doc = await customer_export.document(session, customer_id, now=now)
        request = await data_requests.add(session, kind=DataRequestKind.EXPORT, customer_id=customer_id, actor=actor.label,
                                          channel=channel, now=now, outcome=f"exported as {format}")
        data_requests.record_provision(session, data_requests.Provision(
            scope=f"customer:{customer_id}", format=format, recipient=recipient, purpose=purpose, customer_ids=(customer_id,),
        ), actor=actor.label, now=now, data_request_id=request.id)
        # One customer's whole record read: listed by the breach report with the other reads.
        await audit_reads.read(session, actor, audit.Action.CUSTOMER_EXPORTED, [customer_id], target=f"customer:{customer_id}",
                               at=now, format=format, data_request_id=request.id)
    doc["data_requests"].append(customer_export.as_dict(request))
    body = customer_export.as_zip(doc) if format == "csv" else _json(doc)
    return Exported(request, format, body, customer_export.filename(customer_id, format))


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")


# -- correct ------------------------------------------------------------------------------------

def _parse(column: str, value: Any, today: date) -> Any:
    """A staff member's correction, read as the registration reads the customer's own answer."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None  # cleared
    if not isinstance(value, str):
        raise Invalid(column, "must be text")
    try:
        match column:
            case "full_name":
                return validators.parse_name(value)
            case "birthday":
                return validators.parse_birthday(value, today)
            case "gender":
                return str(validators.parse_gender(value))
            case "prefecture":
                return validators.parse_prefecture(value)
            case "phone":
                return validators.parse_phone(value)
            case "email":
                return validators.parse_email(value)
    except validators.InvalidInput as error:
        raise Invalid(column, error.message_ja) from None
    raise Invalid(column, "is not a field that can be corrected")


async def correct(
    sessions: async_sessionmaker[AsyncSession], customer_id: int, changes: dict[str, Any], *, actor: audit.Actor,
    channel: RequestChannel, now: datetime,
) -> DataRequest:
    """Correct registered details (customers.PROFILE_COLUMNS): all checked first, then applied
    together with the ledger row; the audit log names the fields, not their values."""
    if not changes:
        raise Invalid("changes", "name at least one field to correct")
    unknown = sorted(set(changes) - set(customers.PROFILE_COLUMNS))
    if unknown:
        raise Invalid(unknown[0], f"is not a field that can be corrected ({', '.join(customers.PROFILE_COLUMNS)})")
    today = now.astimezone(JST).date()
    parsed = {column: _parse(column, value, today) for column, value in changes.items()}
    async with transaction(sessions) as session:
        customer = await _live_customer(session, customer_id)
        changed = [column for column, value in parsed.items() if customers.update_profile(customer, column, value)]
        outcome = f"corrected: {', '.join(changed)}" if changed else "nothing differed"
        request = await data_requests.add(session, kind=DataRequestKind.CORRECT, customer_id=customer_id, actor=actor.label,
                                          channel=channel, now=now, outcome=outcome)
        _timeline(session, customer, "data_request.correct", actor, now, request)
        audit.record(session, actor, audit.Action.CUSTOMER_CORRECTED, target=customers.audit_target(customer),
                     fields=changed, data_request_id=request.id)
    return request


# -- stop and resume ----------------------------------------------------------------------------

async def stop(sessions: async_sessionmaker[AsyncSession], customer_id: int, *, actor: audit.Actor, channel: RequestChannel,
               now: datetime) -> DataRequest:
    """Stop using the customer's data for marketing: no campaign (the snapshot and the send leave
    them out as opted out), no sequence step (active enrolments end now), no trigger enrols them.
    The bot still answers what they themselves send. Conflict when already stopped."""
    async with transaction(sessions) as session:
        customer = await _live_customer(session, customer_id)
        if customer.processing_stopped_at is not None:
            raise Conflict("already_stopped", "the use of this customer's data is stopped already")
        customer.processing_stopped_at = now
        ended = await sequence_store.on_processing_stopped(session, customer_id, now=now)
        request = await data_requests.add(session, kind=DataRequestKind.STOP, customer_id=customer_id, actor=actor.label,
                                          channel=channel, now=now,
                                          outcome=f"campaigns, sequences and triggers suppressed; {ended} sequence enrolments ended")
        _timeline(session, customer, "data_request.stop", actor, now, request)
        audit.record(session, actor, audit.Action.CUSTOMER_PROCESSING_STOPPED, target=customers.audit_target(customer),
                     data_request_id=request.id)
    return request


async def resume(sessions: async_sessionmaker[AsyncSession], customer_id: int, *, actor: audit.Actor, channel: RequestChannel,
                 now: datetime) -> DataRequest:
    """Lift a stop (the customer asked again): later campaigns and triggers reach them again."""
    async with transaction(sessions) as session:
        customer = await _live_customer(session, customer_id)
        if customer.processing_stopped_at is None:
            raise Conflict("not_stopped", "the use of this customer's data is not stopped")
        customer.processing_stopped_at = None
        request = await data_requests.add(session, kind=DataRequestKind.RESUME, customer_id=customer_id, actor=actor.label,
                                          channel=channel, now=now, outcome="use resumed")
        _timeline(session, customer, "data_request.resume", actor, now, request)
        audit.record(session, actor, audit.Action.CUSTOMER_PROCESSING_RESUMED, target=customers.audit_target(customer),
                     data_request_id=request.id)
    return request


# -- erase --------------------------------------------------------------------------------------

async def erase(sessions: async_sessionmaker[AsyncSession], customer_id: int, *, actor: audit.Actor, channel: RequestChannel,
                now: datetime) -> DataRequest:
    """Anonymise the customer everywhere (storage/erasure.py) with the ledger row and the audit
    entry in the same transaction; then, on embedded SQLite, empty the WAL."""
    async with transaction(sessions) as session:
        erased = await erasure.erase_customer(session, customer_id, actor=actor.label, now=now)
        counts = ", ".join(f"{table} {count}" for table, count in sorted(erased.rows.items()))
        request = await data_requests.add(session, kind=DataRequestKind.ERASE, customer_id=customer_id, actor=actor.label,
                                          channel=channel, now=now, outcome=f"anonymised: {counts}")
        audit.record(session, actor, audit.Action.CUSTOMER_ERASED, target=f"customer:{customer_id}",
                     data_request_id=request.id, merged_customers=erased.customer_ids[1:], rows=erased.rows)
    await erasure.checkpoint(sessions.kw["bind"])
    return request
