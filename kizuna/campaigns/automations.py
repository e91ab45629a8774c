"""Automation rules (IF → THEN): what a marketer sets up, and evaluating the causes against them.

A rule has one trigger (a tag added or removed, a tracked link tapped, an order, an API event, a
segment entered, registration completed, a friend-add source, the birthday month, a coupon about
to expire), optional conditions (the customer has / lacks a tag, is / is not in a segment) and
1-10 actions (add or remove a tag, start or stop a sequence, switch the rich menu, send 1-5
messages, grant a coupon, call the shop's webhook).

Causes are recorded where the facts are written (storage/automations.py). Here:
- `evaluate_pending`, run by every worker: in ONE transaction it locks pending causes, and for
  each enabled rule of the cause's kind whose trigger matches writes the firing row (unique on
  rule and cause) and only then does the actions, in that same transaction. What leaves the
  process goes through an outbox with a key derived from the firing: LINE messages and the rich
  menu through `deliveries` (retry key uuid5(firing, action)), webhook calls through
  `automation_webhook_calls` (idempotency key likewise), posted after the commit by bot/.
  A second evaluator finds the firing and does nothing; a crash rolls back firing and actions
  together, and the cause stays pending for the next look.
- `run_daily`: the birthday-month and coupon-expiring looks, at the shop's configured hour in
  its time zone, claimed once a day by one worker; their causes are once per customer and year /
  per grant in the database itself.
Loops (a rule adding a tag that another rule removes …) stop at storage/automations.MAX_DEPTH.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.campaigns import segments
from kizuna.campaigns.sequences import (
    MESSAGES_MAX,
    CouponMessage,
    StepCreate,
    customer_name,
    default_coupon_message,
    opted_out,
    personalise,
    zone,
)
from kizuna.storage import automations as store
from kizuna.storage import coupons, deliveries, tags
from kizuna.storage import sequences as sequence_store
from kizuna.storage.db import transaction
from kizuna.storage.errors import Invalid
from kizuna.storage.models import (
    AUTOMATION_NAME_MAX,
    AUTOMATION_VALUE_MAX,
    COUPON_REMINDER_TEXT,
    COUPON_REMINDER_TEXT_MAX,
    TAG_MAX,
    WEBHOOK_URL_MAX,
    AutomationCause,
    AutomationRule,
    AutomationSegmentMember,
    AutomationTrigger,
    Coupon,
    CouponGrant,
    Customer,
    DeliveryKind,
    EnrolmentStatus,
    ExitReason,
    FiringStatus,
    Order,
    OrderStatus,
    Segment,
    SequenceEnrolment,
    SequenceStatus,
    Shop,
    StepSequence,
)

SENDER_TYPE = "automation"  # deliveries.sender_type and the timeline's: what sent it
ACTIONS_MAX = 10
CONDITIONS_MAX = 5
# The rich menus an action may link (bot/richmenu.py MENUS: "registered" links the member menu,
# "default" unlinks, so LINE shows the channel's default).
RICH_MENUS = ("default", "registered")
NAME_FALLBACK = "お客様"
# Triggers with a value: which, and whether it must be given.
VALUE_REQUIRED = {AutomationTrigger.TAG_ADDED, AutomationTrigger.TAG_REMOVED, AutomationTrigger.API_EVENT,
                  AutomationTrigger.SEGMENT_ENTERED}
VALUE_OPTIONAL = {AutomationTrigger.LINK_TAPPED, AutomationTrigger.FRIEND_SOURCE}


class ActionType(StrEnum):
    ADD_TAG = "add_tag"
    REMOVE_TAG = "remove_tag"
    START_SEQUENCE = "start_sequence"
    STOP_SEQUENCE = "stop_sequence"
    SWITCH_RICH_MENU = "switch_rich_menu"
    SEND_MESSAGE = "send_message"
    GRANT_COUPON = "grant_coupon"
    CALL_WEBHOOK = "call_webhook"


class ConditionType(StrEnum):
    HAS_TAG = "has_tag"
    LACKS_TAG = "lacks_tag"
    IN_SEGMENT = "in_segment"
    NOT_IN_SEGMENT = "not_in_segment"


# -- what comes in -----------------------------------------------------------------------------


class TriggerOptions(BaseModel):
    model_config = {"extra": "forbid"}

    first_only: bool = Field(default=False, description="order_placed: only the customer's first order")
    min_total: int | None = Field(default=None, ge=0, le=10**9, description="order_placed: only orders of at least this total (yen)")
    destination: str | None = Field(default=None, min_length=1, max_length=WEBHOOK_URL_MAX,
                                    description="link_tapped: only taps on links to this destination")


class Condition(BaseModel):
    model_config = {"extra": "forbid"}

    type: ConditionType
    tag: str | None = Field(default=None, max_length=TAG_MAX)
    segment_id: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _needs(self) -> "Condition":
        if self.type in (ConditionType.HAS_TAG, ConditionType.LACKS_TAG) and not (self.tag or "").strip():
            raise ValueError(f"a {self.type.value} condition needs a tag")
        if self.type in (ConditionType.IN_SEGMENT, ConditionType.NOT_IN_SEGMENT) and self.segment_id is None:
            raise ValueError(f"a {self.type.value} condition needs a segment_id")
        return self


class Action(BaseModel):
    model_config = {"extra": "forbid"}

    type: ActionType
    tag: str | None = Field(default=None, max_length=TAG_MAX, description="add_tag, remove_tag")
    sequence_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="start_sequence, stop_sequence")
    menu: str | None = Field(default=None, description="switch_rich_menu: registered | default")
    messages: list[dict[str, Any]] | None = Field(default=None, description="send_message: 1-5 LINE messages, {name} personalised")
    coupon_card: bool = Field(default=False, description="send_message on coupon_expiring: the coupon's card follows the messages")
    coupon_id: int | None = Field(default=None, ge=1, le=2**31 - 1, description="grant_coupon")
    send_card: bool = Field(default=True, description="grant_coupon: push the coupon's card to the customer")
    url: str | None = Field(default=None, max_length=WEBHOOK_URL_MAX, description="call_webhook: https URL of the shop's endpoint")

    @model_validator(mode="after")
    def _needs(self) -> "Action":
        needed = {ActionType.ADD_TAG: "tag", ActionType.REMOVE_TAG: "tag", ActionType.START_SEQUENCE: "sequence_id",
                  ActionType.STOP_SEQUENCE: "sequence_id", ActionType.SWITCH_RICH_MENU: "menu", ActionType.SEND_MESSAGE: "messages",
                  ActionType.GRANT_COUPON: "coupon_id", ActionType.CALL_WEBHOOK: "url"}[self.type]
        if getattr(self, needed) in (None, "", []):
            raise ValueError(f"a {self.type.value} action needs {needed}")
        if self.type == ActionType.SWITCH_RICH_MENU and self.menu not in RICH_MENUS:
            raise ValueError(f"menu is one of {', '.join(RICH_MENUS)}")
        if self.type == ActionType.SEND_MESSAGE:
            # The same checks as a sequence's step (types, text lengths, at most 5).
            StepCreate(messages=self.messages)
            if self.coupon_card and len(self.messages) >= MESSAGES_MAX:
                raise ValueError(f"with the coupon card a message action has at most {MESSAGES_MAX - 1} messages")
        return self


class RuleCreate(BaseModel):
    """A rule as the API and the console create (or replace) it."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=AUTOMATION_NAME_MAX, pattern=r"\S")
    enabled: bool = True
    trigger: AutomationTrigger
    trigger_value: str | None = Field(default=None, max_length=AUTOMATION_VALUE_MAX,
                                      description="the tag, the event type, the segment id, the campaign id (link_tapped, "
                                                  "optional), the friend-add source's code (optional)")
    trigger_options: TriggerOptions = Field(default_factory=TriggerOptions)
    conditions: list[Condition] = Field(default_factory=list, max_length=CONDITIONS_MAX)
    actions: list[Action] = Field(min_length=1, max_length=ACTIONS_MAX)
    webhook_secret: str | None = Field(default=None, min_length=16, max_length=64, pattern=r"^[\x21-\x7e]+$",
                                       description="signs the webhook calls (HMAC-SHA256); made for you when left out")

    @field_validator("trigger_value")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _value_fits_trigger(self) -> "RuleCreate":
        if self.trigger in VALUE_REQUIRED and not self.trigger_value:
            raise ValueError(f"a {self.trigger.value} trigger needs trigger_value")
        if self.trigger not in VALUE_REQUIRED | VALUE_OPTIONAL and self.trigger_value is not None:
            raise ValueError(f"a {self.trigger.value} trigger takes no trigger_value")
        if self.trigger in (AutomationTrigger.SEGMENT_ENTERED, AutomationTrigger.LINK_TAPPED) and self.trigger_value \
                and not self.trigger_value.isdigit():
            raise ValueError(f"a {self.trigger.value} trigger's trigger_value is an id")
        options = self.trigger_options
        if (options.first_only or options.min_total is not None) and self.trigger != AutomationTrigger.ORDER_PLACED:
            raise ValueError("first_only and min_total are options of order_placed")
        if options.destination is not None and self.trigger != AutomationTrigger.LINK_TAPPED:
            raise ValueError("destination is an option of link_tapped")
        return self


