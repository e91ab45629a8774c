"""Support: a customer handed to a person, and what staff do in the conversation.

`handoff()` is the one way a customer reaches a person, whoever asks for it: the
担当者 fallback of every flow, the FAQ's 「担当者と話す」 button and keyword, a complaint,
or the rule "questions left unanswered in a row". It opens (or reopens) the customer's
conversation as pending, records `conversation.bot_handoff`, tells the customer when a
person will answer (now, or when the shop next opens), and publishes the change.

While a person owns the conversation (pending or open) the bot stays silent to free
text: `owned_by_person()` says so to the message handler, which only records and
publishes the message. 「ボットに戻る」 hands the customer back, as staff's resolve does.

`SupportDesk` holds staff's actions (take, assign, reply, note, resolve, send a coupon
or an FAQ answer, mark read, tag the customer, ...) for the REST API and the console
alike. Whatever staff send the customer is a push with a retry key through the same
outbox as the bot's replies; it is sent right after the commit by the process's sender
(`send`), and by the sweeper if that process dies first. Every action publishes its live
update after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import audit, canned, conversations, coupons, customers, deliveries, interactions, tags, texts
from kizuna.storage import faq as faq_store
from kizuna.storage import staff as staff_store
from kizuna.storage.audit import Actor
from kizuna.storage.db import transaction
from kizuna.storage.errors import Conflict, Invalid, NotFound
from kizuna.storage.models import (
    Conversation, ConversationNote, ConversationStatus, Coupon, CouponGrant, Customer, Delivery, DeliveryKind, Direction, Interaction,
)
from kizuna.storage.roles import CONVERSATION_ROLES
from kizuna.storage.types import utcnow

from .coupons import coupon_flex, load_words
from .engine import HANDOFF_WORDS, Command, FlowContext, Input, Keyword, Postback
from .faq.hours import HoursInvalid, describe_when, parse_schedule

log = logging.getLogger("kizuna.support")

# A customer who asks again within this time after a resolve gets the same conversation back.
REOPEN_WITHIN = timedelta(days=1)
HANDBACK_WORDS = Keyword("ボットに戻る", "ボットに戻す", "自動応答に戻る", "back to bot")
CSAT_SCORES = (5, 4, 3, 2, 1)

texts.register({
    "support_handoff": {
        "ja": "担当者におつなぎします。順番にご返信しますので、このままお待ちください。",
        "en": "We're connecting you with a person. They will reply in turn; please wait a moment.",
    },
    "support_handoff_closed": {
        "ja": "ただいま営業時間外です。{when}以降、担当者から順番にご返信します。",
        "en": "We're closed right now. A person will reply in turn from {when}.",
    },
    "support_handoff_closed_later": {
        "ja": "ただいま営業時間外です。次の営業日に担当者から順番にご返信します。",
        "en": "We're closed right now. A person will reply in turn on our next business day.",
    },
    "support_still_waiting": {
        "ja": "担当者からのご返信まで、このままお待ちください。自動応答に戻る場合は「ボットに戻る」とお送りください。",
        "en": "A person will reply soon. To go back to automatic answers, send \"back to bot\".",
    },
    "support_handed_back": {
        "ja": "自動応答に戻りました。ご質問があれば、いつでもお送りください。",
        "en": "You're back with automatic answers. Send us a question any time.",
    },
    "support_csat_question": {
        "ja": "今回の対応はいかがでしたか？\n5段階でお選びください（5がいちばん満足）。",
        "en": "How did we do? Please choose from 1 to 5 (5 is best).",
    },
    "support_csat_thanks": {
        "ja": "ご評価ありがとうございました。今後の対応に役立てます。",
        "en": "Thank you for your rating. It helps us do better.",
    },
})


def conversation_update(conversation: Conversation) -> dict:
    """What a watching console needs to know after the commit (storage/broadcast.py)."""
    return {
        "type": "conversation", "conversation_id": conversation.id, "customer_id": conversation.customer_id,
        "status": str(conversation.status), "assignee_id": conversation.assignee_id,
    }


def message_update(conversation: Conversation, interaction_id: int | None = None) -> dict:
    return {"type": "message", "conversation_id": conversation.id, "customer_id": conversation.customer_id, "interaction_id": interaction_id}


def customer_update(customer_id: int) -> dict:
    """The customer's details changed (tags ...): a page showing them re-reads them."""
    return {"type": "customer", "customer_id": customer_id}


