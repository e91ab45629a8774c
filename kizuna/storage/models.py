"""The tables: one class per concept.

Words follow DESIGN.md: a `Customer` is a person on LINE (never "user" or "member"),
an `Interaction` is one row of a customer's timeline, a `Delivery` is one outbound
request to LINE (reply or push) with its retry key.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .roles import Role
from .types import BigIntId, JSONType, UTCDateTime, utcnow


def _created_at() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def _optional_time() -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=True)


def _one_of(table: str, column: str, values: Iterable[str]) -> sa.CheckConstraint:
    """CHECK (column IN (...)): the database holds a status or kind column to the values its enum
    names (a NULL passes: nullable columns stay nullable). Columns stay plain strings, so a new
    value is a migration of the constraint, not of the column type."""
    listed = ", ".join(f"'{value}'" for value in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=f"ck_{table}_{column}")


class WithdrawalData(StrEnum):
    """What happens to a withdrawing member's registration data (Shop.withdrawal_data)."""

    DELETE = "delete"  # cleared in the withdrawal's transaction
    KEEP = "keep"  # kept until the retention purge removes it


class Shop(SQLModel, table=True):
    """Shop-wide settings in one place (one row today; more LINE accounts later)."""

    __tablename__ = "shops"
    __table_args__ = (_one_of("shops", "withdrawal_data", WithdrawalData),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    # Short uppercase code: prefixes coupon codes so another shop's code is recognised.
    code: str = Field(max_length=5)
    timezone: str = Field(default="Asia/Tokyo", max_length=64)
    default_locale: str = Field(default="ja", max_length=8)
    created_at: datetime = _created_at()
    # What a withdrawal (退会) does to the registration data: "delete" clears it at once,
    # "keep" leaves it for the retention purge (a WithdrawalData; consents.py).
    withdrawal_data: str = Field(default="delete", max_length=8, sa_column_kwargs={"server_default": "delete"})


class BotText(SQLModel, table=True):
    """An operator's edit of one bot text; defaults live in code (`texts.py`)."""

    __tablename__ = "bot_texts"

    key: str = Field(primary_key=True, max_length=100)
    locale: str = Field(primary_key=True, max_length=8)
    text: str = Field(sa_type=sa.Text)
    updated_at: datetime = _created_at()


class EventStatus(StrEnum):
    PENDING = "pending"  # stored, to be processed (again, after a failed attempt)
    DONE = "done"
    PARKED = "parked"  # given up after too many attempts, or invalid on arrival: listed for an admin


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
        _one_of("inbound_events", "status", EventStatus),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    webhook_event_id: str = Field(max_length=64, unique=True)
    event_type: str = Field(max_length=40)
    source_key: str = Field(max_length=80)
    line_user_id: str | None = Field(default=None, max_length=64)
    event_timestamp: int = Field(sa_type=sa.BigInteger)
    is_redelivery: bool = False
    payload: dict = Field(sa_type=JSONType)
    status: str = Field(default=EventStatus.PENDING, max_length=16)
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    received_at: datetime = _created_at()
    processed_at: datetime | None = _optional_time()


class CustomerBase(SQLModel):
    # None for a customer known only from the shop's other systems (an EC or POS order, a
    # customer record): they have not befriended the LINE account, or not yet been linked.
    line_user_id: str | None = Field(default=None, max_length=64, unique=True)
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
    name_kana: str | None = Field(default=None, max_length=80)  # from the shop's customer records (フリガナ)
    birthday: date | None = None
    gender: str | None = Field(default=None, max_length=16)  # female | male | other | unanswered
    prefecture: str | None = Field(default=None, max_length=8)
    phone: str | None = Field(default=None, max_length=20)  # E.164
    email: str | None = Field(default=None, max_length=254)
    # Marketing messages: the customer's choice, with when it was made.
    marketing_opt_in: bool = False
    marketing_consent_changed_at: datetime | None = _optional_time()
    # The privacy notice version the customer last accepted (storage/consents.py), and when
    # they last withdrew (退会; kept when they register again: a returning member is not given
    # the sign-up coupon twice, and the consent ledger has the whole history).
    privacy_notice_id: int | None = Field(default=None, foreign_key="privacy_notices.id")
    withdrawn_at: datetime | None = _optional_time()
    # A data-subject request to stop using their data (APPI 利用停止, flows/data_rights.py): no campaign,
    # sequence or trigger reaches them while set; a later request (resume) clears it.
    processing_stopped_at: datetime | None = _optional_time()
    # Erased on request (storage/erasure.py): the row stays as a pseudonymous id for aggregates.
    erased_at: datetime | None = _optional_time()


class Customer(CustomerBase, table=True):
    __tablename__ = "customers"
    __table_args__ = (
        # The few merged customers: segments read from customer_metrics alone keep them out with an
        # anti-join against this (campaigns/segments.py), not a join of every customer row.
        sa.Index("ix_customers_merged", "id", postgresql_where=sa.text("merged_into_id IS NOT NULL"),
                 sqlite_where=sa.text("merged_into_id IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Set when an admin merged this customer into another (storage/merges.py): the row stays, for
    # the undo, but lists and matching no longer see it.
    merged_into_id: int | None = Field(default=None, foreign_key="customers.id")


class CustomerRead(CustomerBase):
    id: int
    merged_into_id: int | None = None  # merged into that customer by an admin


class Direction(StrEnum):
    IN = "in"  # from the customer
    OUT = "out"  # to the customer
    SYS = "sys"  # a system note: flow started, registered, coupon issued, ...


class InteractionBase(SQLModel):
    customer_id: int = Field(foreign_key="customers.id")
    direction: str = Field(max_length=3)
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
    __table_args__ = (
        sa.Index("ix_interactions_customer_id_id", "customer_id", "id"),
        _one_of("interactions", "direction", Direction),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)


class InteractionRead(InteractionBase):
    id: int


class DeliveryKind(StrEnum):
    MESSAGE = "message"  # a reply or push of `messages`
    RICH_MENU = "rich_menu"  # link or unlink a rich menu (`effect`)
    MARK_READ = "mark_read"  # mark the customer's messages read on LINE (`effect`: {"token": markAsReadToken})


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a sender (taken back by the sweeper if it dies)
    SENT = "sent"
    FAILED = "failed"  # LINE refused it (4xx), or the customer blocked the account
    UNDETERMINED = "undetermined"  # may or may not have reached LINE; never sent again


class Delivery(SQLModel, table=True):
    """One outbound request to LINE: the outbox row written in the same transaction
    as the decision to send, then sent. A crash between the two leaves it pending
    for the sweeper; its retry key never changes, so a retried push is sent once.

    `kind` says what the request is: `message` (reply or push of `messages`) or a
    LINE-side effect such as `rich_menu` (link or unlink a menu, `effect` says which),
    so nothing that must reach LINE lives only in a process's memory."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.Index("ix_deliveries_status_created", "status", "created_at"),
        sa.Index("ix_deliveries_sender_id", "sender_id"),  # a sequence's per-step results (storage/sequences.py)
        _one_of("deliveries", "kind", DeliveryKind),
        _one_of("deliveries", "status", DeliveryStatus),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    sender_type: str = Field(max_length=16)  # bot | staff | campaign
    sender_id: str | None = Field(default=None, max_length=64)
    inbound_event_id: int | None = Field(default=None, foreign_key="inbound_events.id", sa_type=BigIntId)
    reply_token: str | None = Field(default=None, max_length=255)
    reply_deadline: datetime | None = _optional_time()
    kind: str = Field(default=DeliveryKind.MESSAGE, max_length=16)
    messages: list = Field(sa_type=JSONType)
    # For effects: what to do, e.g. {"menu": "registered"} for kind rich_menu.
    effect: dict | None = Field(default=None, sa_type=JSONType)
    retry_key: str = Field(max_length=36, unique=True)
    # pending -> sending -> sent | failed | undetermined
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
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
    __table_args__ = (_one_of("api_tokens", "role", Role),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    role: str = Field(max_length=16)  # a Role
    token_hash: str = Field(max_length=64, unique=True)
    token_prefix: str = Field(max_length=12)
    created_at: datetime = _created_at()
    last_used_at: datetime | None = _optional_time()
    revoked_at: datetime | None = _optional_time()
    # After this moment the token gets 401 (None: it never expires). Set at creation only.
    expires_at: datetime | None = _optional_time()


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


# -- coupons (issue 3) ---------------------------------------------------------------

from pydantic import AwareDatetime  # noqa: E402  (kept with the coupon classes: this section is appended)


class DiscountType(StrEnum):
    AMOUNT = "amount"  # yen off
    PERCENT = "percent"


class CouponTrigger(StrEnum):
    """When the bot gives a coupon by itself (None: only staff or the API give it)."""

    REGISTRATION = "registration"


class CouponBase(SQLModel):
    """What a marketer sets on a coupon. Cross-field rules (percent ≤ 100, a validity
    given, ...) are checked by `storage.coupons.check_coupon` on every create and update."""

    title: str = Field(min_length=1, max_length=40)
    description: str | None = Field(default=None, max_length=500, sa_type=sa.Text)
    discount_type: str = Field(max_length=8)  # a DiscountType
    discount_value: int  # yen, or percent 1-100
    # Validity: `valid_days` counts from the day a grant is issued (through the end of
    # that many days later, shop time); `valid_until` is a fixed end. With both, the
    # earlier wins. `valid_from` is when issuing may start.
    valid_days: int | None = None
    valid_from: datetime | None = _optional_time()
    valid_until: datetime | None = _optional_time()
    stock: int | None = None  # None: unlimited
    one_per_customer: bool = True
    image_url: str | None = Field(default=None, max_length=2000, sa_type=sa.Text)
    trigger: str | None = Field(default=None, max_length=20)  # a CouponTrigger, or None
    active: bool = True


class Coupon(CouponBase, table=True):
    """A coupon offer. `issued_count` only grows (revoking a grant does not give stock back);
    it is changed only by the conditional UPDATE in `coupons.issue`, never read-modify-write."""

    __tablename__ = "coupons"
    __table_args__ = (
        _one_of("coupons", "discount_type", DiscountType),
        _one_of("coupons", "trigger", CouponTrigger),
    )

    id: int | None = Field(default=None, primary_key=True)
    issued_count: int = 0
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


class CouponCreate(CouponBase):
    model_config = {"extra": "forbid"}  # a misspelt field is an error, not silently ignored

    discount_type: DiscountType
    valid_from: AwareDatetime | None = None  # with a UTC offset, e.g. 2026-12-01T00:00:00+09:00
    valid_until: AwareDatetime | None = None
    trigger: CouponTrigger | None = None


class CouponUpdate(SQLModel):
    """PATCH: every field optional; only the fields sent are changed (`exclude_unset`)."""

    model_config = {"extra": "forbid"}

    title: str | None = Field(default=None, min_length=1, max_length=40)
    description: str | None = Field(default=None, max_length=500)
    discount_type: DiscountType | None = None
    discount_value: int | None = None
    valid_days: int | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    stock: int | None = None
    one_per_customer: bool | None = None
    image_url: str | None = Field(default=None, max_length=2000)
    trigger: CouponTrigger | None = None
    active: bool | None = None


class CouponRead(CouponBase):
    id: int
    issued_count: int
    created_at: datetime
    updated_at: datetime


class GrantStatus(StrEnum):
    """What is stored; "expired" is not a status but read from `expires_at` (`coupons.grant_state`)."""

    ISSUED = "issued"
    REDEEMED = "redeemed"
    REVOKED = "revoked"


class CouponGrant(SQLModel, table=True):
    """One coupon given to one customer, with the code shown at the till.

    `status` is issued | redeemed | revoked; "expired" is not stored but derived from
    `expires_at` when read. The UNIQUE(coupon_id, customer_id, per_customer_key) guard
    makes "one per customer" a database fact: the key is "once" for one-per-customer
    coupons (a second grant conflicts) and the grant's own uuid otherwise (never conflicts).
    """

    __tablename__ = "coupon_grants"
    __table_args__ = (
        sa.UniqueConstraint("coupon_id", "customer_id", "per_customer_key", name="uq_coupon_grants_per_customer"),
        # "the customer's coupons, newest first": the LINE command and the API.
        sa.Index("ix_coupon_grants_customer_id_id", "customer_id", "id"),
        _one_of("coupon_grants", "status", GrantStatus),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    coupon_id: int = Field(foreign_key="coupons.id")
    customer_id: int = Field(foreign_key="customers.id")
    code: str = Field(max_length=24, unique=True)
    per_customer_key: str = Field(max_length=36)
    status: str = Field(default=GrantStatus.ISSUED, max_length=16)
    issued_at: datetime = _created_at()
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    redeemed_at: datetime | None = _optional_time()
    redeemed_by: str | None = Field(default=None, max_length=100)  # API token name or staff
    redeemed_where: str | None = Field(default=None, max_length=100)  # store / till id
    revoked_at: datetime | None = _optional_time()


# -- inquiries: FAQ, keyword rules, business hours (issue 4) -----------------------------

FAQ_ID_MAX = 64
FAQ_QUESTION_MAX = 200
FAQ_ANSWER_MAX = 5000  # LINE's limit for one text message
FAQ_ALTERNATE_MAX = 200
FAQ_ALTERNATES_MAX = 50  # phrasings per entry
FAQ_CATEGORY_MAX = 64
# A slug: it travels in postback data (action=faq&faq=<id>) and in URLs.
FAQ_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class FaqEntry(SQLModel, table=True):
    """One FAQ entry: the question, other phrasings of it, and the answer the bot sends
    exactly as stored. `id` is the operator's slug (the CSV's id column). Entries are
    disabled rather than deleted when a `--replace` import leaves them out, so feedback
    on the timeline keeps pointing at something."""

    __tablename__ = "faq_entries"

    id: str = Field(primary_key=True, max_length=FAQ_ID_MAX)
    question: str = Field(max_length=FAQ_QUESTION_MAX)
    answer: str = Field(sa_type=sa.Text)
    alternates: list = Field(default_factory=list, sa_type=JSONType)
    category: str | None = Field(default=None, max_length=FAQ_CATEGORY_MAX)
    enabled: bool = True
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


class FaqEntryCreate(SQLModel):
    model_config = {"extra": "forbid"}

    id: str = Field(min_length=1, max_length=FAQ_ID_MAX, schema_extra={"pattern": FAQ_ID_PATTERN})
    question: str = Field(min_length=1, max_length=FAQ_QUESTION_MAX)
    answer: str = Field(min_length=1, max_length=FAQ_ANSWER_MAX)
    alternates: list[str] = Field(default_factory=list, max_length=FAQ_ALTERNATES_MAX)
    category: str | None = Field(default=None, max_length=FAQ_CATEGORY_MAX)
    enabled: bool = True


class FaqEntryUpdate(SQLModel):
    """PUT: only the fields sent are changed (`exclude_unset`)."""

    model_config = {"extra": "forbid"}

    question: str | None = Field(default=None, min_length=1, max_length=FAQ_QUESTION_MAX)
    answer: str | None = Field(default=None, min_length=1, max_length=FAQ_ANSWER_MAX)
    alternates: list[str] | None = Field(default=None, max_length=FAQ_ALTERNATES_MAX)
    category: str | None = Field(default=None, max_length=FAQ_CATEGORY_MAX)
    enabled: bool | None = None


class FaqEntryRead(SQLModel):
    id: str
    question: str
    answer: str
    alternates: list[str]
    category: str | None
    enabled: bool
    created_at: datetime
    updated_at: datetime


class InquirySettings(SQLModel, table=True):
    """One row (id 1): how the bot answers inquiries, and the revision counters.

    `faq_revision` is bumped in the same transaction as any change to `faq_entries`;
    `config_revision` with any change to keyword rules, business hours or thresholds.
    Every worker process compares them with the revisions its FAQ index and rules were
    built from (one primary-key read per inquiry) and rebuilds when they differ."""

    __tablename__ = "inquiry_settings"

    id: int | None = Field(default=None, primary_key=True)
    faq_revision: int = Field(default=0, sa_type=sa.BigInteger)
    config_revision: int = Field(default=0, sa_type=sa.BigInteger)
    # Business hours in the shop's time zone (`shops.timezone`): {"mon": [["10:00", "20:00"]], ...};
    # a missing day is closed. None: not set, the bot never says "outside business hours".
    weekly_hours: dict | None = Field(default=None, sa_type=JSONType)
    holidays: list = Field(default_factory=list, sa_type=JSONType)  # ["2026-12-31", ...]
    # Overrides of the FAQ matcher's decision thresholds ({"answer": 0.55, ...}).
    thresholds: dict = Field(default_factory=dict, sa_type=JSONType)
    updated_at: datetime = _created_at()


KEYWORD_PATTERN_MAX = 200


class MatchType(StrEnum):
    """How a keyword rule's pattern matches a message (flows/faq/rules.py)."""

    EXACT = "exact"  # the whole message
    CONTAINS = "contains"  # anywhere in it
    REGEX = "regex"  # re.search, checked on save for its cost


class KeywordRuleBase(SQLModel):
    """A rule checked before the FAQ: when a message matches `pattern` (`match_type`
    exact | contains | regex, on NFKC-normalised, case-folded text), reply `reply_text`
    or start the flow whose postback action is `flow_action` (e.g. "register"); and, when
    `add_tag` is set, tag the customer (e.g. 「セール情報」 -> セール関心).
    Higher `priority` is checked first; ties by id."""

    name: str | None = Field(default=None, max_length=100)
    match_type: str = Field(max_length=8)
    pattern: str = Field(max_length=KEYWORD_PATTERN_MAX)
    reply_text: str | None = Field(default=None, sa_type=sa.Text)
    flow_action: str | None = Field(default=None, max_length=40)
    priority: int = 0
    enabled: bool = True
    add_tag: str | None = Field(default=None, max_length=40)  # TAG_MAX (defined below, with CustomerTag)


class KeywordRule(KeywordRuleBase, table=True):
    __tablename__ = "keyword_rules"
    __table_args__ = (_one_of("keyword_rules", "match_type", MatchType),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


class KeywordRuleCreate(KeywordRuleBase):
    model_config = {"extra": "forbid"}

    match_type: MatchType
    pattern: str = Field(min_length=1, max_length=KEYWORD_PATTERN_MAX)
    reply_text: str | None = Field(default=None, min_length=1, max_length=FAQ_ANSWER_MAX)
    priority: int = Field(default=0, ge=-1000, le=1000)


class KeywordRuleUpdate(SQLModel):
    model_config = {"extra": "forbid"}

    name: str | None = Field(default=None, max_length=100)
    match_type: MatchType | None = None
    pattern: str | None = Field(default=None, min_length=1, max_length=KEYWORD_PATTERN_MAX)
    reply_text: str | None = Field(default=None, min_length=1, max_length=FAQ_ANSWER_MAX)
    flow_action: str | None = Field(default=None, max_length=40)
    priority: int | None = Field(default=None, ge=-1000, le=1000)
    enabled: bool | None = None
    add_tag: str | None = Field(default=None, max_length=40)  # TAG_MAX (defined below, with CustomerTag)


class KeywordRuleRead(KeywordRuleBase):
    id: int
    created_at: datetime
    updated_at: datetime


# -- the staff console: staff accounts, their sessions, login attempts, the audit log (issue 13) --

from .roles import STAFF_ROLES  # noqa: E402  (this section is appended)

STAFF_EMAIL_MAX = 254
STAFF_NAME_MAX = 80
CONSOLE_LOCALES = ("ja", "en")


class Staff(SQLModel, table=True):
    """A person who logs in to the console. Never deleted (the audit log names them):
    `disabled_at` ends their access. `email` is stored lower-cased and is the login."""

    __tablename__ = "staff"
    __table_args__ = (
        _one_of("staff", "role", STAFF_ROLES),
        _one_of("staff", "locale", CONSOLE_LOCALES),
    )

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=STAFF_EMAIL_MAX, unique=True)
    display_name: str = Field(max_length=STAFF_NAME_MAX)
    role: str = Field(max_length=16)  # kizuna.storage.roles.STAFF_ROLES
    password_hash: str = Field(max_length=255)  # argon2id, PHC string
    password_changed_at: datetime = _created_at()
    # TOTP (RFC 6238): the base32 secret, sealed (storage/sealed.py); enabled once a code from it was confirmed.
    # `totp_last_step` is the time step of the last code accepted: a code is good once.
    totp_secret: str | None = Field(default=None, max_length=255)
    totp_enabled_at: datetime | None = _optional_time()
    totp_last_step: int | None = Field(default=None, sa_type=sa.BigInteger)
    locale: str = Field(default="ja", max_length=8)
    created_at: datetime = _created_at()
    last_login_at: datetime | None = _optional_time()
    disabled_at: datetime | None = _optional_time()


class StaffSession(SQLModel, table=True):
    """A console login. The cookie holds 32 random bytes; only their SHA-256 is stored, so
    any `serve` process can check a session and a copy of the table logs nobody in.

    A session waiting for the second factor (`awaiting_totp`) only opens the code page.
    `csrf_token` is the synchronizer token of this session's forms."""

    __tablename__ = "staff_sessions"
    __table_args__ = (sa.Index("ix_staff_sessions_staff_id_ended", "staff_id", "ended_at"),)

    id_hash: str = Field(primary_key=True, max_length=64)
    staff_id: int = Field(foreign_key="staff.id")
    csrf_token: str = Field(max_length=64)
    awaiting_totp: bool = False
    created_at: datetime = _created_at()
    last_seen_at: datetime = _created_at()
    ended_at: datetime | None = _optional_time()
    # logout | ended_by_admin | password_changed | disabled | replaced (a new login in this browser)
    ended_reason: str | None = Field(default=None, max_length=32)
    ip: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=200)


LOGIN_OUTCOMES = ("pending", "failed", "succeeded", "throttled")


class LoginAttempt(SQLModel, table=True):
    """One login attempt (a password or a two-factor code), stored before it is checked:
    the throttle counts these rows, so it holds across processes. Pruned after a day."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        sa.Index("ix_login_attempts_email_at", "email", "at"),
        sa.Index("ix_login_attempts_ip_at", "ip", "at"),
        sa.Index("ix_login_attempts_at", "at"),  # pruning
        _one_of("login_attempts", "outcome", LOGIN_OUTCOMES),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    email: str = Field(max_length=STAFF_EMAIL_MAX)  # as typed, normalised; may name no account
    ip: str = Field(max_length=45)
    outcome: str = Field(default="pending", max_length=16)
    at: datetime = _created_at()


class AuditEntry(SQLModel, table=True):
    """Append-only: who did what, when, from where. Rows are only ever inserted (the
    migration adds triggers that refuse UPDATE and DELETE), in the same transaction as the
    action they record. `actor` is the staff member's e-mail at the time, "cli", or an API
    token's name; `action` is a `kizuna.storage.audit.Action`."""

    __tablename__ = "audit_entries"
    __table_args__ = (sa.Index("ix_audit_entries_action_id", "action", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    at: datetime = _created_at()
    actor_staff_id: int | None = Field(default=None, index=True)
    actor: str = Field(max_length=STAFF_EMAIL_MAX)
    action: str = Field(max_length=40)
    target: str | None = Field(default=None, max_length=200)
    details: dict = Field(default_factory=dict, sa_type=JSONType)
    ip: str | None = Field(default=None, max_length=45)
    user_agent: str | None = Field(default=None, max_length=200)


# -- support conversations (issue 13) ----------------------------------------------------------

class ConversationStatus(StrEnum):
    PENDING = "pending"  # waiting for a person
    OPEN = "open"  # a person owns it
    RESOLVED = "resolved"  # handed back to the bot


class ConversationPriority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Conversation(SQLModel, table=True):
    """A support thread (Chatwoot's word): from a handoff until a person resolves it; a
    later handoff reopens it (or opens a new one after a gap). While it is pending or
    open the bot stays silent to free text. Its messages are the customer's timeline
    from `created_at` on (those written between a resolve and a reopen included), plus
    staff's private notes."""

    __tablename__ = "conversations"
    __table_args__ = (
        _one_of("conversations", "status", ConversationStatus),
        _one_of("conversations", "priority", ConversationPriority),
        sa.CheckConstraint("csat_score IS NULL OR csat_score BETWEEN 1 AND 5", name="ck_conversations_csat_score"),
        # At most one conversation a person owns or must take, per customer.
        sa.Index(
            "ux_conversations_active_customer", "customer_id", unique=True,
            sqlite_where=sa.text("status != 'resolved'"), postgresql_where=sa.text("status != 'resolved'"),
        ),
        # The inbox: by status, longest waiting first.
        sa.Index("ix_conversations_status_waiting", "status", "waiting_since"),
        sa.Index("ix_conversations_customer_id", "customer_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id")
    status: str = Field(default=ConversationStatus.PENDING, max_length=16)
    assignee_id: int | None = Field(default=None, foreign_key="staff.id")  # the staff member who owns it
    priority: str = Field(default=ConversationPriority.NORMAL, max_length=8)
    labels: list = Field(default_factory=list, sa_type=JSONType)
    # How it (last) began: keyword | button | complaint | unanswered | staff
    reason: str = Field(max_length=16)
    created_at: datetime = _created_at()
    # Since when the customer has been waiting for a person (set at each handoff).
    waiting_since: datetime = _created_at()
    first_response_at: datetime | None = _optional_time()
    resolved_at: datetime | None = _optional_time()
    csat_score: int | None = None
    csat_at: datetime | None = _optional_time()


class ConversationNote(SQLModel, table=True):
    """Staff's private note on a conversation: never sent, never on the customer's timeline."""

    __tablename__ = "conversation_notes"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversations.id", index=True)
    author: str = Field(max_length=64)  # who wrote it: "staff:<id>" or "token:<id>"
    text: str = Field(sa_type=sa.Text)
    created_at: datetime = _created_at()


# -- the support console: canned responses, customer tags, cached media (issue 13) ------------

CANNED_SHORTCUT_MAX = 32
CANNED_TITLE_MAX = 80
TAG_MAX = 40


class CannedResponse(SQLModel, table=True):
    """A reply staff pick instead of typing it (Chatwoot's word). `{name}` in `text` is
    filled with the customer's name when it is used (`storage.canned.fill`)."""

    __tablename__ = "canned_responses"

    id: int | None = Field(default=None, primary_key=True)
    shortcut: str = Field(max_length=CANNED_SHORTCUT_MAX, unique=True)
    title: str = Field(max_length=CANNED_TITLE_MAX)
    text: str = Field(sa_type=sa.Text)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


class CustomerTag(SQLModel, table=True):
    """A tag (タグ) staff put on a customer: free text, at most once per customer. The
    index on `tag` serves "every customer with this tag" (segments)."""

    __tablename__ = "customer_tags"

    customer_id: int = Field(foreign_key="customers.id", primary_key=True)
    tag: str = Field(max_length=TAG_MAX, primary_key=True, index=True)
    created_at: datetime = _created_at()


class MediaContent(SQLModel, table=True):
    """What a customer sent as an image, video, audio or file, fetched once from LINE's
    content endpoint and kept here: LINE deletes it after a while, and every `serve`
    process shows it from the same place."""

    __tablename__ = "media_contents"

    message_id: str = Field(primary_key=True, max_length=64)
    content_type: str = Field(max_length=100)
    size: int
    data: bytes = Field(sa_type=sa.LargeBinary)
    fetched_at: datetime = _created_at()


# -- orders and one customer per person (issue 14) ----------------------------------------------

from pydantic import ValidationInfo, field_validator, model_validator  # noqa: E402  (this section is appended)

import unicodedata  # noqa: E402

from . import prefectures  # noqa: E402
from .identity_values import IDENTITY_VALUE_MAX, BadIdentity, IdentityKind, normalise  # noqa: E402

ORDER_EXTERNAL_ID_MAX = 64
ORDER_STORE_MAX = 100
SKU_MAX = 64
ITEM_NAME_MAX = 200
ITEM_CATEGORY_MAX = 100


class OrderChannel(StrEnum):
    EC = "ec"  # the shop's online store
    STORE = "store"  # a till in a shop (POS)


class OrderStatus(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    RETURNED = "returned"


class Order(SQLModel, table=True):
    """An order from the shop's EC site or POS, keyed by the shop's own `external_id`: a re-sent
    order is the same row. `fingerprint` is a hash of everything the shop sent for it (items
    included), so an unchanged re-send is recognised without comparing column by column.
    `total` is in yen, tax included, as the shop's system reports it."""

    __tablename__ = "orders"
    __table_args__ = (
        # A customer's orders by time: their history, recency and frequency.
        sa.Index("ix_orders_customer_id_ordered_at", "customer_id", "ordered_at"),
        _one_of("orders", "channel", OrderChannel),
        _one_of("orders", "status", OrderStatus),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    external_id: str = Field(max_length=ORDER_EXTERNAL_ID_MAX, unique=True)
    customer_id: int = Field(foreign_key="customers.id")
    ordered_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    total: int
    channel: str | None = Field(default=None, max_length=8)  # an OrderChannel; None: not said
    store: str | None = Field(default=None, max_length=ORDER_STORE_MAX)
    status: str = Field(default=OrderStatus.COMPLETED, max_length=16)
    fingerprint: str = Field(max_length=64)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


class OrderItem(SQLModel, table=True):
    """One line of an order. Replaced as a whole when the order changes (the shop's system is
    the truth about its lines; there is nothing of ours on them to keep)."""

    __tablename__ = "order_items"
    __table_args__ = (sa.UniqueConstraint("order_id", "line_no", name="uq_order_items_order_line"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    order_id: int = Field(foreign_key="orders.id", sa_type=BigIntId)
    line_no: int  # 1, 2, ... in the order the shop sent the lines
    sku: str = Field(max_length=SKU_MAX)
    name: str | None = Field(default=None, max_length=ITEM_NAME_MAX)
    category: str | None = Field(default=None, max_length=ITEM_CATEGORY_MAX)
    quantity: int
    unit_price: int  # yen


class CustomerIdentity(SQLModel, table=True):
    """A way to recognise a customer: LINE user id, the shop's customer id, e-mail, phone, stored
    normalised (`identity_values.normalise`). Unique per (kind, value): a value names at most
    one customer, which is how an incoming order or record finds its customer."""

    __tablename__ = "customer_identities"
    __table_args__ = (
        sa.UniqueConstraint("kind", "value", name="uq_customer_identities_kind_value"),
        _one_of("customer_identities", "kind", IdentityKind),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    kind: str = Field(max_length=24)  # an IdentityKind
    value: str = Field(max_length=IDENTITY_VALUE_MAX)
    created_at: datetime = _created_at()


class MergeStatus(StrEnum):
    PENDING = "pending"  # for an admin to decide
    MERGED = "merged"
    DISMISSED = "dismissed"  # not the same person


class MergeCandidate(SQLModel, table=True):
    """Two customers who may be one person: a record matched both (an order whose e-mail is one
    customer's and whose phone is another's, a LINE customer registering with the e-mail of an
    EC customer). Never merged silently: an admin decides. One row per pair, the lower id
    first; `kind`/`value` say what matched the second when it was first seen."""

    __tablename__ = "merge_candidates"
    __table_args__ = (
        sa.UniqueConstraint("customer_id", "other_customer_id", name="uq_merge_candidates_pair"),
        sa.CheckConstraint("customer_id < other_customer_id", name="ck_merge_candidates_order"),
        _one_of("merge_candidates", "status", MergeStatus),
        _one_of("merge_candidates", "kind", IdentityKind),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id")
    other_customer_id: int = Field(foreign_key="customers.id", index=True)
    kind: str = Field(max_length=24)
    value: str = Field(max_length=IDENTITY_VALUE_MAX)
    source: str = Field(max_length=100)  # what found it: "order:<external_id>", "registration", "customer_record"
    status: str = Field(default=MergeStatus.PENDING, max_length=16)
    created_at: datetime = _created_at()
    decided_at: datetime | None = _optional_time()


# What the shop's systems send (REST API and CSV import alike): validated and normalised here,
# so both refuse the same things with the same words.

INT4_MAX = 2**31 - 1  # PostgreSQL's integer: the bound of totals, prices and quantities on both backends
ORDER_ITEMS_MAX = 1000
CUSTOMER_REFS = tuple(str(kind) for kind in IdentityKind)


def _blank_to_none(value: Any) -> Any:
    """A CSV cell or JSON string of only spaces says nothing: the same as leaving it out."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class OrderItemCreate(SQLModel):
    model_config = {"extra": "forbid"}

    sku: str = Field(min_length=1, max_length=SKU_MAX, schema_extra={"pattern": r"\S"})
    name: str | None = Field(default=None, max_length=ITEM_NAME_MAX)
    category: str | None = Field(default=None, max_length=ITEM_CATEGORY_MAX)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    unit_price: int = Field(ge=0, le=INT4_MAX)  # yen

    @field_validator("sku", "name", "category", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _blank_to_none(_stripped(value))


class CustomerReferences(SQLModel):
    """How a record from the shop's systems names its customer (orders and customer records):
    at least one reference, each normalised (identity_values), so matching and fingerprints do
    not depend on how the other system typed an e-mail or a phone number."""

    line_user_id: str | None = Field(default=None, max_length=64)
    external_customer_id: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=IDENTITY_VALUE_MAX)
    phone: str | None = Field(default=None, max_length=40)

    # (a subclass with more fields to blank names its own `_blank`, which replaces this one)
    @field_validator(*CUSTOMER_REFS, mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator(*CUSTOMER_REFS)
    @classmethod
    def _identity(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        try:
            return normalise(info.field_name, value)
        except BadIdentity as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _someone(self) -> "CustomerReferences":
        if not any(getattr(self, name) for name in CUSTOMER_REFS):
            raise ValueError(f"needs a customer reference: one of {', '.join(CUSTOMER_REFS)}")
        return self

    def refs(self) -> list[tuple[str, str]]:
        """The customer references given, as (kind, value), in IdentityKind's precedence."""
        return [(name, getattr(self, name)) for name in CUSTOMER_REFS if getattr(self, name)]


class OrderCreate(CustomerReferences):
    """One order as the shop's EC site or POS sends it. At least one customer reference; each is
    normalised (identity_values), so the stored order and its fingerprint do not depend on how
    the other system typed an e-mail or a phone number."""

    model_config = {"extra": "forbid"}

    external_id: str = Field(min_length=1, max_length=ORDER_EXTERNAL_ID_MAX, schema_extra={"pattern": r"\S"})
    ordered_at: AwareDatetime  # ISO 8601 with its UTC offset: 2026-12-01T10:30:00+09:00
    total: int = Field(ge=0, le=INT4_MAX)  # yen, tax included
    channel: OrderChannel | None = None
    store: str | None = Field(default=None, max_length=ORDER_STORE_MAX)
    status: OrderStatus = OrderStatus.COMPLETED
    items: list[OrderItemCreate] = Field(default_factory=list, max_length=ORDER_ITEMS_MAX)

    @field_validator("external_id", "store", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _blank_to_none(_stripped(value))




class OrderBatchCreate(SQLModel):
    """Up to 1,000 orders in one request: all stored, or (one is invalid) none."""

    model_config = {"extra": "forbid"}

    orders: list[OrderCreate] = Field(min_length=1, max_length=1000)


class CartEventKind(StrEnum):
    ADDED = "added"  # an item put in the cart
    REMOVED = "removed"  # taken out again
    CHECKOUT_STARTED = "checkout_started"  # the customer went to the checkout
    ABANDONED = "abandoned"  # the shop's system gave the cart up (no order after the checkout or a while)


CART_EXTERNAL_ID_MAX = 64
CART_ID_MAX = 64


class CartEvent(SQLModel, table=True):
    """The ledger of cart events received, keyed by the shop's idempotency key `external_id`: a
    re-sent event finds its row and changes nothing. What the event said, and whose it is, lives
    on the customer's timeline (an interaction `cart.<kind>`), which a customer merge moves."""

    __tablename__ = "cart_events"
    __table_args__ = (_one_of("cart_events", "kind", CartEventKind),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    external_id: str = Field(max_length=CART_EXTERNAL_ID_MAX, unique=True)
    kind: str = Field(max_length=24)  # a CartEventKind
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: datetime = _created_at()


class CartEventCreate(CustomerReferences):
    """One cart event from the shop's EC site: what the customer did with their cart, when. At
    least one customer reference (as on orders). `sku` is required for `added` and `removed`;
    `checkout_started` and `abandoned` may name the whole cart (`cart_id`) instead of an item.
    `external_id` is the shop's idempotency key: an event sent again changes nothing."""

    model_config = {"extra": "forbid"}

    external_id: str = Field(min_length=1, max_length=CART_EXTERNAL_ID_MAX, schema_extra={"pattern": r"\S"})
    occurred_at: AwareDatetime  # ISO 8601 with its UTC offset: 2026-12-01T10:30:00+09:00
    kind: CartEventKind
    sku: str | None = Field(default=None, max_length=SKU_MAX)
    name: str | None = Field(default=None, max_length=ITEM_NAME_MAX)
    category: str | None = Field(default=None, max_length=ITEM_CATEGORY_MAX)
    quantity: int = Field(default=1, ge=1, le=1_000_000)
    unit_price: int | None = Field(default=None, ge=0, le=INT4_MAX)  # yen
    cart_id: str | None = Field(default=None, max_length=CART_ID_MAX)

    @field_validator("external_id", "sku", "name", "category", "cart_id", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return _blank_to_none(_stripped(value))


    @model_validator(mode="after")
    def _item_named(self) -> "CartEventCreate":
        if self.kind in (CartEventKind.ADDED, CartEventKind.REMOVED) and not self.sku:
            raise ValueError(f"a cart event of kind {self.kind.value} needs the item's sku")
        return self


class CartEventBatchCreate(SQLModel):
    """Up to 1,000 cart events in one request: all stored, or (one is invalid) none."""

    model_config = {"extra": "forbid"}

    events: list[CartEventCreate] = Field(min_length=1, max_length=1000)


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNANSWERED = "unanswered"


# What Japanese exports write for gender, besides the English values.
_GENDER_WORDS = {"女性": "female", "女": "female", "f": "female", "男性": "male", "男": "male", "m": "male",
                 "その他": "other", "回答しない": "unanswered", "無回答": "unanswered", "不明": "unanswered"}
CUSTOMER_TAGS_MAX = 20


class CustomerRecordCreate(CustomerReferences):
    """A customer as the shop's EC site or POS knows them. At least one reference (as on orders);
    the rest fills the customer's details (see storage/customer_records.py for which win)."""

    model_config = {"extra": "forbid"}

    name: str | None = Field(default=None, max_length=80)
    kana: str | None = Field(default=None, max_length=80)
    birthday: date | None = None
    gender: Gender | None = None
    prefecture: str | None = Field(default=None, max_length=20)  # any common spelling: 東京, とうきょう, tokyo
    tags: list[str] = Field(default_factory=list, max_length=CUSTOMER_TAGS_MAX)

    @field_validator(*CUSTOMER_REFS, "name", "kana", "birthday", "gender", "prefecture", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return unicodedata.normalize("NFKC", value).strip() if isinstance(value, str) else value

    @field_validator("gender", mode="before")
    @classmethod
    def _gender(cls, value: Any) -> Any:
        return _GENDER_WORDS.get(value.lower(), value.lower()) if isinstance(value, str) else value

    @field_validator("prefecture")
    @classmethod
    def _prefecture(cls, value: str | None) -> str | None:
        if value is None:
            return None
        found = prefectures.lookup(value)
        if found is None:
            raise ValueError("not a prefecture of Japan")
        return found.name

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        cleaned = []
        for tag in value:
            text = " ".join(unicodedata.normalize("NFKC", tag).split())
            if not text or len(text) > TAG_MAX or any(unicodedata.category(char).startswith("C") for char in text):
                raise ValueError(f"a tag is 1 to {TAG_MAX} characters, no control characters")
            if text not in cleaned:
                cleaned.append(text)
        return cleaned



class CustomerRecordBatchCreate(SQLModel):
    model_config = {"extra": "forbid"}

    customers: list[CustomerRecordCreate] = Field(min_length=1, max_length=1000)


class CustomerMerge(SQLModel, table=True):
    """An admin merged `merged_customer_id` into `customer_id` (storage/merges.py). `moved` lists
    the rows that moved, by table (ids; tags by name) and `filled` the kept customer's columns that
    were empty and took the merged one's value: what an undo (within 7 days) puts back."""

    __tablename__ = "customer_merges"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    merged_customer_id: int = Field(foreign_key="customers.id", index=True)
    candidate_id: int | None = Field(default=None, foreign_key="merge_candidates.id")
    moved: dict = Field(default_factory=dict, sa_type=JSONType)
    filled: dict = Field(default_factory=dict, sa_type=JSONType)
    merged_at: datetime = _created_at()
    merged_by: str = Field(max_length=STAFF_EMAIL_MAX)
    undone_at: datetime | None = _optional_time()
    undone_by: str | None = Field(default=None, max_length=STAFF_EMAIL_MAX)

# -- customer metrics and segments (issue 14, sections 3-5) -----------------------------------------


class CustomerMetrics(SQLModel, table=True):
    """A customer's purchase figures, kept current by the order upsert (storage/customer_metrics.py)
    so that segments read one row per customer instead of aggregating orders. Only completed
    orders count; a customer whose orders are all cancelled has a row with frequency 0.

    Not stored, because they would go stale as time passes: `recency_days` and `rfm_r` (both
    follow from `last_order_at` and the clock, computed when read). `decile` depends on everyone
    else's spend and is refreshed for the whole population (`customer_metrics.refresh_population`);
    `p_alive`, `expected_purchases` and `model_ltv` are written by the churn model's daily job
    (campaigns/churn.py: BG/NBD + Gamma-Gamma, campaigns/clv_model.py) and None until it has
    fitted, or while it cannot fit (too few repeat customers)."""

    __tablename__ = "customer_metrics"
    __table_args__ = (
        # Recency conditions (`recency_days`, `rfm_r`) are ranges on last_order_at; with the columns
        # the presets add to them (frequency, F, M) and the id, a segment's count is an index-only scan.
        sa.Index("ix_customer_metrics_recency", "last_order_at", "frequency", "rfm_f", "rfm_m", "customer_id"),
    )

    customer_id: int = Field(foreign_key="customers.id", primary_key=True)
    first_order_at: datetime | None = _optional_time()
    last_order_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    frequency: int = 0  # completed orders
    monetary: int = Field(default=0, sa_type=sa.BigInteger)  # yen, sum of completed orders' totals
    average_order_value: int = 0  # yen, rounded down
    f2: bool = False  # a second completed order
    rfm_f: int | None = None  # 1-5 by `frequency`, None without a completed order
    rfm_m: int | None = None  # 1-5 by `monetary`
    decile: int | None = None  # 1 (top 10 % by spend) .. 10, None without a completed order
    ltv: int = Field(default=0, sa_type=sa.BigInteger)  # yen: AOV × margin × purchases/year × years
    p_alive: float | None = None  # BG/NBD P(alive), as of the model's last run
    expected_purchases: float | None = None  # BG/NBD: purchases (order days) expected in the next N days
    model_ltv: int | None = Field(default=None, sa_type=sa.BigInteger)  # yen: BG/NBD × Gamma-Gamma × margin
    updated_at: datetime = _created_at()


class MetricSettings(SQLModel, table=True):
    """One row (id 1): the shop's overrides of the metric defaults in code
    (storage/customer_metrics.py `MetricRules`): RFM thresholds, gross margin, expected years.
    Follows `InquirySettings`: defaults live in code, the row holds only what the shop changed."""

    __tablename__ = "metric_settings"

    id: int | None = Field(default=None, primary_key=True)
    overrides: dict = Field(default_factory=dict, sa_type=JSONType)
    updated_at: datetime = _created_at()
    # When a worker last recomputed the deciles on schedule (`customer_metrics.refresh_population_if_due`).
    deciles_refreshed_at: datetime | None = _optional_time()
    # When a worker last claimed the churn model's daily fit (`customer_metrics.claim_churn_model`);
    # None: due now (set so after a CSV import of orders).
    churn_model_claimed_at: datetime | None = _optional_time()
    # A settings change asks the workers to rescore everyone (`customer_metrics.rescore_if_requested`):
    # when it was asked (None: nothing to do), and when a worker took it on (a lease).
    rescore_requested_at: datetime | None = _optional_time()
    rescore_claimed_at: datetime | None = _optional_time()
    # The churn model's last run (campaigns/churn.py `ModelStatus.as_json`): when, fitted or why
    # not, the parameters. None: never run.
    churn_model: dict | None = Field(default=None, sa_type=JSONType, nullable=True)


SEGMENT_NAME_MAX = 100


class Segment(SQLModel, table=True):
    """A marketer's saved audience: a JSON rule (campaigns/segments.py) compiled to SQL whenever
    it is evaluated, so its members are always today's."""

    __tablename__ = "segments"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=SEGMENT_NAME_MAX)
    rule: dict = Field(sa_type=JSONType)
    created_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()


FRIEND_SOURCE_NAME_MAX = 100
FRIEND_SOURCE_CODE_MAX = 32


class FriendSource(SQLModel, table=True):
    """A friend-add source (流入経路): a link / QR code `/f/{code}` that sends people through LINE
    Login with the add-friend option (storage/friend_sources.py). `code` is a short random slug
    (unguessable: nobody can count another shop's sources or forge visits to one they never saw)."""

    __tablename__ = "friend_sources"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=FRIEND_SOURCE_CODE_MAX, unique=True)
    name: str = Field(max_length=FRIEND_SOURCE_NAME_MAX)
    tag: str | None = Field(default=None, max_length=TAG_MAX)  # added to the people who come through it
    clicks: int = 0  # opens of the link, counted before LINE Login (people who gave up included)
    archived: bool = False
    created_at: datetime = _created_at()


class FriendSourceAttribution(SQLModel, table=True):
    """Where a LINE user came from: one row per LINE user id, the first source wins. Written when
    the LINE Login callback says who came through which source; `resolved_at` / `customer_id` are
    set once the follow is known too (whichever of the callback and the follow webhook comes
    second), which is when the source's tag is added. A pending row (the person logged in but has
    not added the friend yet) may still be taken over by a later source."""

    __tablename__ = "friend_source_attributions"

    line_user_id: str = Field(max_length=64, primary_key=True)
    source_id: int = Field(foreign_key="friend_sources.id", index=True)
    customer_id: int | None = Field(default=None, foreign_key="customers.id", index=True)
    attributed_at: datetime = _created_at()
    resolved_at: datetime | None = _optional_time()


class FriendSourceVisit(SQLModel, table=True):
    """Every verified LINE Login through a source, attributed or not: a re-follow through another
    source, or a friend of long standing scanning a poster, is recorded here without taking the
    first source's attribution."""

    __tablename__ = "friend_source_visits"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    source_id: int = Field(foreign_key="friend_sources.id", index=True)
    line_user_id: str = Field(max_length=64)
    friendship_changed: bool = False  # LINE's friendship_status_changed: added (or unblocked) on the login screen
    attributed: bool = False  # this visit is the one the person is attributed to
    created_at: datetime = _created_at()


# -- campaigns: segment-targeted pushes (campaigns/campaigns.py, storage/campaign_batches.py, bot/campaign_sender.py)

CAMPAIGN_NAME_MAX = 100


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"  # waits for send_at (and the end of quiet hours)
    RUNNING = "running"  # audience snapshotted; senders work through its batches
    PAUSED = "paused"  # senders take no more batches until resumed
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class DeliveryMethod(StrEnum):
    MULTICAST = "multicast"  # identical content, up to 500 recipients a request
    PUSH = "push"  # personalised content: one request per recipient


class CampaignDelivery(StrEnum):
    """How a campaign's identical content reaches LINE (personalised content is always pushed)."""

    AUTO = "auto"  # multicast below the narrowcast threshold (a setting), narrowcast above
    MULTICAST = "multicast"
    NARROWCAST = "narrowcast"  # one request per variant to a LINE audience uploaded from the snapshot


CAMPAIGN_RECURRENCE_MAX = 100


class Campaign(SQLModel, table=True):
    """A marketer's push to a segment (a saved one, or an inline rule kept as it was when saved)."""

    __tablename__ = "campaigns"
    __table_args__ = (
        sa.Index("ix_campaigns_status_send_at", "status", "send_at"),
        _one_of("campaigns", "status", CampaignStatus),
        _one_of("campaigns", "delivery", CampaignDelivery),
        # A recurring campaign's occurrence is one run, once, whoever schedules it.
        sa.UniqueConstraint("parent_id", "occurrence_at", name="uq_campaigns_parent_occurrence"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=CAMPAIGN_NAME_MAX)
    segment_id: int | None = Field(default=None, foreign_key="segments.id")
    rule: dict | None = Field(default=None, sa_type=JSONType)
    status: str = Field(default=CampaignStatus.DRAFT, max_length=16)
    send_at: datetime | None = _optional_time()  # None with status scheduled: as soon as possible
    quiet_hours: bool = True  # held (not dropped) from 21:00 to 09:00 in the shop's zone
    frequency_cap: bool = True  # at most N marketing pushes per customer per 7 days (shop setting)
    holdout_percent: int = 0  # a control group that receives nothing (0: none)
    # Links in the messages become /r/{token} per recipient (clicks counted; content then personalised: push).
    track_links: bool = True
    # A coupon each recipient gets their own grant of, sent as a coupon card after the messages.
    coupon_id: int | None = Field(default=None, foreign_key="coupons.id")
    # The customAggregationUnits name LINE counts opens and clicks under (insight API).
    aggregation_unit: str | None = Field(default=None, max_length=30)
    created_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()
    started_at: datetime | None = _optional_time()  # when the audience was snapshotted
    completed_at: datetime | None = _optional_time()
    # Counts of the snapshot: {"targeted": n, "control": n, "blocked": n, "opted_out": n, "capped": n, "not_on_line": n}
    audience: dict | None = Field(default=None, sa_type=JSONType)
    note: str | None = Field(default=None, sa_type=sa.Text)  # why it waits or stopped (quiet hours, quota)
    delivery: str = Field(default=CampaignDelivery.AUTO, max_length=16)  # what the marketer asked for
    # Resolved at the start: the snapshot goes out by narrowcast (campaign_narrowcasts), not by batches.
    by_narrowcast: bool = False
    # Set (with the campaign row locked) just before the first narrowcast request: from then on LINE
    # delivers, and the campaign can no longer be paused or cancelled.
    narrowcast_sent_at: datetime | None = _optional_time()
    # A recurring campaign: a cron rule (minute hour day month weekday, in the shop's zone). It is a
    # template: each occurrence starts a run, a child campaign with `parent_id` and `occurrence_at`.
    recurrence: str | None = Field(default=None, max_length=CAMPAIGN_RECURRENCE_MAX)
    parent_id: int | None = Field(default=None, foreign_key="campaigns.id", index=True)
    occurrence_at: datetime | None = _optional_time()


class CampaignVariant(SQLModel, table=True):
    """One version of the campaign's messages (A/B split: up to 4, each with its share)."""

    __tablename__ = "campaign_variants"

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    label: str = Field(max_length=1)  # A, B, C, D
    percent: int  # share of the audience outside the control group
    messages: list = Field(sa_type=JSONType)
    method: str = Field(default=DeliveryMethod.MULTICAST, max_length=16)
    # The links of the messages, tracked: link n of a recipient's message is /r/{token of n}.
    links: list = Field(default_factory=list, sa_type=JSONType)


class RecipientStatus(StrEnum):
    QUEUED = "queued"  # in a batch: sent when the batch is (its status is the batch's)
    CONTROL = "control"  # the holdout group: receives nothing
    BLOCKED = "blocked"  # left out: blocked the account (before the snapshot or before the send)
    OPTED_OUT = "opted_out"  # left out: said no to marketing messages
    CAPPED = "capped"  # left out: frequency cap reached
    NOT_ON_LINE = "not_on_line"  # known from orders or records only
    FAILED = "failed"  # LINE refused the request for this recipient (reason kept)


class CampaignRecipient(SQLModel, table=True):
    """A customer of a campaign's audience snapshot, written set-based at start. A queued
    recipient's delivery status is its batch's: the sender updates one batch row, not 500."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        sa.Index("ix_campaign_recipients_batch", "campaign_id", "variant_id", "batch_seq"),
        _one_of("campaign_recipients", "status", RecipientStatus),
    )

    # No foreign keys here, on purpose: the rows are written only by the snapshot's INSERT … SELECT
    # from customers, for a campaign and variants it has just read, and a key's check per row cost
    # 70 % of a snapshot (three triggers a row: 1.6 s of 2.2 s at 100k recipients, EXPLAIN ANALYZE).
    campaign_id: int = Field(primary_key=True)
    customer_id: int = Field(primary_key=True)
    variant_id: int | None = None
    batch_seq: int | None = None
    status: str = Field(max_length=16)
    line_user_id: str | None = Field(default=None, max_length=64)  # as at the snapshot: the senders read no customer row
    reason: str | None = Field(default=None, max_length=200)


class BatchStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a sender (taken back when its claim times out)
    SENT = "sent"
    FAILED = "failed"  # LINE refused it (4xx): the reason is kept
    UNDETERMINED = "undetermined"  # may have reached LINE; never sent again (retry key too old)


class CampaignBatch(SQLModel, table=True):
    """One request to LINE (multicast of up to 500) or, for personalised content, one group of
    pushes. Its retry key is stored with it before the first attempt and reused by every retry
    (a push's key is derived from it and the customer), so LINE executes it once."""

    __tablename__ = "campaign_batches"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "variant_id", "seq"),
        sa.Index("ix_campaign_batches_status", "status", "campaign_id"),
        _one_of("campaign_batches", "status", BatchStatus),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    campaign_id: int = Field(foreign_key="campaigns.id")
    variant_id: int = Field(foreign_key="campaign_variants.id")
    seq: int
    recipients: int
    retry_key: str = Field(max_length=36, unique=True)
    status: str = Field(default=BatchStatus.PENDING, max_length=16)
    attempts: int = 0
    first_attempt_at: datetime | None = _optional_time()  # LINE forgets the key 24 h after this
    claimed_at: datetime | None = _optional_time()
    sent_at: datetime | None = _optional_time()
    duplicate: bool = False  # LINE answered 409: an earlier attempt had been accepted
    line_request_id: str | None = Field(default=None, max_length=64)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    timeline_written: bool = False  # the recipients' timeline rows are written behind the sender


class CampaignClick(SQLModel, table=True):
    """A tap on a campaign's tracked link (/r/{token}): who, which link, when."""

    __tablename__ = "campaign_clicks"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    campaign_id: int = Field(foreign_key="campaigns.id", index=True)
    variant_id: int = Field(foreign_key="campaign_variants.id")
    customer_id: int = Field(foreign_key="customers.id")
    link: int  # index into the variant's links
    clicked_at: datetime = _created_at()

class InsightStatus(StrEnum):
    READY = "ready"  # LINE's figures as of `fetched_at`
    NOT_READY = "not_ready"  # LINE gives a day's figures from the day after (JST): not asked yet
    FAILED = "failed"  # LINE refused or was away; `error` says what (asked again later)


class CampaignInsight(SQLModel, table=True):
    """LINE's own opens and clicks of a campaign's aggregation unit (insight API), kept here as a
    short cache: a worker asks LINE now and then (campaigns/insight.py), the results page reads
    this row, never LINE. `figures` is LINE's answer (overview, messages, clicks; null where LINE
    withholds a figure about fewer than 20 people)."""

    __tablename__ = "campaign_insights"
    __table_args__ = (_one_of("campaign_insights", "status", InsightStatus),)

    campaign_id: int = Field(foreign_key="campaigns.id", primary_key=True)
    status: str = Field(max_length=16)
    figures: dict | None = Field(default=None, sa_type=JSONType)
    error: str | None = Field(default=None, max_length=300)
    fetched_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


# -- step sequences (ステップ配信, issue 15 section 3) ------------------------------------------

SEQUENCE_NAME_MAX = 100
SEQUENCE_TRIGGER_VALUE_MAX = 100
API_EVENT_TYPE_MAX = 64
API_EVENT_ID_MAX = 64


class SequenceStatus(StrEnum):
    ACTIVE = "active"  # enrols and sends
    PAUSED = "paused"  # enrols, but nothing is sent until it is resumed (due steps wait, never dropped)
    ARCHIVED = "archived"  # neither; its enrolments stay for the figures


class SequenceTrigger(StrEnum):
    REGISTERED = "registered"  # member registration completed
    FIRST_ORDER = "first_order"  # the customer's first completed order arrived
    TAG_ADDED = "tag_added"  # `trigger_value`: the tag
    FRIEND_SOURCE = "friend_source"  # `trigger_value`: the friend-add source's code
    API_EVENT = "api_event"  # `trigger_value`: the event type sent to POST /api/v1/events
    SEGMENT_ENTERED = "segment_entered"  # `trigger_value`: the segment id (looked at every 10 minutes)


class EnrolmentStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"  # every step was handed to the outbox
    EXITED = "exited"  # left before the end; `exit_reason` says why


class ExitReason(StrEnum):
    ORDERED_AGAIN = "ordered_again"  # an order came in (an exit condition, or a `cancel_on` "order")
    BLOCKED = "blocked"  # the customer blocked the account
    OPTED_OUT = "opted_out"  # the customer turned marketing messages off
    TAG_REMOVED = "tag_removed"
    CANCELLED_BY_EVENT = "cancelled_by_event"  # a later API event listed in the sequence's `cancel_on`
    NOT_ON_LINE = "not_on_line"  # nobody on LINE to send to (known only from orders, or not a friend of the account)
    WITHDRAWN = "withdrawn"  # the customer withdrew their membership (退会)


class StepSequence(SQLModel, table=True):
    """A step sequence: an entry trigger, exit conditions, a send window and its steps.

    `steps` is a JSON list of {"delay_minutes", "delay_from": "enrolment"|"previous", "messages",
    "coupon_id"} (campaigns/sequences.py checks it). Blocked and opted-out customers always exit:
    they are never sent a marketing message, whatever the sequence says."""

    __tablename__ = "sequences"
    __table_args__ = (
        _one_of("sequences", "status", SequenceStatus),
        _one_of("sequences", "trigger", SequenceTrigger),
        # The triggers' hot lookup: active sequences of one trigger (and value).
        sa.Index("ix_sequences_trigger", "trigger", "trigger_value"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=SEQUENCE_NAME_MAX)
    status: str = Field(default=SequenceStatus.ACTIVE, max_length=16)
    trigger: str = Field(max_length=24)  # a SequenceTrigger
    trigger_value: str | None = Field(default=None, max_length=SEQUENCE_TRIGGER_VALUE_MAX)
    exit_on_order: bool = False  # "ordered again": a completed order after enrolment exits
    exit_on_tag_removed: str | None = Field(default=None, max_length=TAG_MAX)
    cancel_on: list = Field(default_factory=list, sa_type=JSONType)  # API event types that exit an enrolment
    # Send window in `timezone`, "HH:MM"; both None: any time. A step due outside waits for the next opening.
    window_start: str | None = Field(default=None, max_length=5)
    window_end: str | None = Field(default=None, max_length=5)
    timezone: str = Field(default="Asia/Tokyo", max_length=64)
    name_fallback: str = Field(default="お客様", max_length=40)  # what `{name}` becomes when the name is unknown
    steps: list = Field(sa_type=JSONType)
    created_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()
    # segment_entered: when a worker last compared the segment's members with those it saw before
    # (None: never; the first look records who is in already, without enrolling them).
    segment_checked_at: datetime | None = _optional_time()


class SequenceSegmentMember(SQLModel, table=True):
    """Who was in a segment_entered sequence's segment at its last look: a customer in the
    segment now and not here has entered it (and is enrolled); one here and no longer in the
    segment has left it (the row goes, so entering again enrols again)."""

    __tablename__ = "sequence_segment_members"

    sequence_id: int = Field(foreign_key="sequences.id", primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", primary_key=True)


class SequenceEnrolment(SQLModel, table=True):
    """One customer in one sequence. `current_step` is the index of the next step to send (the
    number sent so far); `next_due_at` when it is due. At most one active enrolment per
    (sequence, customer): a partial unique index, so a trigger firing twice enrols once."""

    __tablename__ = "sequence_enrolments"
    __table_args__ = (
        sa.Index("uq_sequence_enrolments_active", "sequence_id", "customer_id", unique=True,
                 postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'")),
        # The scheduler's hot query: active enrolments by due time.
        sa.Index("ix_sequence_enrolments_due", "next_due_at",
                 postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'")),
        sa.Index("ix_sequence_enrolments_customer", "customer_id", "status"),
        _one_of("sequence_enrolments", "status", EnrolmentStatus),
        _one_of("sequence_enrolments", "exit_reason", ExitReason),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    sequence_id: int = Field(foreign_key="sequences.id")
    customer_id: int = Field(foreign_key="customers.id")
    status: str = Field(default=EnrolmentStatus.ACTIVE, max_length=16)
    exit_reason: str | None = Field(default=None, max_length=24)
    current_step: int = 0
    enrolled_at: datetime = _created_at()
    next_due_at: datetime | None = _optional_time()
    last_sent_at: datetime | None = _optional_time()
    finished_at: datetime | None = _optional_time()


class ApiEvent(SQLModel, table=True):
    """An event from the shop's systems (`POST /api/v1/events`): what starts and cancels
    api_event sequences. `event_id` (optional) is the shop's idempotency key."""

    __tablename__ = "api_events"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    event_id: str | None = Field(default=None, max_length=API_EVENT_ID_MAX, unique=True)
    type: str = Field(max_length=API_EVENT_TYPE_MAX)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    data: dict = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = _created_at()


# -- privacy: notice versions and the consent ledger (issue 16 part 2, storage/consents.py) --------

PRIVACY_VERSION_MAX = 40
PRIVACY_URL_MAX = 500
PRIVACY_TEXT_MAX = 20000
PRIVACY_PURPOSE_MAX = 1000


class ConsentPurpose(StrEnum):
    """What a customer's data is used for; each notice version describes each of them."""

    MEMBERSHIP = "membership"  # the membership itself: registration data, member coupons
    MARKETING = "marketing"  # marketing messages (お知らせ)
    ANALYTICS = "analytics"  # purchase and behaviour analysis (segments, RFM, churn)


class ConsentAction(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"  # also a "no" at registration: the ledger alone tells the state at any time


class ConsentChannel(StrEnum):
    LINE_CHAT = "line_chat"
    CONSOLE = "console"
    API = "api"
    IMPORT = "import"


class PrivacyNotice(SQLModel, table=True):
    """One published version of the privacy notice (プライバシーポリシー): its URL and text, and
    the description of each purpose of use (`purposes`: ConsentPurpose -> text). Versions are
    never edited: a change is a new version, and the newest published is the current one."""

    __tablename__ = "privacy_notices"

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=PRIVACY_VERSION_MAX, unique=True)
    url: str = Field(max_length=PRIVACY_URL_MAX)
    text: str = Field(sa_type=sa.Text)
    purposes: dict = Field(default_factory=dict, sa_type=JSONType)
    published_at: datetime = _created_at()
    published_by: str | None = Field(default=None, max_length=100)


class ConsentRecord(SQLModel, table=True):
    """The consent ledger: one row per grant or withdrawal of one purpose, append-only (nothing
    updates a row; only the retention purge removes old ones, never under 3 years: storage/retention.py)."""

    __tablename__ = "consent_records"
    __table_args__ = (
        sa.Index("ix_consent_records_customer", "customer_id", "id"),
        sa.Index("ix_consent_records_at", "at"),
        _one_of("consent_records", "purpose", ConsentPurpose),
        _one_of("consent_records", "action", ConsentAction),
        _one_of("consent_records", "channel", ConsentChannel),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    customer_id: int = Field(foreign_key="customers.id")
    purpose: str = Field(max_length=16)
    action: str = Field(max_length=16)
    notice_id: int | None = Field(default=None, foreign_key="privacy_notices.id")
    channel: str = Field(max_length=16)
    actor: str | None = Field(default=None, max_length=100)  # "customer", a staff e-mail, a token name
    at: datetime = _created_at()


# -- retention and breach scoping (issue 16 parts 4 and 6: storage/retention.py, storage/audit_reads.py) --


class RetentionUnit(StrEnum):
    DAYS = "days"
    MONTHS = "months"


class RetentionPolicy(SQLModel, table=True):
    """The shop's edit of how long one kind of data is kept (storage/retention.py KINDS has the
    kinds and their defaults; a kind without a row keeps its default)."""

    __tablename__ = "retention_policies"
    __table_args__ = (
        _one_of("retention_policies", "unit", RetentionUnit),
        sa.CheckConstraint("period >= 1", name="ck_retention_policies_period"),
    )

    kind: str = Field(primary_key=True, max_length=40)
    period: int
    unit: str = Field(max_length=8)  # a RetentionUnit
    enabled: bool = True
    updated_at: datetime = _created_at()
    updated_by: str | None = Field(default=None, max_length=STAFF_EMAIL_MAX)


class RetentionTrigger(StrEnum):
    SCHEDULE = "schedule"  # the workers' daily run
    CONSOLE = "console"  # 「今すぐ実行」 / 「ドライラン」
    CLI = "cli"  # kizuna retention


class RetentionRunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    INCOMPLETE = "incomplete"  # the time budget ran out: the next run goes on
    FAILED = "failed"


class RetentionRun(SQLModel, table=True):
    """One purge (or dry run): when, how started, what it removed (or would) per kind.

    `scheduled_for` is the shop-local date of a scheduled run, unique: of N workers that find
    the day's run due at once, one inserts the row and runs it, the others find it taken."""

    __tablename__ = "retention_runs"
    __table_args__ = (
        _one_of("retention_runs", "trigger", RetentionTrigger),
        _one_of("retention_runs", "status", RetentionRunStatus),
    )

    id: int | None = Field(default=None, primary_key=True)
    scheduled_for: date | None = Field(default=None, unique=True)
    trigger: str = Field(max_length=16)
    dry_run: bool = False
    status: str = Field(default=RetentionRunStatus.RUNNING, max_length=16)
    started_at: datetime = _created_at()
    finished_at: datetime | None = _optional_time()
    counts: dict = Field(default_factory=dict, sa_type=JSONType)  # kind -> rows removed (or that would be)
    started_by: str | None = Field(default=None, max_length=STAFF_EMAIL_MAX)
    error: str | None = Field(default=None, sa_type=sa.Text)


class AuditCustomerRead(SQLModel, table=True):
    """Which customers one audit entry read or exported (breach scoping, APPI): one row per
    customer, written set-based (a segment export's members by INSERT … SELECT), so the report
    joins ids instead of unpacking JSON. Append-only like the audit log."""

    __tablename__ = "audit_customer_reads"
    __table_args__ = (sa.Index("ix_audit_customer_reads_customer", "customer_id"),)

    # No foreign keys, on purpose (like campaign_recipients): an export of 100k customers writes
    # 100k rows in one statement, and a key check per row would triple its cost; the ids come
    # from the audit entry just written and from the customers table itself.
    audit_entry_id: int = Field(primary_key=True, sa_type=BigIntId)
    customer_id: int = Field(primary_key=True)


# The breach report's lookup: one actor's entries in a period.
sa.Index("ix_audit_entries_actor_at", AuditEntry.actor, AuditEntry.at)
# The purge nulls a purged event's or delivery's references from the timeline and the outbox
# by these (partial: most rows have none).
sa.Index("ix_interactions_inbound_event", Interaction.inbound_event_id,
         postgresql_where=sa.text("inbound_event_id IS NOT NULL"), sqlite_where=sa.text("inbound_event_id IS NOT NULL"))
sa.Index("ix_interactions_delivery", Interaction.delivery_id,
         postgresql_where=sa.text("delivery_id IS NOT NULL"), sqlite_where=sa.text("delivery_id IS NOT NULL"))
sa.Index("ix_deliveries_inbound_event", Delivery.inbound_event_id,
         postgresql_where=sa.text("inbound_event_id IS NOT NULL"), sqlite_where=sa.text("inbound_event_id IS NOT NULL"))


# -- automation rules (IF → THEN, issue 15 section 3) -----------------------------------------

AUTOMATION_NAME_MAX = 100
AUTOMATION_VALUE_MAX = 100
WEBHOOK_URL_MAX = 2000


class AutomationTrigger(StrEnum):
    """What a rule listens for; also the kind of a recorded cause."""

    TAG_ADDED = "tag_added"  # value: the tag
    TAG_REMOVED = "tag_removed"  # value: the tag
    LINK_TAPPED = "link_tapped"  # value: the campaign id (optional); options.destination
    ORDER_PLACED = "order_placed"  # options: first_only, min_total
    API_EVENT = "api_event"  # value: the event type
    SEGMENT_ENTERED = "segment_entered"  # value: the segment id
    REGISTRATION_COMPLETED = "registration_completed"
    FRIEND_SOURCE = "friend_source"  # value: the friend-add source's code
    BIRTHDAY_MONTH = "birthday_month"  # the daily look: once per customer per year
    COUPON_EXPIRING = "coupon_expiring"  # the daily look: once per unused grant


class CauseStatus(StrEnum):
    PENDING = "pending"  # recorded, not evaluated yet
    EVALUATED = "evaluated"  # every enabled rule of its kind was looked at
    TOO_DEEP = "too_deep"  # caused by a chain of rules longer than the depth limit: not evaluated


class FiringStatus(StrEnum):
    DONE = "done"  # the actions ran (in the firing's transaction; LINE and webhooks through the outbox)
    CONDITIONS_UNMET = "conditions_unmet"  # the trigger matched, a condition did not


class WebhookCallStatus(StrEnum):
    PENDING = "pending"  # to be posted (again, at next_attempt_at)
    SENDING = "sending"  # claimed by a worker
    SENT = "sent"  # the shop answered 2xx
    FAILED = "failed"  # refused (4xx, a redirect) or gave up after the last retry


class AutomationRule(SQLModel, table=True):
    """A rule: one trigger (+ `trigger_value` and `trigger_options`), optional conditions and
    1-10 actions, JSON checked by campaigns/automations.py. `webhook_secret` signs its webhook
    calls (HMAC-SHA256 of the body)."""

    __tablename__ = "automation_rules"
    __table_args__ = (
        _one_of("automation_rules", "trigger", AutomationTrigger),
        sa.Index("ix_automation_rules_trigger", "trigger", "enabled"),
    )

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=AUTOMATION_NAME_MAX)
    enabled: bool = True
    trigger: str = Field(max_length=32)
    trigger_value: str | None = Field(default=None, max_length=AUTOMATION_VALUE_MAX)
    trigger_options: dict = Field(default_factory=dict, sa_type=JSONType)
    conditions: list = Field(default_factory=list, sa_type=JSONType)
    actions: list = Field(default_factory=list, sa_type=JSONType)
    webhook_secret: str = Field(max_length=64)
    created_by: str | None = Field(default=None, max_length=100)
    created_at: datetime = _created_at()
    updated_at: datetime = _created_at()
    # segment_entered: when a worker last compared the segment's members with those it saw before
    # (None: never; the first look records who is in already, without firing for them).
    segment_checked_at: datetime | None = _optional_time()


class AutomationSegmentMember(SQLModel, table=True):
    """Who was in a segment_entered rule's segment at its last look (as sequence_segment_members)."""

    __tablename__ = "automation_segment_members"

    rule_id: int = Field(foreign_key="automation_rules.id", primary_key=True)
    customer_id: int = Field(foreign_key="customers.id", primary_key=True)


class AutomationCause(SQLModel, table=True):
    """Something that happened to a customer that rules may react to, written in the same
    transaction as the fact itself (the tag, the order, the tap …). `depth` counts the rules
    between it and a person's (or a system's) act: a rule's own action records depth + 1.
    `dedupe_key` makes the daily causes once per customer and year / per grant."""

    __tablename__ = "automation_causes"
    __table_args__ = (
        _one_of("automation_causes", "kind", AutomationTrigger),
        _one_of("automation_causes", "status", CauseStatus),
        # The evaluator's hot query: pending causes, oldest first.
        sa.Index("ix_automation_causes_pending", "id",
                 postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'")),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    kind: str = Field(max_length=32)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    value: str | None = Field(default=None, max_length=AUTOMATION_VALUE_MAX)
    ref_id: int | None = Field(default=None, sa_type=sa.BigInteger)  # the order, click, event or coupon grant
    data: dict = Field(default_factory=dict, sa_type=JSONType)
    depth: int = 0
    dedupe_key: str | None = Field(default=None, max_length=120, unique=True)
    status: str = Field(default=CauseStatus.PENDING, max_length=16)
    created_at: datetime = _created_at()
    evaluated_at: datetime | None = _optional_time()


class AutomationFiring(SQLModel, table=True):
    """A rule fired for a cause: written BEFORE its actions, unique on (rule, cause), so a
    second evaluator or a retry after a crash does nothing twice."""

    __tablename__ = "automation_firings"
    __table_args__ = (
        sa.UniqueConstraint("rule_id", "cause_id", name="uq_automation_firings_rule_cause"),
        sa.Index("ix_automation_firings_rule", "rule_id", "id"),
        _one_of("automation_firings", "status", FiringStatus),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    rule_id: int = Field(foreign_key="automation_rules.id")
    cause_id: int = Field(foreign_key="automation_causes.id", sa_type=sa.BigInteger)
    customer_id: int = Field(foreign_key="customers.id")
    status: str = Field(max_length=24)
    outcomes: list = Field(default_factory=list, sa_type=JSONType)  # what each action did, in words
    created_at: datetime = _created_at()


class AutomationWebhookCall(SQLModel, table=True):
    """A rule's call of the shop's webhook, stored with the firing and posted after the commit,
    retried with backoff; `idempotency_key` (sent as a header) is derived from the firing."""

    __tablename__ = "automation_webhook_calls"
    __table_args__ = (
        sa.Index("ix_automation_webhook_calls_due", "next_attempt_at",
                 postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'")),
        _one_of("automation_webhook_calls", "status", WebhookCallStatus),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    firing_id: int = Field(foreign_key="automation_firings.id", sa_type=sa.BigInteger, index=True)
    rule_id: int = Field(foreign_key="automation_rules.id")
    idempotency_key: str = Field(max_length=36, unique=True)
    url: str = Field(max_length=WEBHOOK_URL_MAX)
    body: str = Field(sa_type=sa.Text)  # the exact bytes signed and posted (UTF-8 JSON)
    status: str = Field(default=WebhookCallStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = _created_at()
    claimed_at: datetime | None = _optional_time()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = _created_at()
    sent_at: datetime | None = _optional_time()


COUPON_REMINDER_TEXT = "{name}さん、クーポンの有効期限が近づいています。お早めにご利用ください。"
COUPON_REMINDER_TEXT_MAX = 500


class AutomationSettings(SQLModel, table=True):
    """The shop's daily automation looks (one row, id 1): the hour of the shop's day they run at,
    how many days ahead a coupon counts as expiring, the built-in coupon reminder (on by default:
    its text, sent with the coupon's card, once per grant), and the day each look last ran
    (claimed by one worker with a conditional UPDATE)."""

    __tablename__ = "automation_settings"

    id: int | None = Field(default=None, primary_key=True)
    daily_hour: int = 9  # the shop's local hour, 0-23
    coupon_reminder_days: int = 3
    coupon_reminder_enabled: bool = True
    coupon_reminder_text: str = Field(default=COUPON_REMINDER_TEXT, max_length=COUPON_REMINDER_TEXT_MAX)
    birthday_ran_on: date | None = None
    coupons_ran_on: date | None = None


# -- data-subject requests and third-party provision records (issue 16, parts 3 and 5) -----------------

DATA_REQUEST_OUTCOME_MAX = 500
PROVISION_TEXT_MAX = 200


class DataRequestKind(StrEnum):
    EXPORT = "export"  # disclosure (開示): the customer's whole record as JSON or CSV
    CORRECT = "correct"  # correction (訂正)
    STOP = "stop"  # stop using (利用停止)
    RESUME = "resume"  # a later request lifting a stop
    ERASE = "erase"  # deletion (消去): anonymised everywhere


class DataRequestStatus(StrEnum):
    RECEIVED = "received"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    REFUSED = "refused"  # `outcome` says why


class RequestChannel(StrEnum):
    """How the customer asked (the console and the API are where staff record it)."""

    CONSOLE = "console"
    API = "api"
    LINE = "line"
    EMAIL = "email"
    PHONE = "phone"
    LETTER = "letter"
    IN_STORE = "in_store"


class DataRequest(SQLModel, table=True):
    """The request ledger: one row per data-subject request, with its deadline and outcome.
    `customer_id` stays after an erase: ids are pseudonymous, and the ledger must show the
    request was answered. Nothing personal goes into `outcome` (it outlives the erase)."""

    __tablename__ = "data_requests"
    __table_args__ = (
        sa.Index("ix_data_requests_requested_at", "requested_at"),
        _one_of("data_requests", "kind", DataRequestKind),
        _one_of("data_requests", "status", DataRequestStatus),
        _one_of("data_requests", "channel", RequestChannel),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    customer_id: int = Field(foreign_key="customers.id", index=True)
    status: str = Field(default=DataRequestStatus.RECEIVED, max_length=16)
    requested_at: datetime = _created_at()
    deadline_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    completed_at: datetime | None = _optional_time()
    outcome: str | None = Field(default=None, max_length=DATA_REQUEST_OUTCOME_MAX)
    actor: str = Field(max_length=STAFF_EMAIL_MAX)  # staff e-mail, "token:<name>" or "cli"
    channel: str = Field(max_length=16)


class ProvisionRecord(SQLModel, table=True):
    """Third-party provision record (第三者提供記録, APPI Art. 29): every export of customer data —
    who exported, which records (`scope` and the customer ids, or their count for a segment),
    to whom (`recipient`), why (`purpose`), when. Kept like the audit log: only ever added."""

    __tablename__ = "provision_records"
    __table_args__ = (sa.Index("ix_provision_records_at", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _created_at()
    actor: str = Field(max_length=STAFF_EMAIL_MAX)
    scope: str = Field(max_length=PROVISION_TEXT_MAX)  # "customer:12", "segment:3"
    customer_ids: list = Field(default_factory=list, sa_type=JSONType)  # a segment's: empty (counted)
    customer_count: int = 0
    format: str = Field(max_length=8)  # json | csv
    recipient: str = Field(max_length=PROVISION_TEXT_MAX)
    purpose: str = Field(max_length=PROVISION_TEXT_MAX)
    data_request_id: int | None = Field(default=None, foreign_key="data_requests.id")


# -- narrowcast delivery (issue 15 section 2) ----------------------------------------------------


class NarrowcastState(StrEnum):
    UPLOADING = "uploading"  # the variant's queued LINE ids go up to a LINE audience, chunk by chunk
    WAITING = "waiting"  # all uploaded: LINE builds the audience (IN_PROGRESS until READY)
    SENDING = "sending"  # the retry key is stored; the narrowcast request may be in flight
    DELIVERING = "delivering"  # LINE accepted it (request id kept): its progress is polled
    DONE = "done"  # LINE's progress said succeeded or failed; the outcome is recorded
    CANCELLED = "cancelled"  # the campaign was cancelled before the request went


class CampaignNarrowcast(SQLModel, table=True):
    """One variant of a campaign sent by narrowcast: each stage a stored state, so a worker killed
    at any point leaves the next one where to continue (the worker's tick advances it)."""

    __tablename__ = "campaign_narrowcasts"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "variant_id"),
        sa.Index("ix_campaign_narrowcasts_state", "state", "next_look_at"),
        _one_of("campaign_narrowcasts", "state", NarrowcastState),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaigns.id")
    variant_id: int = Field(foreign_key="campaign_variants.id")
    state: str = Field(default=NarrowcastState.UPLOADING, max_length=16)
    audience_group_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    uploaded_through: int = 0  # the last customer id uploaded (recipients go up in customer order)
    uploaded: int = 0
    retry_key: str = Field(max_length=36, unique=True)  # uuid5 of campaign + variant: stored before the attempt
    first_attempt_at: datetime | None = _optional_time()
    request_id: str | None = Field(default=None, max_length=64)  # LINE's, for the progress endpoint
    duplicate: bool = False  # LINE answered 409: an earlier attempt had been accepted
    lease_until: datetime | None = _optional_time()  # a worker works on it until then
    next_look_at: datetime | None = _optional_time()
    target_count: int | None = None  # LINE's progress: targeted, delivered, failed
    success_count: int | None = None
    failure_count: int | None = None
    phase: str | None = Field(default=None, max_length=16)  # LINE's last phase: waiting, sending, succeeded, failed
    error: str | None = Field(default=None, sa_type=sa.Text)
    audience_deleted: bool = False
    updated_at: datetime = _created_at()
