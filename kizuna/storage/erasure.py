"""Erase a customer (APPI 消去 / 利用停止 by deletion): anonymise everything that names them or
holds what they typed, everywhere, in one transaction; keep what names nobody.

What goes: the personal fields of the customer row (names, picture, status message, birthday,
gender, prefecture, phone, e-mail) and its LINE user id (NULL: a later follow by the same LINE
account creates a fresh customer, with nothing of the old one); identities (e-mail, phone,
external ids, LINE id); tags; timeline texts and payloads; conversation notes; sent message
bodies (deliveries) and the campaigns' copies of the LINE id; the raw webhook payloads of the
customer's events (they hold the userId and what was typed); the flow state; media the customer
sent; cart events (through the timeline that says whose they were); the events the shop's
systems sent (their data); merge candidates (they hold an e-mail or phone); what a merge filled
in; friend-source attributions and visits (keyed by the LINE id); the orders' links back to
the shop's systems (external id and fingerprint).

What stays, naming nobody: the row itself as a pseudonymous id, order amounts, dates and items,
coupon grants (counts), campaign recipients and clicks (counts), sequence enrolments (figures),
customer metrics, conversations' statuses and times, the request ledger, provision records, and
the audit log, which is append-only and pseudonymous (it names customers by id).

Customers merged into this one (the same person, merged by an admin) are erased with it.

Embedded SQLite: the erase runs with `PRAGMA secure_delete=ON` (freed cells and pages are
overwritten with zeros), and `checkpoint` (after the commit) runs `wal_checkpoint(TRUNCATE)`,
so the old values do not linger in the file's free space or in its WAL: a shop may hand the
file over. PostgreSQL keeps dead row versions until VACUUM; its routine autovacuum reclaims them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from .errors import Conflict, NotFound
from .models import (
    ApiEvent, AutomationCause, AutomationFiring, AutomationSegmentMember, CampaignRecipient, CartEvent, Conversation, ConversationNote, Customer, CustomerIdentity, CustomerMerge,
    CustomerTag, Delivery, DeliveryStatus, EnrolmentStatus, ExitReason, FlowState, FriendSourceAttribution, FriendSourceVisit, InboundEvent,
    Interaction, MediaContent, MergeCandidate, Order, SequenceEnrolment, SequenceSegmentMember,
)

log = logging.getLogger("kizuna.erasure")
ERASED_NOTE = ""  # what an erased note's text becomes (the column is NOT NULL)

# The customer row's personal fields (CustomerBase), set to None.
PERSONAL_COLUMNS = (
    "line_user_id", "display_name", "picture_url", "status_message", "language", "full_name", "name_kana", "birthday",
    "gender", "prefecture", "phone", "email",
)


@dataclass
class Erased:
    """What was erased, by table: counts only (this goes into the ledger and the audit log)."""

    customer_ids: list[int]
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, count: int | None) -> None:
        if count:
            self.rows[table] = self.rows.get(table, 0) + count


async def erase_customer(session: AsyncSession, customer_id: int, *, actor: str, now: datetime) -> Erased:
    """Anonymise the customer everywhere, in the caller's transaction (the caller commits, then
    calls `checkpoint`). NotFound if there is no such customer; Conflict if it was erased before
    or was merged into another (erase that one: it is the person now). `actor` is only for the log."""
    customer = await session.get(Customer, customer_id, with_for_update=True)
    if customer is None:
        raise NotFound("no such customer")
    if customer.erased_at is not None:
        raise Conflict("already_erased", "this customer was erased already")
    if customer.merged_into_id is not None:
        raise Conflict("merged", f"this customer was merged into customer {customer.merged_into_id}: erase that one")
    if session.bind.dialect.name == "sqlite":
        await session.execute(sa.text("PRAGMA secure_delete=ON"))
    ids = [customer_id, *(await _merged_into(session, customer_id))]
    erased = Erased(customer_ids=ids)
    line_ids = [value for value in (await session.execute(
        sa.select(Customer.line_user_id).where(Customer.id.in_(ids), Customer.line_user_id.is_not(None)))).scalars()]
    line_ids += [value for value in (await session.execute(
        sa.select(CustomerIdentity.value).where(CustomerIdentity.customer_id.in_(ids), CustomerIdentity.kind == "line_user_id")
    )).scalars() if value not in line_ids]

    await _events_and_media(session, erased, ids, line_ids)
    await _timeline(session, erased, ids)
    await _support(session, erased, ids)
    await _marketing(session, erased, ids, now=now)
    await _links(session, erased, ids, line_ids)

    values = {column: None for column in PERSONAL_COLUMNS}
    result = await session.execute(sa.update(Customer).where(Customer.id.in_(ids)).values(
        **values, followed=False, blocked=False, registered=False, marketing_opt_in=False, erased_at=now,
        processing_stopped_at=sa.func.coalesce(Customer.processing_stopped_at, now),
    ))
    erased.add("customers", result.rowcount)
    log.info("erasure: customer %s (with %s merged) erased by %s: %s", customer_id, len(ids) - 1, actor, erased.rows)
    return erased


async def _merged_into(session: AsyncSession, customer_id: int) -> list[int]:
    """The customers merged into this one, and into those, ... (the same person)."""
    found: list[int] = []
    frontier = [customer_id]
    while frontier:
        frontier = list((await session.execute(sa.select(Customer.id).where(Customer.merged_into_id.in_(frontier)))).scalars())
        frontier = [cid for cid in frontier if cid not in found and cid != customer_id]
        found += frontier
    return found


async def _events_and_media(session: AsyncSession, erased: Erased, ids: list[int], line_ids: list[str]) -> None:
    """The raw webhook events of the customer's LINE ids, and the media they sent."""
    if not line_ids:
        return
    mine = sa.or_(InboundEvent.line_user_id.in_(line_ids), InboundEvent.source_key.in_(line_ids))
    payloads = (await session.execute(sa.select(InboundEvent.payload).where(mine))).scalars()
    message_ids = {message["id"] for payload in payloads
                   if isinstance(message := (payload or {}).get("message"), dict) and isinstance(message.get("id"), str)}
    # (media sent by the customer are also named by their timeline rows' payloads)
    for payload in (await session.execute(sa.select(Interaction.payload).where(
            Interaction.customer_id.in_(ids), Interaction.direction == "in", Interaction.payload.is_not(None)))).scalars():
        message = (payload or {}).get("message")
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            message_ids.add(message["id"])
    if message_ids:
        result = await session.execute(sa.delete(MediaContent).where(MediaContent.message_id.in_(sorted(message_ids))))
        erased.add("media_contents", result.rowcount)
    # source_key orders a source's events; an erased customer's stay in order under a key naming nobody.
    result = await session.execute(sa.update(InboundEvent).where(mine).values(
        payload={}, line_user_id=None, last_error=None, source_key=f"erased:{ids[0]}"))
    erased.add("inbound_events", result.rowcount)


