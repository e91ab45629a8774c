"""Support: a customer handed to a person, and what staff do in the conversation.

`handoff()` is the one way a customer reaches a person, whoever asks for it: the
担当者 fallback of every flow, the FAQ's 「担当者と話す」 button and keyword, a complaint,
or the rule "questions left unanswered in a row". It opens (or reopens) the customer's
conversation as pending, records `conversation.bot_handoff`, tells the customer when a
person will answer (now, or when the shop next opens), and publishes the change.

While a person owns the conversation (pending or open) the bot stays silent to free
text: `owned_by_person()` says so to the message handler, which only records and
publishes the message. 「ボットに戻る」 hands the customer back, as staff's resolve does.

`SupportDesk` holds staff's actions (take, assign, reply, note, resolve, ...) for the
REST API and the console alike. A staff reply is a push with a retry key through the
same outbox as the bot's replies; it is sent right after the commit by the process's
sender (`send`), and by the sweeper if that process dies first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import conversations, customers, deliveries, interactions, texts
from kizuna.storage import faq as faq_store
from kizuna.storage.audit import Actor
from kizuna.storage.db import transaction
from kizuna.storage.errors import Conflict, Invalid, NotFound
from kizuna.storage.models import Conversation, ConversationNote, ConversationStatus, Customer, Interaction
from kizuna.storage.types import utcnow

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


# The CSAT buttons work whatever the customer is doing.
CSAT = Command(name="support.csat", entry_points=(Postback("csat"),), run=_record_csat)


def _now(ctx: FlowContext) -> datetime:
    clock = getattr(ctx.services, "clock", None)
    return clock() if clock is not None else (ctx.now or utcnow())


# -- the staff's side (REST API and console) ----------------------------------------------


def _author(actor: Actor) -> str:
    """How a message or note names who wrote it: a staff member, or an API token."""
    return f"staff:{actor.staff_id}" if actor.staff_id is not None else f"token:{actor.label}"[:64]


class SupportDesk:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        send: Callable[[int], Awaitable[object]],
        publish: Callable[[dict], Awaitable[None]],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.send = send
        self.publish = publish
        self.clock = clock

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
        async with transaction(self.sessions) as session:
            await self._get(session, conversation_id)
            if not await conversations.assign(session, conversation_id, staff_id):
                raise Conflict("resolved", "the conversation is resolved")
            conversation = await conversations.get(session, conversation_id)
        await self.publish(conversation_update(conversation))
        return conversation

    async def reply(self, conversation_id: int, actor: Actor, text: str) -> Interaction:
        """Send `text` to the customer as the shop (a push, through the outbox)."""
        text = _message_text(text)
        now = self.clock()
        async with transaction(self.sessions) as session:
            conversation = await self._get(session, conversation_id)
            customer = await customers.get(session, conversation.customer_id)
            if customer is None or customer.blocked:
                raise Conflict("blocked", "the customer has blocked the account: LINE would not deliver it")
            if conversation.status == ConversationStatus.RESOLVED:
                raise Conflict("resolved", "the conversation is resolved; it reopens when the customer asks for a person")
            if conversation.assignee_id is None and actor.staff_id is not None:
                await conversations.take(session, conversation_id, actor.staff_id)  # answering a waiting customer takes them
            delivery = await deliveries.create(
                session, customer_id=customer.id, messages=[{"type": "text", "text": text}], sender_type="staff",
                sender_id=_author(actor), retry_key=deliveries.retry_key_for("staff", conversation_id, _author(actor), now.isoformat()),
            )
            await conversations.responded(session, conversation_id, now)
            conversation = await conversations.get(session, conversation_id)
            [interaction] = await interactions.of_delivery(session, delivery.id)
        await self.send(delivery.id)
        await self.publish(message_update(conversation, interaction.id))
        return interaction

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
                payload={"conversation_id": conversation_id, "by": actor.label}, sender_type="staff", sender_id=_author(actor),
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

    async def _get(self, session: AsyncSession, conversation_id: int) -> Conversation:
        conversation = await conversations.get(session, conversation_id)
        if conversation is None:
            raise NotFound("no such conversation")
        return conversation


def _message_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise Invalid("text", "write something first")
    if len(text.encode("utf-16-le")) // 2 > texts.MAX_TEXT:
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

