"""Step sequences (ステップ配信): what a marketer sets up, and sending the steps that fall due.

A sequence has an entry trigger (registered, first order, tag added, friend-add source, API
event, segment entered — the last by `enter_segments`, a periodic look at the segment), exit
conditions, a send window and 1–20 steps. A step is 1–5 LINE messages (`{name}` becomes the customer's name, or the sequence's
`name_fallback`), optionally with a coupon granted through the coupons feature, sent a delay
after enrolment or after the previous step.

Enrolling and the exits that follow facts are storage/sequences.py's (called where the facts are
written). Here: `send_due`, the scheduler job every worker runs (bot/worker.py). In ONE
transaction it locks the due enrolments (SKIP LOCKED on PostgreSQL), and for each either exits it
(blocked, opted out, not on LINE: nothing is sent), defers it to the window's next opening, or
writes the step's messages into the outbox (`deliveries.create_many`, retry key
uuid5(enrolment, step)) and advances the enrolment with a conditional UPDATE — set-based, a few
statements per batch of due steps. The outbox's sender sends after the commit (the worker hands
it the ids; the sweeper resends any a crash left behind), with the same retry key, so a step
reaches the customer once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.campaigns import segments
from kizuna.storage import coupons, deliveries, tags
from kizuna.storage import sequences as store
from kizuna.storage.db import transaction
from kizuna.storage.errors import Invalid
from kizuna.storage.models import (
    API_EVENT_TYPE_MAX,
    SEQUENCE_NAME_MAX,
    SEQUENCE_TRIGGER_VALUE_MAX,
    TAG_MAX,
    Coupon,
    CouponGrant,
    Customer,
    ExitReason,
    Segment,
    SequenceStatus,
    SequenceTrigger,
    StepSequence,
)

SENDER_TYPE = "sequence"  # deliveries.sender_type and the timeline's: what sent it
MESSAGES_MAX = 5  # LINE: at most 5 messages per push
STEPS_MAX = 20
TEXT_MAX = 5000  # LINE: one text message
DELAY_MAX_DAYS = 365
MESSAGE_TYPES = ("text", "image", "video", "audio", "sticker", "flex", "template", "imagemap", "location")
NAME = "{name}"
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

# What a coupon becomes in a step's messages: (grant, coupon, customer) -> a LINE message. The
# worker passes the bot's Flex card (flows/coupons.py, which campaigns/ may not import).
CouponMessage = Callable[[CouponGrant, Coupon, Customer], dict]


class DelayFrom(StrEnum):
    ENROLMENT = "enrolment"
    PREVIOUS = "previous"  # the previous step's sending


class ExitCondition(StrEnum):
    ORDERED_AGAIN = "ordered_again"
    BLOCKED = "blocked"  # always on: nothing is sent to a customer who blocked the account
    OPTED_OUT = "opted_out"  # always on: nor to one who turned marketing messages off
    TAG_REMOVED = "tag_removed"


ALWAYS = (ExitCondition.BLOCKED, ExitCondition.OPTED_OUT)


# -- what comes in -----------------------------------------------------------------------------


class StepCreate(BaseModel):
    model_config = {"extra": "forbid"}

    delay_days: int = Field(default=0, ge=0, le=DELAY_MAX_DAYS)
    delay_hours: int = Field(default=0, ge=0, le=24 * DELAY_MAX_DAYS)
    delay_minutes: int = Field(default=0, ge=0, le=24 * 60 * DELAY_MAX_DAYS)
    delay_from: DelayFrom = DelayFrom.PREVIOUS
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MESSAGES_MAX)
    coupon_id: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @field_validator("messages")
    @classmethod
    def _messages(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for message in messages:
            if message.get("type") not in MESSAGE_TYPES:
                raise ValueError(f"each message has a type: one of {', '.join(MESSAGE_TYPES)}")
            if message["type"] == "text":
                text = message.get("text")
                if not isinstance(text, str) or not text.strip() or len(text) > TEXT_MAX:
                    raise ValueError(f"a text message has a text of 1 to {TEXT_MAX} characters")
        return messages

    @model_validator(mode="after")
    def _room_for_the_coupon(self) -> "StepCreate":
        if self.coupon_id is not None and len(self.messages) >= MESSAGES_MAX:
            raise ValueError(f"with a coupon a step has at most {MESSAGES_MAX - 1} messages (the coupon is the fifth)")
        return self

    @property
    def delay(self) -> timedelta:
        return timedelta(days=self.delay_days, hours=self.delay_hours, minutes=self.delay_minutes)


class SendWindow(BaseModel):
    model_config = {"extra": "forbid"}

    start: str = Field(description="HH:MM, e.g. 09:00", examples=["09:00"])
    end: str = Field(description="HH:MM, e.g. 21:00 (earlier than start: a window over midnight)", examples=["21:00"])
    timezone: str = Field(default="Asia/Tokyo", max_length=64)

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        if not _CLOCK.match(value):
            raise ValueError("a time of day, HH:MM (00:00 to 23:59)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "SendWindow":
        if self.start == self.end:
            raise ValueError("start and end are the same: leave the window out to send at any time")
        return self


class SequenceCreate(BaseModel):
    """A sequence as the API and the console create it."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=SEQUENCE_NAME_MAX, pattern=r"\S")
    trigger: SequenceTrigger
    # The tag (tag_added), the source's code (friend_source), the event type (api_event), the
    # segment id (segment_entered); none for registered and first_order.
    trigger_value: str | None = Field(default=None, max_length=SEQUENCE_TRIGGER_VALUE_MAX, validate_default=True)
    exit_on: list[ExitCondition] = Field(default_factory=list, max_length=4)
    exit_tag: str | None = Field(default=None, max_length=TAG_MAX, description="the tag of tag_removed (default: a tag_added trigger's tag)")
    cancel_on: list[str] = Field(default_factory=list, max_length=20,
                                 description='API event types that end an enrolment; "order": an order came in')
    send_window: SendWindow | None = None
    name_fallback: str = Field(default="お客様", min_length=1, max_length=40)
    status: SequenceStatus = SequenceStatus.ACTIVE
    steps: list[StepCreate] = Field(min_length=1, max_length=STEPS_MAX)

    @field_validator("cancel_on")
    @classmethod
    def _event_types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip() or len(item) > API_EVENT_TYPE_MAX:
                raise ValueError(f"an event type has 1 to {API_EVENT_TYPE_MAX} characters")
        return value

    @field_validator("trigger_value")
    @classmethod
    def _trigger_value(cls, value: str | None, info: ValidationInfo) -> str | None:
        trigger = info.data.get("trigger")
        if trigger is None:
            return value  # the trigger itself is wrong: that is the error to report
        needs = trigger not in (SequenceTrigger.REGISTERED, SequenceTrigger.FIRST_ORDER)
        if needs and not (value or "").strip():
            raise ValueError(f"a {trigger.value} trigger needs trigger_value")
        if not needs and value is not None:
            raise ValueError(f"a {trigger.value} trigger takes no trigger_value")
        if trigger == SequenceTrigger.SEGMENT_ENTERED and not value.strip().isdigit():
            raise ValueError("a segment_entered trigger's trigger_value is the segment id")
        return value

    @field_validator("status")
    @classmethod
    def _new_status(cls, value: SequenceStatus) -> SequenceStatus:
        if value == SequenceStatus.ARCHIVED:
            raise ValueError("a new sequence is active or paused")
        return value