class SettingsUpdate(BaseModel):
    model_config = {"extra": "forbid"}

    daily_hour: int = Field(ge=0, le=23, description="the shop's local hour of the daily looks (birthday month, coupons expiring)")
    coupon_reminder_days: int = Field(ge=1, le=30, description="a grant expiring within this many days counts as expiring")
    coupon_reminder_enabled: bool = Field(default=True, description="the built-in reminder: its text and the coupon's card, once per grant")
    coupon_reminder_text: str = Field(default=COUPON_REMINDER_TEXT, min_length=1, max_length=COUPON_REMINDER_TEXT_MAX, pattern=r"\S",
                                      description="{name} becomes the customer's name")


# -- creating, changing ------------------------------------------------------------------------


def check_webhook_url(url: str, *, allow_http_localhost: bool) -> str:
    """https, with a host; http only to this machine (localhost, 127.0.0.1, ::1) and only on a
    development install (`allow_http_localhost`). Credentials in the URL are refused (the
    signature is the authentication)."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise ValueError("a webhook URL is https://host/path, without a user or password")
    if parts.scheme == "https":
        return url.strip()
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if parts.scheme == "http" and loopback and allow_http_localhost:
        return url.strip()
    raise ValueError("a webhook URL must be https (http only to localhost on a development install)")


async def _checked(session: AsyncSession, body: RuleCreate, *, allow_http_localhost: bool) -> dict:
    """The rule's columns from `body`, with every reference checked (Invalid names the field)."""
    value = body.trigger_value
    if body.trigger in (AutomationTrigger.TAG_ADDED, AutomationTrigger.TAG_REMOVED):
        value = _tag(value, "trigger_value")
    if body.trigger == AutomationTrigger.SEGMENT_ENTERED and await session.get(Segment, int(value)) is None:
        raise Invalid("trigger_value", "no such segment")
    conditions = []
    for index, condition in enumerate(body.conditions):
        item = condition.model_dump(exclude_none=True)
        if condition.tag is not None:
            item["tag"] = _tag(condition.tag, f"conditions[{index}].tag")
        if condition.segment_id is not None and await session.get(Segment, condition.segment_id) is None:
            raise Invalid(f"conditions[{index}].segment_id", "no such segment")
        conditions.append(item)
    actions = []
    for index, action in enumerate(body.actions):
        where = f"actions[{index}]"
        item: dict[str, Any] = {"type": action.type.value}
        if action.type in (ActionType.ADD_TAG, ActionType.REMOVE_TAG):
            item["tag"] = _tag(action.tag, f"{where}.tag")
        elif action.type in (ActionType.START_SEQUENCE, ActionType.STOP_SEQUENCE):
            if await session.get(StepSequence, action.sequence_id) is None:
                raise Invalid(f"{where}.sequence_id", "no such sequence")
            item["sequence_id"] = action.sequence_id
        elif action.type == ActionType.SWITCH_RICH_MENU:
            item["menu"] = action.menu
        elif action.type == ActionType.SEND_MESSAGE:
            item["messages"] = action.messages
            item["coupon_card"] = action.coupon_card
        elif action.type == ActionType.GRANT_COUPON:
            if await session.get(Coupon, action.coupon_id) is None:
                raise Invalid(f"{where}.coupon_id", "no such coupon")
            item["coupon_id"], item["send_card"] = action.coupon_id, action.send_card
        elif action.type == ActionType.CALL_WEBHOOK:
            try:
                item["url"] = check_webhook_url(action.url, allow_http_localhost=allow_http_localhost)
            except ValueError as error:
                raise Invalid(f"{where}.url", str(error)) from None
        actions.append(item)
    return dict(name=body.name.strip(), enabled=body.enabled, trigger=body.trigger.value, trigger_value=value,
                trigger_options=body.trigger_options.model_dump(exclude_defaults=True), conditions=conditions, actions=actions)


