"""The tables: one class per concept.

Words follow DESIGN.md: a `Customer` is a person on LINE (never "user" or "member"),
an `Interaction` is one row of a customer's timeline, a `Delivery` is one outbound
request to LINE (reply or push) with its retry key.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .types import BigIntId, JSONType, UTCDateTime, utcnow


def _created_at() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _optional_time() -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True)


class Shop(SQLModel, table=True):
    """Shop-wide settings in one place (one row today; more LINE accounts later)."""

    __tablename__ = "shops"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    # Short uppercase code: prefixes coupon codes so another shop's code is recognised.
    code: str = Field(max_length=5)
    timezone: str = Field(default="Asia/Tokyo", max_length=64)
    default_locale: str = Field(default="ja", max_length=8)
    created_at: datetime = _created_at()


class BotText(SQLModel, table=True):
    """An operator's edit of one bot text; defaults live in code (`texts.py`)."""

    __tablename__ = "bot_texts"

    key: str = Field(primary_key=True, max_length=100)
    locale: str = Field(primary_key=True, max_length=8)
    text: str = Field(sa_type=sa.Text)
    updated_at: datetime = _created_at()


class InboundEvent(SQLModel, table=True):
    """A webhook event as LINE sent it, stored before the webhook answers 200.

    `webhook_event_id` is unique in the database itself, so a redelivery or a
    concurrent duplicate is a no-op insert. `source_key` is what events are ordered
    by: the user id, else the group or room id.
    """

    __tablename__ = "inbound_events"
    __table_args__ = (
        # "the next pending event of this source": the processor's hot query.
        sa.Index("ix_inbound_events_source_status_ts", "source_key", "status", "event_timestamp", "id"),
        # the sweeper: pending events older than a moment.
        sa.Index("ix_inbound_events_status_received", "status", "received_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    webhook_event_id: str = Field(max_length=64, unique=True)
    event_type: str = Field(max_length=40)
    source_key: str = Field(max_length=80)
    line_user_id: str | None = Field(default=None, max_length=64)
    event_timestamp: int = Field(sa_type=sa.BigInteger)
    is_redelivery: bool = False
    payload: dict = Field(sa_type=JSONType)
    status: str = Field(default="pending", max_length=16)  # pending | done | parked
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    received_at: datetime = _created_at()
    processed_at: datetime | None = _optional_time()


class CustomerBase(SQLModel):
    line_user_id: str = Field(max_length=64, unique=True)
    display_name: str | None = Field(default=None, max_length=200)
    picture_url: str | None = Field(default=None, sa_type=sa.Text)
    status_message: str | None = Field(default=None, sa_type=sa.Text)
    language: str | None = Field(default=None, max_length=16)
    followed: bool = False
    blocked: bool = False
    followed_at: datetime | None = _optional_time()
    unfollowed_at: datetime | None = _optional_time()
    profile_refreshed_at: datetime | None = _optional_time()
    last_interaction_at: datetime | None = _optional_time()
    created_at: datetime = _created_at()
    # Member registration (kept only after consent to the privacy policy).
    registered: bool = False
    registered_at: datetime | None = _optional_time()
    privacy_consented_at: datetime | None = _optional_time()
    full_name: str | None = Field(default=None, max_length=80)
    birthday: date | None = None
    gender: str | None = Field(default=None, max_length=16)  # female | male | other | unanswered
    prefecture: str | None = Field(default=None, max_length=8)
    phone: str | None = Field(default=None, max_length=20)  # E.164
    email: str | None = Field(default=None, max_length=254)
    # Marketing messages: the customer's choice, with when it was made.
    marketing_opt_in: bool = False
    marketing_consent_changed_at: datetime | None = _optional_time()


class Customer(CustomerBase, table=True):
    __tablename__ = "customers"

    id: int | None = Field(default=None, primary_key=True)


class CustomerRead(CustomerBase):
    id: int


class InteractionBase(SQLModel):
    customer_id: int = Field(foreign_key="customers.id")
    direction: str = Field(max_length=3)  # in | out | sys (a system note: flow started, registered, ...)
    # "follow", "message.text", "postback", ...; outbound: "message.text", "message.flex", ...
    kind: str = Field(max_length=40)
    text: str | None = Field(default=None, sa_type=sa.Text)
    payload: dict | None = Field(default=None, sa_type=JSONType)
    sender_type: str = Field(max_length=16)  # customer | bot | staff | campaign | system
    sender_id: str | None = Field(default=None, max_length=64)
    inbound_event_id: int | None = Field(default=None, foreign_key="inbound_events.id", sa_type=BigIntId)
    delivery_id: int | None = Field(default=None, foreign_key="deliveries.id", sa_type=BigIntId)
    created_at: datetime = _created_at()


class Interaction(InteractionBase, table=True):
    """Append-only: rows are added, never changed. Ordered by id (monotonic)."""

    __tablename__ = "interactions"
    __table_args__ = (sa.Index("ix_interactions_customer_id_id", "customer_id", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)


class InteractionRead(InteractionBase):
    id: int


class Delivery(SQLModel, table=True):
    """One outbound request to LINE: the outbox row written in the same transaction
    as the decision to send, then sent. A crash between the two leaves it pending
    for the sweeper; its retry key never changes, so a retried push is sent once."""

    __tablename__ = "deliveries"
    __table_args__ = (sa.Index("ix_deliveries_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    sender_type: str = Field(max_length=16)  # bot | staff | campaign
    sender_id: str | None = Field(default=None, max_length=64)
    inbound_event_id: int | None = Field(default=None, foreign_key="inbound_events.id", sa_type=BigIntId)
    reply_token: str | None = Field(default=None, max_length=255)
    reply_deadline: datetime | None = _optional_time()
    messages: list = Field(sa_type=JSONType)
    retry_key: str = Field(max_length=36, unique=True)
    # pending -> sending -> sent | failed | undetermined
    status: str = Field(default="pending", max_length=16)
    method: str | None = Field(default=None, max_length=16)  # reply | push
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    line_request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = _created_at()
    claimed_at: datetime | None = _optional_time()
    sent_at: datetime | None = _optional_time()


class ApiToken(SQLModel, table=True):
    """A bearer token for the REST API. Only its SHA-256 is stored: the token is
    32 random bytes, so a slow password hash would add nothing but latency."""

    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    role: str = Field(max_length=16)  # admin | marketer | staff | pos
    token_hash: str = Field(max_length=64, unique=True)
    token_prefix: str = Field(max_length=12)
    created_at: datetime = _created_at()
    last_used_at: datetime | None = _optional_time()
    revoked_at: datetime | None = _optional_time()


class FlowState(SQLModel, table=True):
    """Where a customer is in a conversation flow; at most one flow at a time.

    `data` holds what the flow has collected so far (only after consent, for
    flows that ask for it) and is deleted with the row when the flow ends.
    """

    __tablename__ = "flow_states"

    customer_id: int = Field(foreign_key="customers.id", primary_key=True)
    flow: str = Field(max_length=40)
    state: str = Field(max_length=80)
    data: dict = Field(default_factory=dict, sa_type=JSONType)
    started_at: datetime = _created_at()
    updated_at: datetime = _created_at()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