# -- creating and reading ----------------------------------------------------------------------


async def _fields(session: AsyncSession, body: SequenceCreate) -> dict[str, Any]:
    """The stored columns a checked body becomes (the refusals name the body's field)."""
    value = body.trigger_value.strip() if body.trigger_value else None
    if body.trigger == SequenceTrigger.TAG_ADDED:
        try:
            value = tags.normalize(value)
        except Invalid as error:
            raise Invalid("trigger_value", error.message) from None
    exit_tag = None
    if ExitCondition.TAG_REMOVED in body.exit_on:
        given = body.exit_tag or (value if body.trigger == SequenceTrigger.TAG_ADDED else None)
        if not given:
            raise Invalid("exit_tag", "tag_removed needs the tag (exit_tag), unless the trigger is tag_added")
        try:
            exit_tag = tags.normalize(given)
        except Invalid as error:
            raise Invalid("exit_tag", error.message) from None
    if body.trigger == SequenceTrigger.SEGMENT_ENTERED and await session.get(Segment, int(value)) is None:
        raise Invalid("trigger_value", "no such segment")
    for index, step in enumerate(body.steps):
        if step.coupon_id is not None and await session.get(Coupon, step.coupon_id) is None:
            raise Invalid(f"steps[{index}].coupon_id", "no such coupon")
    cancel_on = [item.strip() for item in body.cancel_on if item.strip() != store.ORDER]
    window = body.send_window
    return dict(
        name=body.name.strip(), trigger=body.trigger, trigger_value=value,
        exit_on_order=ExitCondition.ORDERED_AGAIN in body.exit_on or store.ORDER in body.cancel_on,
        exit_on_tag_removed=exit_tag, cancel_on=cancel_on,
        window_start=window.start if window else None, window_end=window.end if window else None,
        timezone=window.timezone if window else "Asia/Tokyo", name_fallback=body.name_fallback,
        steps=[{"delay_minutes": int(step.delay.total_seconds() // 60), "delay_from": step.delay_from.value,
                "messages": step.messages, "coupon_id": step.coupon_id} for step in body.steps],
    )


async def create(session: AsyncSession, body: SequenceCreate, *, created_by: str | None, now: datetime) -> StepSequence:
    sequence = StepSequence(**await _fields(session, body), status=body.status, created_by=created_by, created_at=now, updated_at=now)
    return await store.add(session, sequence)


# What an edit does to the customers already in the sequence (the console says it beside the form).
# They keep their place: a customer who was sent N steps gets the new list's step N+1 next, at the
# time already set for it (the delay in force when their last step went out); one who was sent as
# many steps as the new list holds is completed. A new trigger enrols from now on; nobody already
# in is moved out. The status (active, paused) is not changed by an edit: pause and resume do that.
async def update(session: AsyncSession, sequence_id: int, body: SequenceCreate, *, now: datetime) -> tuple[StepSequence, int]:
    """Edit a sequence (checked as `create` checks a new one); (the sequence, the number of enrolments
    the edit completed because the new steps end before their place)."""
    await store.get(session, sequence_id)  # NotFound before the body's checks
    return await store.replace(session, sequence_id, await _fields(session, body), now=now)


async def pause(session: AsyncSession, sequence_id: int, *, now: datetime) -> StepSequence:
    """Nothing is enrolled or sent while paused; due steps wait (never dropped) until resumed."""
    return await store.set_status(session, sequence_id, SequenceStatus.PAUSED, now=now)


async def resume(session: AsyncSession, sequence_id: int, *, now: datetime) -> StepSequence:
    return await store.set_status(session, sequence_id, SequenceStatus.ACTIVE, now=now)


def exit_conditions(sequence: StepSequence) -> list[str]:
    found = [ExitCondition.ORDERED_AGAIN.value] if sequence.exit_on_order else []
    found += [condition.value for condition in ALWAYS]
    if sequence.exit_on_tag_removed:
        found.append(ExitCondition.TAG_REMOVED.value)
    return found


# -- send windows ------------------------------------------------------------------------------


def zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Tokyo":  # no tz database on the system: Japan has one fixed offset
            return timezone(timedelta(hours=9), "JST")
        raise ValueError(f"unknown time zone {name!r}") from None


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def window_opening(sequence: StepSequence, moment: datetime) -> datetime:
    """`moment` when it is inside the sequence's send window (or it has none); otherwise the
    window's next opening. Times are the window's zone's wall clock (Asia/Tokyo by default)."""
    if not sequence.window_start or not sequence.window_end:
        return moment
    tz = zone(sequence.timezone)
    start, end = _clock(sequence.window_start), _clock(sequence.window_end)
    local = moment.astimezone(tz)
    now = local.time()
    inside = start <= now < end if start < end else (now >= start or now < end)
    if inside:
        return moment
    day = local.date() if now < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=tz).astimezone(timezone.utc)