def _tag(text: str | None, where: str) -> str:
    try:
        return tags.normalize(text or "")
    except Invalid as error:
        raise Invalid(where, error.message) from None


async def create(session: AsyncSession, body: RuleCreate, *, created_by: str | None, now: datetime,
                 allow_http_localhost: bool = False) -> AutomationRule:
    columns = await _checked(session, body, allow_http_localhost=allow_http_localhost)
    rule = AutomationRule(**columns, webhook_secret=body.webhook_secret or secrets.token_hex(32), created_by=created_by,
                          created_at=now, updated_at=now)
    return await store.add(session, rule)


async def replace(session: AsyncSession, rule_id: int, body: RuleCreate, *, now: datetime,
                  allow_http_localhost: bool = False) -> AutomationRule:
    """The rule becomes `body` (its firings stay: they happened). The secret stays unless given."""
    rule = await store.get(session, rule_id)
    columns = await _checked(session, body, allow_http_localhost=allow_http_localhost)
    if (columns["trigger"], columns["trigger_value"]) != (rule.trigger, rule.trigger_value):
        # Another segment (or trigger): its first look starts afresh.
        rule.segment_checked_at = None
        await session.execute(sa.delete(AutomationSegmentMember).where(AutomationSegmentMember.rule_id == rule.id))
    for name, value in columns.items():
        setattr(rule, name, value)
    if body.webhook_secret:
        rule.webhook_secret = body.webhook_secret
    rule.updated_at = now
    await session.flush()
    return rule