async def _timeline(session: AsyncSession, erased: Erased, ids: list[int]) -> None:
    cart = (await session.execute(sa.select(Interaction.payload).where(
        Interaction.customer_id.in_(ids), Interaction.kind.like("cart.%")))).scalars()
    cart_ids = sorted({payload["external_id"] for payload in cart if isinstance(payload, dict) and payload.get("external_id")})
    if cart_ids:
        result = await session.execute(sa.delete(CartEvent).where(CartEvent.external_id.in_(cart_ids)))
        erased.add("cart_events", result.rowcount)
    # An inbound row's sender_id is the customer's LINE id; staff and bot senders name nobody personal.
    await session.execute(sa.update(Interaction).where(Interaction.customer_id.in_(ids), Interaction.sender_type == "customer")
                          .values(sender_id=None))
    result = await session.execute(sa.update(Interaction).where(Interaction.customer_id.in_(ids)).values(text=None, payload=None))
    erased.add("interactions", result.rowcount)
    # What was still to be sent is not sent any more (its body is gone): failed, saying why.
    await session.execute(sa.update(Delivery).where(
        Delivery.customer_id.in_(ids), Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENDING]),
    ).values(status=DeliveryStatus.FAILED))
    result = await session.execute(sa.update(Delivery).where(Delivery.customer_id.in_(ids)).values(
        messages=[], effect=None, reply_token=None, last_error=None))
    erased.add("deliveries", result.rowcount)
    result = await session.execute(sa.delete(FlowState).where(FlowState.customer_id.in_(ids)))
    erased.add("flow_states", result.rowcount)