# -- segment entered ---------------------------------------------------------------------------

# How often a segment_entered sequence's segment is compared with its last look: entering a
# segment is noticed within this (a segment is one SQL query; most change with orders or days).
SEGMENT_LOOK_EVERY = timedelta(minutes=10)


async def enter_segments(sessions: async_sessionmaker[AsyncSession], *, now: datetime,
                         every: timedelta = SEGMENT_LOOK_EVERY) -> int:
    """Enrol the customers who entered the segments of segment_entered sequences since their last
    look (the first look only records who is in already). Each sequence's look is claimed by one
    worker, in the transaction that does it; the enrolments made."""
    made = 0
    async with sessions() as session:
        looks = await store.segment_looks_due(session, now=now, every=every)
    for sequence_id, segment_id, checked_at in looks:
        async with transaction(sessions) as session:
            if not await store.claim_segment_look(session, sequence_id, checked_at, now=now):
                continue  # another worker has it
            first = checked_at is None
            segment = await session.get(Segment, segment_id)
            if segment is None:
                continue  # the segment was deleted: nobody can enter it
            try:
                members = await segments.audience(session, segment.rule, now=now, where=f"segment {segment_id}")
            except Invalid:
                continue  # a stored rule the language no longer accepts: nobody enters until it is fixed
            made += await store.look_at_segment(session, sequence_id, members, first=first, now=now)
    return made


# -- sending what is due -----------------------------------------------------------------------