async def set_enabled(session: AsyncSession, rule_id: int, enabled: bool, *, now: datetime) -> AutomationRule:
    rule = await store.get(session, rule_id)
    rule.enabled, rule.updated_at = enabled, now
    await session.flush()
    return rule


async def update_settings(session: AsyncSession, body: SettingsUpdate):
    found = await store.settings(session)
    found.daily_hour, found.coupon_reminder_days = body.daily_hour, body.coupon_reminder_days
    found.coupon_reminder_enabled, found.coupon_reminder_text = body.coupon_reminder_enabled, body.coupon_reminder_text.strip()
    await session.flush()
    return found


# -- evaluating causes -------------------------------------------------------------------------


@dataclass
class Handoff:
    """What a look put in the outboxes, for the caller to send after its commit."""

    deliveries: list[int] = field(default_factory=list)
    webhook_calls: list[int] = field(default_factory=list)
    causes: int = 0
    firings: int = 0


async def evaluate_pending(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, limit: int = 100,
    coupon_message: CouponMessage = default_coupon_message,
) -> Handoff:
    """Evaluate up to `limit` pending causes against the enabled rules, in one transaction. Safe
    from N workers at once (see the module's docstring)."""
    handoff = Handoff()
    async with transaction(sessions) as session:
        causes = await store.lock_pending(session, limit=limit)
        rules: dict[str, list[AutomationRule]] = {}
        reminder = None
        if any(cause.kind == AutomationTrigger.COUPON_EXPIRING for cause in causes):
            found = await store.settings(session)
            reminder = found.coupon_reminder_text if found.coupon_reminder_enabled else None
        # A customer who asked the shop to stop using their data (flows/data_rights.py) triggers
        # nothing: their causes are marked evaluated without a firing.
        stopped = await store.processing_stopped(session, {cause.customer_id for cause in causes})
        for cause in causes:
            if cause.customer_id in stopped:
                continue
            if cause.kind not in rules:
                rules[cause.kind] = await store.enabled_rules(session, cause.kind)
            for rule in rules[cause.kind]:
                await _consider(session, rule, cause, handoff, now=now, coupon_message=coupon_message)
            if reminder and cause.kind == AutomationTrigger.COUPON_EXPIRING:
                await _remind(session, cause, reminder, handoff, now=now, coupon_message=coupon_message)
        await store.mark_evaluated(session, [cause.id for cause in causes], now=now)
        handoff.causes = len(causes)
    return handoff