# -- the customer's side (called by flows and handlers, inside the event's transaction) -----


async def handoff(ctx: FlowContext, *, reason: str) -> Conversation:
    """Hand the customer to a person (see the module docstring)."""
    now = _now(ctx)
    conversation, what = await conversations.hand_off(ctx.session, ctx.customer.id, reason=reason, now=now, reopen_within=REOPEN_WITHIN)
    if what == "waiting":
        await ctx.reply_text("support_still_waiting")
        return conversation
    await ctx.record("conversation.bot_handoff", {"conversation_id": conversation.id, "reason": reason, "how": what})
    note = await out_of_hours_note(ctx, now)
    if note is None:
        await ctx.reply_text("support_handoff")
    else:
        ctx.reply({"type": "text", "text": note})
    ctx.publish(conversation_update(conversation))
    return conversation


async def owned_by_person(ctx: FlowContext) -> Conversation | None:
    """The conversation a person owns or must take, if the customer is in one."""
    return await conversations.active_for(ctx.session, ctx.customer.id)


async def customer_message(ctx: FlowContext, conversation: Conversation, event: Input) -> None:
    """Free text (or a sticker, an image...) while a person owns the conversation: the bot
    says nothing; 「ボットに戻る」 hands the customer back, and asking for a person again
    gets a word that one will answer."""
    if HANDOFF_WORDS.matches(event):
        await ctx.reply_text("support_still_waiting")
        return
    if HANDBACK_WORDS.matches(event):
        await conversations.resolve(ctx.session, conversation.id, _now(ctx))
        await ctx.record("conversation.handed_back", {"conversation_id": conversation.id, "by": "customer"})
        await ctx.reply_text("support_handed_back")
        conversation.status = ConversationStatus.RESOLVED
        ctx.publish(conversation_update(conversation))
        return
    ctx.publish(message_update(conversation))


async def out_of_hours_note(ctx: FlowContext, now: datetime) -> str | None:
    """When the shop is closed now (its business hours, set with the FAQ): what the
    customer is told instead of "wait a moment"."""
    settings = await faq_store.read_settings(ctx.session)
    if settings.weekly_hours is None:
        return None
    try:
        schedule = parse_schedule(settings.weekly_hours, settings.holidays, await faq_store.shop_timezone(ctx.session))
    except HoursInvalid:
        log.warning("stored business hours are invalid; treated as always open")
        return None
    if schedule is None or schedule.is_open(now):
        return None
    opening = schedule.next_opening(now)
    if opening is None:
        return await ctx.text("support_handoff_closed_later")
    return await ctx.text("support_handoff_closed", when=describe_when(opening, now, ctx.locale))


async def _record_csat(ctx: FlowContext, event: Input) -> None:
    action = event.action
    try:
        conversation_id, score = int(action.get("conversation", "")), int(action.get("score", ""))
    except ValueError:
        return
    conversation = await conversations.get(ctx.session, conversation_id)
    if conversation is None or conversation.customer_id != ctx.customer.id or score not in CSAT_SCORES:
        return
    if await conversations.record_csat(ctx.session, conversation_id, score, _now(ctx)):
        await ctx.record("conversation.csat", {"conversation_id": conversation_id, "score": score})
        await ctx.reply_text("support_csat_thanks")
        ctx.publish(conversation_update(conversation))  # a console showing it shows the rating


# The CSAT buttons work whatever the customer is doing.
CSAT = Command(name="support.csat", entry_points=(Postback("csat"),), run=_record_csat)


def _now(ctx: FlowContext) -> datetime:
    clock = getattr(ctx.services, "clock", None)
    return clock() if clock is not None else (ctx.now or utcnow())


# -- the staff's side (REST API and console) ----------------------------------------------


def _author(actor: Actor) -> str:
    """How a message or note names who wrote it: a staff member, or an API token."""
    return f"staff:{actor.staff_id}" if actor.staff_id is not None else f"token:{actor.label}"[:64]