async def _support(session: AsyncSession, erased: Erased, ids: list[int]) -> None:
    conversations = sa.select(Conversation.id).where(Conversation.customer_id.in_(ids))
    result = await session.execute(sa.update(ConversationNote).where(ConversationNote.conversation_id.in_(conversations))
                                   .values(text=ERASED_NOTE))
    erased.add("conversation_notes", result.rowcount)
    result = await session.execute(sa.update(Conversation).where(Conversation.customer_id.in_(ids)).values(labels=[]))
    erased.add("conversations", result.rowcount)
    result = await session.execute(sa.delete(CustomerTag).where(CustomerTag.customer_id.in_(ids)))
    erased.add("customer_tags", result.rowcount)


async def _marketing(session: AsyncSession, erased: Erased, ids: list[int], *, now: datetime) -> None:
    result = await session.execute(sa.update(CampaignRecipient).where(CampaignRecipient.customer_id.in_(ids))
                                   .values(line_user_id=None, reason=None))
    erased.add("campaign_recipients", result.rowcount)
    result = await session.execute(sa.update(SequenceEnrolment).where(
        SequenceEnrolment.customer_id.in_(ids), SequenceEnrolment.status == EnrolmentStatus.ACTIVE,
    ).values(status=EnrolmentStatus.EXITED, exit_reason=ExitReason.OPTED_OUT, finished_at=now, next_due_at=None))
    erased.add("sequence_enrolments", result.rowcount)
    result = await session.execute(sa.delete(SequenceSegmentMember).where(SequenceSegmentMember.customer_id.in_(ids)))
    erased.add("sequence_segment_members", result.rowcount)
    result = await session.execute(sa.update(ApiEvent).where(ApiEvent.customer_id.in_(ids)).values(data={}))
    erased.add("api_events", result.rowcount)
    # Automation causes hold a tag, an event's data; firings what each action did (a text sent).
    result = await session.execute(sa.update(AutomationCause).where(AutomationCause.customer_id.in_(ids)).values(value=None, data={}))
    erased.add("automation_causes", result.rowcount)
    result = await session.execute(sa.update(AutomationFiring).where(AutomationFiring.customer_id.in_(ids)).values(outcomes=[]))
    erased.add("automation_firings", result.rowcount)
    result = await session.execute(sa.delete(AutomationSegmentMember).where(AutomationSegmentMember.customer_id.in_(ids)))
    erased.add("automation_segment_members", result.rowcount)
    # The shop's order id and the hash of what its system sent link back to the person there.
    result = await session.execute(sa.update(Order).where(Order.customer_id.in_(ids)).values(
        external_id=sa.literal("erased-") + sa.cast(Order.id, sa.String), fingerprint="", store=None))
    erased.add("orders", result.rowcount)


async def _links(session: AsyncSession, erased: Erased, ids: list[int], line_ids: list[str]) -> None:
    result = await session.execute(sa.delete(CustomerIdentity).where(CustomerIdentity.customer_id.in_(ids)))
    erased.add("customer_identities", result.rowcount)
    result = await session.execute(sa.delete(MergeCandidate).where(sa.or_(
        MergeCandidate.customer_id.in_(ids), MergeCandidate.other_customer_id.in_(ids))))
    erased.add("merge_candidates", result.rowcount)
    result = await session.execute(sa.update(CustomerMerge).where(sa.or_(
        CustomerMerge.customer_id.in_(ids), CustomerMerge.merged_customer_id.in_(ids))).values(filled={}))
    erased.add("customer_merges", result.rowcount)
    attributions = sa.or_(FriendSourceAttribution.customer_id.in_(ids),
                          *([FriendSourceAttribution.line_user_id.in_(line_ids)] if line_ids else []))
    result = await session.execute(sa.delete(FriendSourceAttribution).where(attributions))
    erased.add("friend_source_attributions", result.rowcount)
    if line_ids:
        result = await session.execute(sa.delete(FriendSourceVisit).where(FriendSourceVisit.line_user_id.in_(line_ids)))
        erased.add("friend_source_visits", result.rowcount)


async def checkpoint(engine: AsyncEngine) -> bool:
    """Embedded SQLite, after the erase committed: move the WAL into the file and truncate it, so
    the erased values are in neither (secure_delete zeroed them in the file). True when the WAL
    was emptied; False when a reader held it (the next checkpoint finishes it). A no-op elsewhere."""
    if engine.dialect.name != "sqlite":
        return True
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection  # aiosqlite: outside SQLAlchemy's transaction (BEGIN IMMEDIATE)
        cursor = await driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy, _log, _done = await cursor.fetchone()
        await cursor.close()
    if busy:
        log.warning("erasure: the WAL checkpoint was busy; the next one completes it")
    return not busy