async def _remind(session: AsyncSession, cause: AutomationCause, text: str, handoff: Handoff, *, now: datetime,
                  coupon_message: CouponMessage) -> None:
    """The built-in coupon reminder: the shop's text and the coupon's card, to a customer who can
    be messaged, while the grant is unused and valid. Once per grant: the outbox's retry key is
    derived from the grant, so a second evaluation stores nothing."""
    grant = await session.get(CouponGrant, cause.ref_id) if cause.ref_id else None
    customer = await session.get(Customer, cause.customer_id)
    if grant is None or customer is None or grant.status != "issued" or grant.expires_at <= now or _reachable(customer):
        return
    messages = personalise([{"type": "text", "text": text}], customer_name(customer, NAME_FALLBACK))
    messages.append(coupon_message(grant, await session.get(Coupon, grant.coupon_id), customer))
    created = await deliveries.create_many(session, [deliveries.NewMessage(
        customer_id=customer.id, messages=messages, sender_type=SENDER_TYPE, sender_id="coupon_reminder",
        retry_key=deliveries.retry_key_for("coupon_reminder", grant.id))])
    handoff.deliveries.extend(created.values())


async def _consider(session: AsyncSession, rule: AutomationRule, cause: AutomationCause, handoff: Handoff, *, now: datetime,
                    coupon_message: CouponMessage) -> None:
    if not await _trigger_matches(session, rule, cause):
        return
    customer = await session.get(Customer, cause.customer_id)
    if customer is None:
        return
    met = await _conditions_met(session, rule, customer, now=now)
    firing_id = await store.claim_firing(session, rule_id=rule.id, cause_id=cause.id, customer_id=customer.id,
                                         status=FiringStatus.DONE if met else FiringStatus.CONDITIONS_UNMET, now=now)
    if firing_id is None or not met:
        return  # fired before (another evaluator, or before a crash), or a condition is not met
    handoff.firings += 1
    # The causes these actions record are one step deeper in the chain (storage/automations.py).
    session.info[store.DEPTH] = cause.depth
    try:
        outcomes = [await _act(session, rule, cause, customer, firing_id, index, action, handoff, now=now, coupon_message=coupon_message)
                    for index, action in enumerate(rule.actions)]
    finally:
        session.info.pop(store.DEPTH, None)
    await store.set_outcomes(session, firing_id, outcomes)


async def _trigger_matches(session: AsyncSession, rule: AutomationRule, cause: AutomationCause) -> bool:
    if rule.trigger_value is not None and rule.trigger_value != cause.value:
        return False
    if cause.kind == AutomationTrigger.SEGMENT_ENTERED and cause.ref_id != rule.id:
        return False  # each segment_entered rule looks at its segment itself (`enter_segments`)
    options = rule.trigger_options or {}
    if options.get("destination") and (cause.data or {}).get("destination") != options["destination"]:
        return False
    if options.get("min_total") is not None and int((cause.data or {}).get("total", 0)) < int(options["min_total"]):
        return False
    if options.get("first_only") and cause.ref_id is not None:
        # The first order: no other completed order of the customer's before this one.
        this = await session.get(Order, cause.ref_id)
        if this is None:
            return False
        earlier = (await session.execute(sa.select(sa.func.count()).where(
            Order.customer_id == cause.customer_id, Order.status == OrderStatus.COMPLETED, Order.id != this.id,
            Order.ordered_at <= this.ordered_at))).scalar_one()
        return earlier == 0
    return True


async def _conditions_met(session: AsyncSession, rule: AutomationRule, customer: Customer, *, now: datetime) -> bool:
    for condition in rule.conditions or []:
        kind = condition["type"]
        if kind in (ConditionType.HAS_TAG, ConditionType.LACKS_TAG):
            has = condition["tag"] in await tags.of_customer(session, customer.id)
            if has != (kind == ConditionType.HAS_TAG):
                return False
        else:
            segment = await session.get(Segment, condition["segment_id"])
            inside = False
            if segment is not None:
                try:
                    members = await segments.audience(session, segment.rule, now=now, where=f"segment {segment.id}")
                    people = members.subquery("members")
                    inside = (await session.execute(sa.select(people.c[0]).where(people.c[0] == customer.id).limit(1))).first() is not None
                except Invalid:
                    inside = False  # a stored rule the language no longer accepts: nobody is in it
            if inside != (kind == ConditionType.IN_SEGMENT):
                return False
    return True