@dataclass(frozen=True)
class CouponSent:
    grant: CouponGrant
    coupon: Coupon
    created: bool  # False: the customer had it already (one per customer): sent again


class SupportDesk:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        send: Callable[[int], Awaitable[object]],
        publish: Callable[[dict], Awaitable[None]],
        clock: Callable[[], datetime] = utcnow,
        public_url: str = "",
    ) -> None:
        self.sessions = sessions
        self.send = send
        self.publish = publish
        self.clock = clock
        # Coupon QR images in the messages staff send point here.
        self.public_url = public_url
        self._background: set[asyncio.Task] = set()

    # -- the queue ------------------------------------------------------------------------

    async def take(self, conversation_id: int, staff_id: int) -> Conversation:
        """Exactly one of two staff taking one pending conversation at once wins."""
        async with transaction(self.sessions) as session:
            await self._get(session, conversation_id)
            if not await conversations.take(session, conversation_id, staff_id):
                conversation = await conversations.get(session, conversation_id)
                raise Conflict("already_taken", _taken_message(conversation), assignee_id=conversation.assignee_id)
            conversation = await conversations.get(session, conversation_id)
        await self.publish(conversation_update(conversation))
        return conversation

    async def assign(self, conversation_id: int, staff_id: int) -> Conversation:
        """Give the conversation to a colleague who answers conversations (admin or support)."""
        async with transaction(self.sessions) as session:
            await self._get(session, conversation_id)
            member = await staff_store.get(session, staff_id)
            if member is None or member.disabled_at is not None or member.role not in CONVERSATION_ROLES:
                raise Invalid("assignee_id", "assign to an active admin or support member")
            if not await conversations.assign(session, conversation_id, staff_id):
                raise Conflict("resolved", "the conversation is resolved")
            conversation = await conversations.get(session, conversation_id)
        await self.publish(conversation_update(conversation))
        return conversation

    async def label(self, conversation_id: int, labels: list[str], priority: str) -> Conversation:
        async with transaction(self.sessions) as session:
            await self._get(session, conversation_id)
            await conversations.set_labels(session, conversation_id, labels, priority)
            conversation = await conversations.get(session, conversation_id)
        await self.publish(conversation_update(conversation))
        return conversation

    # -- writing to the customer (each a push through the outbox) ------------------------------

    async def reply(self, conversation_id: int, actor: Actor, text: str) -> Interaction:
        """Send `text` to the customer as the shop (a push, through the outbox)."""
        text = _message_text(text)
        async with transaction(self.sessions) as session:
            conversation = await self._get(session, conversation_id)
            customer = await _reachable(session, conversation)
            delivery = await self._push(session, conversation, customer, actor, [{"type": "text", "text": text}])
            [interaction] = await interactions.of_delivery(session, delivery.id)
        await self._sent(conversation, delivery, interaction)
        return interaction

    async def reply_canned(self, conversation_id: int, actor: Actor, canned_id: int) -> Interaction:
        """Send a canned response as it is, its `{name}` filled in for this customer."""
        return await self.reply(conversation_id, actor, await self.canned_text(conversation_id, canned_id))

    async def canned_text(self, conversation_id: int, canned_id: int) -> str:
        async with self.sessions() as session:
            conversation = await self._get(session, conversation_id)
            customer = await customers.get_existing(session, conversation.customer_id)
            return canned.fill((await canned.get(session, canned_id)).text, customer)

    async def send_faq_answer(self, conversation_id: int, actor: Actor, faq_id: str) -> Interaction:
        """The FAQ entry's answer, exactly as the bot would send it."""
        async with transaction(self.sessions) as session:
            entry = await faq_store.get_entry(session, faq_id)
            if entry is None or not entry.enabled:
                raise NotFound("no such FAQ entry")
            conversation = await self._get(session, conversation_id)
            customer = await _reachable(session, conversation)
            message = {"type": "text", "text": _message_text(entry.answer)}
            delivery = await self._push(session, conversation, customer, actor, [message], "faq", faq_id)
            [interaction] = await interactions.of_delivery(session, delivery.id)
        await self._sent(conversation, delivery, interaction)
        return interaction

    async def send_coupon(self, conversation_id: int, actor: Actor, coupon_id: int) -> CouponSent:
        """Give the customer the coupon (staff's path: `coupons.issue_by_staff`, audited) and
        send it as the bot does, a Flex message with its QR code. A one-per-customer coupon
        they have and can still use is sent again; one used or expired is refused."""
        now = self.clock()
        async with transaction(self.sessions) as session:
            conversation = await self._get(session, conversation_id)
            customer = await _reachable(session, conversation)
            result = await coupons.issue_by_staff(session, coupon_id=coupon_id, customer_id=customer.id, now=now, by=_author(actor))
            grant, coupon = result.grant, result.coupon
            state = coupons.grant_state(grant, now)
            if state != "issued":
                raise Conflict(f"already_{state}", f"the customer had this coupon already, and it is {state}")
            if result.created:
                audit.record(session, actor, audit.Action.COUPON_GRANTED, target=customers.audit_target(customer),
                             coupon=coupon.title, coupon_id=coupon.id, code=grant.code)
            locale = texts.locale_for(customer.language)
            shop = await coupons.get_shop(session)
            flex = coupon_flex(grant, coupon, public_url=self.public_url, locale=locale,
                               words=await load_words(session, locale), tz=coupons.zone(shop.timezone))
            delivery = await self._push(session, conversation, customer, actor, [flex], "coupon", grant.id)
            [interaction] = await interactions.of_delivery(session, delivery.id)
        await self._sent(conversation, delivery, interaction)
        return CouponSent(grant, coupon, result.created)

    async def note(self, conversation_id: int, actor: Actor, text: str) -> ConversationNote:
        """A private note: shown to staff beside the messages, never sent."""
        text = _message_text(text)
        async with transaction(self.sessions) as session:
            conversation = await self._get(session, conversation_id)
            note = await conversations.add_note(session, conversation_id, _author(actor), text)
        await self.publish(message_update(conversation))
        return note

    async def resolve(self, conversation_id: int, actor: Actor, *, ask_csat: bool = True) -> Conversation:
        """Hand the customer back to the bot; with `ask_csat`, a one-tap 1-5 question."""
        now = self.clock()
        async with transaction(self.sessions) as session:
            conversation = await self._get(session, conversation_id)
            if not await conversations.resolve(session, conversation_id, now):
                raise Conflict("resolved", "the conversation is resolved already")
            customer = await customers.get(session, conversation.customer_id)
            session.add(Interaction(
                customer_id=conversation.customer_id, direction="sys", kind="conversation.resolved",
                payload={"conversation_id": conversation_id, "by": actor.label, "csat_asked": ask_csat},
                sender_type="staff", sender_id=_author(actor),
            ))
            delivery = None
            if ask_csat and customer is not None and not customer.blocked:
                delivery = await deliveries.create(
                    session, customer_id=customer.id, messages=[await _csat_question(session, customer, conversation_id)],
                    sender_type="bot", retry_key=deliveries.retry_key_for("csat", conversation_id, now.isoformat()),
                )
            conversation = await conversations.get(session, conversation_id)
        if delivery is not None:
            await self.send(delivery.id)
        await self.publish(conversation_update(conversation))
        return conversation

    # -- LINE's read receipt -------------------------------------------------------------------

    async def mark_read(self, conversation_id: int) -> bool:
        """Staff opened the conversation: mark the customer's chat read on LINE (既読), up to
        their latest message, through the outbox (kind `mark_read`). Once per message; best
        effort and in the background, so opening the page never waits for LINE. True when
        a mark was queued."""
        async with transaction(self.sessions) as session:
            conversation = await self._get(session, conversation_id)
            customer = await customers.get(session, conversation.customer_id)
            token = await _latest_read_token(session, conversation.customer_id)
            if token is None or customer is None or customer.blocked:
                return False
            key = deliveries.retry_key_for("mark_read", token)
            if await deliveries.by_retry_key(session, key) is not None:
                return False
            try:
                async with session.begin_nested():  # two staff opening it at once: one mark
                    delivery = await deliveries.create_effect(
                        session, customer_id=customer.id, kind=DeliveryKind.MARK_READ, effect={"token": token},
                        retry_key=key, sender_type="staff",
                    )
            except sa.exc.IntegrityError:
                return False
        task = asyncio.create_task(self.send(delivery.id), name="kizuna-mark-read")
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return True

    # -- the customer's tags --------------------------------------------------------------------

    async def add_tag(self, customer_id: int, actor: Actor, tag: str) -> bool:
        """False when the customer had the tag already."""
        return await self._edit_tags(tags.add, customer_id, actor, tag)

    async def remove_tag(self, customer_id: int, actor: Actor, tag: str) -> bool:
        """False when the customer did not have the tag."""
        return await self._edit_tags(tags.remove, customer_id, actor, tag)

    async def _edit_tags(self, change, customer_id: int, actor: Actor, tag: str) -> bool:
        async with transaction(self.sessions) as session:
            changed = await change(session, customer_id, tag, actor=actor)
        if changed:
            await self.publish(customer_update(customer_id))
        return changed

    # -- helpers ----------------------------------------------------------------------------------

    async def _get(self, session: AsyncSession, conversation_id: int) -> Conversation:
        conversation = await conversations.get(session, conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        return conversation

    async def _push(
        self, session: AsyncSession, conversation: Conversation, customer: Customer, actor: Actor, messages: list[dict], *key: object,
    ) -> Delivery:
        """Messages from a person to the customer: the outbox row (its retry key fixed now),
        on the timeline at once. Answering a waiting customer takes the conversation."""
        now = self.clock()
        if conversation.assignee_id is None and actor.staff_id is not None:
            await conversations.take(session, conversation.id, actor.staff_id)
        delivery = await deliveries.create(
            session, customer_id=customer.id, messages=messages, sender_type="staff", sender_id=_author(actor),
            retry_key=deliveries.retry_key_for("staff", conversation.id, _author(actor), *key, now.isoformat()),
        )
        await conversations.responded(session, conversation.id, now)
        return delivery

    async def _sent(self, conversation: Conversation, delivery: Delivery, interaction: Interaction) -> None:
        await self.send(delivery.id)
        await self.publish(message_update(conversation, interaction.id))


async def _reachable(session: AsyncSession, conversation: Conversation) -> Customer:
    """The customer, when a person may write to them in this conversation."""
    customer = await customers.get(session, conversation.customer_id)
    if customer is None or customer.blocked:
        raise Conflict("blocked", "the customer has blocked the account: LINE would not deliver it")
    if conversation.status == ConversationStatus.RESOLVED:
        raise Conflict("resolved", "the conversation is resolved; it reopens when the customer asks for a person")
    return customer


async def _latest_read_token(session: AsyncSession, customer_id: int) -> str | None:
    """The markAsReadToken of the customer's latest message (LINE marks everything up to it)."""
    statement = (
        sa.select(Interaction.payload)
        .where(Interaction.customer_id == customer_id, Interaction.direction == Direction.IN, Interaction.kind.like("message.%"))
        .order_by(Interaction.id.desc()).limit(1)
    )
    payload = (await session.execute(statement)).scalar_one_or_none() or {}
    token = (payload.get("message") or {}).get("markAsReadToken")
    return token if isinstance(token, str) and 0 < len(token) <= 500 else None


def _message_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise Invalid("text", "write something first")
    if texts.utf16_length(text) > texts.MAX_TEXT:
        raise Invalid("text", f"a LINE message holds at most {texts.MAX_TEXT} characters")
    return text


def _taken_message(conversation: Conversation | None) -> str:
    if conversation is None:
        return "no such conversation"
    if conversation.status == ConversationStatus.RESOLVED:
        return "the conversation is resolved"
    return "someone else has taken this conversation"


async def _csat_question(session: AsyncSession, customer: Customer, conversation_id: int) -> dict:
    locale = texts.locale_for(customer.language)
    question = await texts.get_text(session, "support_csat_question", locale)
    items = [
        {"type": "action", "action": {
            "type": "postback", "label": str(score), "data": f"action=csat&conversation={conversation_id}&score={score}",
            "displayText": "★" * score,
        }}
        for score in CSAT_SCORES
    ]
    return {"type": "text", "text": question, "quickReply": {"items": items}}