def personalise(messages: list[dict], name: str) -> list[dict]:
    """`{name}` in texts (and alt texts) replaced by `name`; nothing else is formatted, so any
    other brace in a marketer's text is sent as written."""
    done = []
    for message in messages:
        message = dict(message)
        for key in ("text", "altText"):
            if isinstance(message.get(key), str):
                message[key] = message[key].replace(NAME, name)
        done.append(message)
    return done


def customer_name(customer: Customer, fallback: str) -> str:
    name = (customer.full_name or customer.display_name or "").strip()
    return name or fallback


def default_coupon_message(grant: CouponGrant, coupon: Coupon, customer: Customer) -> dict:
    return {"type": "text", "text": f"クーポン「{coupon.title}」をお送りします。\nクーポンコード: {grant.code}"}


def opted_out(customer: Customer) -> bool:
    """Turned marketing messages off (「お知らせを停止する」, or a no at registration). Following
    the account is consent (LINE's model): a follower who was never asked still receives."""
    if customer.processing_stopped_at is not None:  # asked to stop the use of their data (flows/data_rights.py)
        return True
    return not customer.marketing_opt_in and customer.marketing_consent_changed_at is not None


def retry_key(enrolment_id: int, step: int) -> str:
    return deliveries.retry_key_for("sequence", enrolment_id, step)


@dataclass
class _Batch:
    """What one look decided, written set-based at its end (a few statements per batch)."""

    exits: list[tuple[int, ExitReason]] = field(default_factory=list)
    defers: list[tuple[int, datetime]] = field(default_factory=list)
    moves: list[store.Move] = field(default_factory=list)
    messages: list[deliveries.NewMessage] = field(default_factory=list)


async def send_due(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, limit: int = 200,
    coupon_message: CouponMessage = default_coupon_message,
) -> list[int]:
    """Send (into the outbox) every step due at `now`, up to `limit`; the new deliveries' ids, for
    the caller to hand to the sender after this commit. Safe to run from N workers at once."""
    batch = _Batch()
    async with transaction(sessions) as session:
        for due in await store.lock_due(session, now=now, limit=limit):
            await _decide(session, due, batch, now=now, coupon_message=coupon_message)
        await store.exit_many(session, batch.exits, now=now)
        await store.defer_many(session, batch.defers)
        await store.advance_many(session, batch.moves, now=now)
        created = await deliveries.create_many(session, batch.messages)
    return sorted(created.values())


async def _decide(session: AsyncSession, due: store.Due, batch: _Batch, *, now: datetime, coupon_message: CouponMessage) -> None:
    enrolment, sequence, customer = due.enrolment, due.sequence, due.customer
    reason = (ExitReason.BLOCKED if customer.blocked
              else ExitReason.NOT_ON_LINE if not customer.line_user_id or not customer.followed
              else ExitReason.OPTED_OUT if opted_out(customer) else None)
    if reason is not None:
        batch.exits.append((enrolment.id, reason))
        return
    opening = window_opening(sequence, now)
    if opening > now:
        batch.defers.append((enrolment.id, opening))
        return
    index = enrolment.current_step
    steps = sequence.steps
    if index >= len(steps):  # an edit removed the steps after its place (`update` completes those too)
        batch.moves.append(store.Move(enrolment.id, index, None, finished=True))
        return
    step = steps[index]
    messages = personalise(step["messages"], customer_name(customer, sequence.name_fallback))
    if step.get("coupon_id"):
        # Each customer's own grant (one per customer, stock kept: the coupons feature's rules), in
        # this transaction: if the batch rolls back, so does the grant.
        result = await coupons.issue(session, coupon_id=step["coupon_id"], customer_id=customer.id, now=now, by=f"sequence:{sequence.id}")
        if result.grant is not None:
            messages.append(coupon_message(result.grant, result.coupon or await session.get(Coupon, step["coupon_id"]), customer))
    finished = index + 1 >= len(steps)
    next_due = None
    if not finished:
        following = steps[index + 1]
        base = enrolment.enrolled_at if following.get("delay_from") == DelayFrom.ENROLMENT else now
        next_due = window_opening(sequence, max(base + timedelta(minutes=int(following.get("delay_minutes", 0))), now))
    batch.moves.append(store.Move(enrolment.id, index, next_due, finished))
    batch.messages.append(deliveries.NewMessage(
        customer_id=customer.id, messages=messages[:MESSAGES_MAX], sender_type=SENDER_TYPE,
        sender_id=f"sequence:{sequence.id}:{index}", retry_key=retry_key(enrolment.id, index),
    ))