def _reachable(customer: Customer) -> str | None:
    """Why nothing is sent to this customer (None: they can be messaged). Like the sequences:
    never to a customer who blocked the account or turned marketing messages off."""
    if customer.blocked:
        return "blocked"
    if not customer.line_user_id or not customer.followed or customer.merged_into_id is not None:
        return "not on LINE"
    if opted_out(customer):
        return "opted out"
    return None


async def _act(session: AsyncSession, rule: AutomationRule, cause: AutomationCause, customer: Customer, firing_id: int, index: int,
               action: dict, handoff: Handoff, *, now: datetime, coupon_message: CouponMessage) -> str:
    """Do one action in the firing's transaction; what it did, in words (the firing log)."""
    kind = action["type"]
    key = deliveries.retry_key_for(SENDER_TYPE, firing_id, index)  # derived from the firing: stable across retries
    sender_id = f"automation:{rule.id}"
    if kind in (ActionType.ADD_TAG, ActionType.REMOVE_TAG):
        change = tags.add if kind == ActionType.ADD_TAG else tags.remove
        try:
            changed = await change(session, customer.id, action["tag"], actor=None)
        except Invalid as error:
            return f"{kind} {action['tag']}: skipped ({error.message})"
        return f"{kind} {action['tag']}: {'done' if changed else 'unchanged'}"
    if kind == ActionType.START_SEQUENCE:
        sequence = await session.get(StepSequence, action["sequence_id"])
        if sequence is None or sequence.status == SequenceStatus.ARCHIVED:
            return f"start_sequence {action['sequence_id']}: skipped (no such sequence)"
        # The enrolment the sequences' own triggers make (one active per sequence and customer).
        made = await sequence_store._insert_enrolments(session, sequence.id, sequence.steps, [customer.id], now=now)
        return f"start_sequence {sequence.id}: {'enrolled' if made else 'unchanged'}"
    if kind == ActionType.STOP_SEQUENCE:
        table = SequenceEnrolment.__table__
        stopped = (await session.execute(sa.update(table).where(
            table.c.sequence_id == action["sequence_id"], table.c.customer_id == customer.id, table.c.status == EnrolmentStatus.ACTIVE,
        ).values(status=EnrolmentStatus.EXITED, exit_reason=ExitReason.CANCELLED_BY_EVENT, finished_at=now, next_due_at=None))).rowcount
        return f"stop_sequence {action['sequence_id']}: {'stopped' if stopped else 'unchanged'}"
    if kind == ActionType.SWITCH_RICH_MENU:
        if not customer.line_user_id or customer.blocked:
            return f"switch_rich_menu {action['menu']}: skipped (not on LINE)"
        delivery = await deliveries.create_effect(session, customer_id=customer.id, kind=DeliveryKind.RICH_MENU,
                                                  effect={"menu": action["menu"]}, retry_key=key, sender_type=SENDER_TYPE,
                                                  sender_id=sender_id)
        handoff.deliveries.append(delivery.id)
        return f"switch_rich_menu {action['menu']}: queued"
    if kind == ActionType.SEND_MESSAGE:
        why_not = _reachable(customer)
        if why_not:
            return f"send_message: skipped ({why_not})"
        messages = personalise(action["messages"], customer_name(customer, NAME_FALLBACK))
        if action.get("coupon_card") and cause.kind == AutomationTrigger.COUPON_EXPIRING and cause.ref_id:
            grant = await session.get(CouponGrant, cause.ref_id)
            if grant is None or grant.status != "issued":
                return "send_message: skipped (the coupon was used or revoked)"
            messages.append(coupon_message(grant, await session.get(Coupon, grant.coupon_id), customer))
        created = await deliveries.create_many(session, [deliveries.NewMessage(
            customer_id=customer.id, messages=messages[:MESSAGES_MAX], sender_type=SENDER_TYPE, sender_id=sender_id, retry_key=key)])
        handoff.deliveries.extend(created.values())
        return "send_message: queued"
    if kind == ActionType.GRANT_COUPON:
        result = await coupons.issue(session, coupon_id=action["coupon_id"], customer_id=customer.id, now=now, by=sender_id, key=key)
        if result.grant is None:
            return f"grant_coupon {action['coupon_id']}: refused ({result.refusal})"
        said = f"grant_coupon {action['coupon_id']}: {'granted' if result.created else 'had it already'}"
        if result.created and action.get("send_card", True) and _reachable(customer) is None:
            card = coupon_message(result.grant, result.coupon or await session.get(Coupon, action["coupon_id"]), customer)
            created = await deliveries.create_many(session, [deliveries.NewMessage(
                customer_id=customer.id, messages=[card], sender_type=SENDER_TYPE, sender_id=sender_id,
                retry_key=deliveries.retry_key_for(SENDER_TYPE, firing_id, index, "card"))])
            handoff.deliveries.extend(created.values())
            said += ", card queued"
        return said
    if kind == ActionType.CALL_WEBHOOK:
        body = json.dumps({
            "id": key, "rule": {"id": rule.id, "name": rule.name},
            "cause": {"id": cause.id, "kind": cause.kind, "value": cause.value, "data": cause.data or {},
                      "at": cause.created_at.isoformat()},
            "customer": {"id": customer.id, "line_user_id": customer.line_user_id},
            "fired_at": now.isoformat(),
        }, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        call_id = await store.add_call(session, firing_id=firing_id, rule_id=rule.id, key=key, url=action["url"], body=body, now=now)
        if call_id is not None:
            handoff.webhook_calls.append(call_id)
        return "call_webhook: queued"
    return f"{kind}: unknown action"


# -- segment entered ---------------------------------------------------------------------------

# How often a segment_entered rule's segment is compared with its last look (as the sequences').
SEGMENT_LOOK_EVERY = timedelta(minutes=10)


async def enter_segments(sessions: async_sessionmaker[AsyncSession], *, now: datetime, every: timedelta = SEGMENT_LOOK_EVERY) -> int:
    """segment_entered causes for the customers who entered the segments of enabled
    segment_entered rules since their last look (the first look only records who is in). Each
    rule's look is claimed by one worker, in the transaction that does it; the causes recorded."""
    recorded = 0
    async with sessions() as session:
        looks = await store.segment_looks_due(session, now=now, every=every)
    for rule_id, segment_id, checked_at in looks:
        async with transaction(sessions) as session:
            if not await store.claim_segment_look(session, rule_id, checked_at, now=now):
                continue  # another worker has it
            segment = await session.get(Segment, segment_id)
            if segment is None:
                continue
            try:
                members = await segments.audience(session, segment.rule, now=now, where=f"segment {segment_id}")
            except Invalid:
                continue  # a stored rule the language no longer accepts: nobody enters until it is fixed
            recorded += await store.look_at_segment(session, rule_id, segment_id, members, first=checked_at is None, now=now)
    return recorded


# -- the daily looks ---------------------------------------------------------------------------


async def run_daily(sessions: async_sessionmaker[AsyncSession], *, now: datetime) -> int:
    """At or after the configured hour of the shop's day: record today's birthday-month and
    coupon-expiring causes, each look claimed by one worker once a day. The causes recorded."""
    async with sessions() as session:
        found = await store.settings(session)
        hour, days = found.daily_hour, found.coupon_reminder_days
        shop_zone = (await session.execute(sa.select(Shop.timezone).limit(1))).scalar_one_or_none() or "Asia/Tokyo"
    local = now.astimezone(zone(shop_zone))
    if local.hour < hour:
        return 0
    recorded = 0
    async with transaction(sessions) as session:
        if await store.claim_daily(session, "birthday_ran_on", local.date()):
            recorded += await store.record_birthdays(session, month=local.month, year=local.year, now=now)
    async with transaction(sessions) as session:
        if await store.claim_daily(session, "coupons_ran_on", local.date()):
            recorded += await store.record_expiring(session, within=timedelta(days=days), now=now)
    return recorded
