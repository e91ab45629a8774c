"""Coupons: offers (`Coupon`) and the grants that give one to a customer (`CouponGrant`).

The two things that must hold however many processes issue and redeem at once are kept
by the database, not by Python checks:

* stock: `issued_count` is raised only by one conditional UPDATE
  (`... WHERE active AND (stock IS NULL OR issued_count < stock)`), so it can never pass
  `stock`; the row lock it takes orders concurrent issuers, and PostgreSQL re-checks the
  condition against the committed row before updating (READ COMMITTED is enough).
* one per customer: UNIQUE(coupon_id, customer_id, per_customer_key) with the key "once";
  the grant is inserted with ON CONFLICT DO NOTHING, and the loser of a race reads the
  winner's grant.

Redemption is one conditional UPDATE (`WHERE status = 'issued' AND expires_at > now`):
of two tills redeeming one code at once, exactly one gets the row.

Every grant, redemption and revocation appends a `sys` interaction to the customer's
timeline in the caller's transaction. Functions take an `AsyncSession` and never commit;
what they refuse is raised as the typed errors of `errors.py` (the REST API and the console
show them as they are).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from . import audit
from .coupon_codes import InvalidCode, generate_code, normalize_code, parse_code
from .errors import Conflict, Invalid, NotFound
from .models import Coupon, CouponGrant, CouponTrigger, Customer, DiscountType, Direction, GrantStatus, Interaction, Shop
from .types import utcnow

SHOP_ID = 1
MAX_AMOUNT_YEN = 1_000_000
MAX_VALID_DAYS = 3650
MAX_STOCK = 100_000_000
MAX_CODE_ATTEMPTS = 8
ONCE = "once"

Refusal = Literal["inactive", "out_of_stock", "not_yet_valid", "ended"]
GrantState = Literal["issued", "redeemed", "revoked", "expired"]
EDITABLE = (
    "title", "description", "discount_type", "discount_value", "valid_days", "valid_from", "valid_until",
    "stock", "one_per_customer", "image_url", "trigger", "active",
)


class CouponInvalid(Invalid):
    """Coupon fields that break a rule; `field` names the first one at fault."""


# The time of a grant that explains a refusal, shown with it.
_WHEN = {"already_redeemed": "redeemed_at", "expired": "expires_at", "revoked": "revoked_at"}


class CouponError(Conflict):
    """A redemption or revocation that cannot happen; `details` holds the grant's time that
    explains it (redeemed_at, expires_at or revoked_at)."""

    def __init__(self, code: str, message: str, grant: CouponGrant | None = None) -> None:
        when = _WHEN.get(code)
        super().__init__(code, message, **({when: getattr(grant, when)} if grant is not None and when else {}))


class RedeemError(CouponError):
    """codes: malformed, bad_check, other_shop (the text itself), unknown, already_redeemed,
    expired, revoked (the grant)."""


_REFUSALS = {
    "inactive": "the coupon is not active",
    "out_of_stock": "the coupon's stock is used up",
    "not_yet_valid": "the coupon cannot be issued before its valid_from",
    "ended": "the coupon's valid_until has passed",
}


class IssueRefused(Conflict):
    """The coupon cannot be issued now; `code` is the refusal (inactive, out_of_stock, ...)."""


@dataclass
class IssueResult:
    grant: CouponGrant | None
    created: bool
    refusal: Refusal | None = None
    coupon: Coupon | None = None


# -- the shop -------------------------------------------------------------------------------


async def get_shop(session: AsyncSession) -> Shop:
    shop = await session.get(Shop, SHOP_ID)
    if shop is None:
        raise RuntimeError("the shops table has no row 1: run the migrations")
    return shop


def zone(name: str) -> tzinfo:
    """The shop's time zone; Japan's fixed +09:00 when the system has no tz database."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name == "Asia/Tokyo":
            return timezone(timedelta(hours=9), "JST")
        raise


# -- coupons --------------------------------------------------------------------------------


def check_coupon(values: dict[str, Any]) -> None:
    """Raise `CouponInvalid` for the first rule `values` (every editable field) breaks."""
    title = values.get("title")
    if not isinstance(title, str) or not 1 <= len(title) <= 40:
        raise CouponInvalid("title", "must be 1 to 40 characters")
    description = values.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 500):
        raise CouponInvalid("description", "must be at most 500 characters")
    kind = values.get("discount_type")
    if kind not in tuple(DiscountType):
        raise CouponInvalid("discount_type", "must be amount (yen) or percent")
    value = values.get("discount_value")
    if not _is_int(value):
        raise CouponInvalid("discount_value", "must be an integer")
    if kind == DiscountType.PERCENT and not 1 <= value <= 100:
        raise CouponInvalid("discount_value", "a percent discount must be 1 to 100")
    if kind == DiscountType.AMOUNT and not 1 <= value <= MAX_AMOUNT_YEN:
        raise CouponInvalid("discount_value", f"an amount discount must be 1 to {MAX_AMOUNT_YEN} yen")
    days = values.get("valid_days")
    if days is not None and (not _is_int(days) or not 1 <= days <= MAX_VALID_DAYS):
        raise CouponInvalid("valid_days", f"must be 1 to {MAX_VALID_DAYS} days")
    for name in ("valid_from", "valid_until"):
        moment = values.get(name)
        if moment is not None and (not isinstance(moment, datetime) or moment.tzinfo is None):
            raise CouponInvalid(name, "must be a date-time with a UTC offset, e.g. 2026-12-31T23:59:59+09:00")
    if days is None and values.get("valid_until") is None:
        raise CouponInvalid("valid_days", "give valid_days (days from issue) or valid_until (a fixed end), or both")
    if values.get("valid_from") is not None and values.get("valid_until") is not None and values["valid_from"] >= values["valid_until"]:
        raise CouponInvalid("valid_until", "must be after valid_from")
    stock = values.get("stock")
    if stock is not None and (not _is_int(stock) or not 0 <= stock <= MAX_STOCK):
        raise CouponInvalid("stock", f"must be 0 to {MAX_STOCK}, or null for unlimited")
    image_url = values.get("image_url")
    if image_url is not None and (not isinstance(image_url, str) or not image_url.startswith("https://") or len(image_url) > 2000):
        raise CouponInvalid("image_url", "must be an https:// URL (LINE shows only HTTPS images)")
    if values.get("trigger") not in (None, *CouponTrigger):
        raise CouponInvalid("trigger", "must be null or registration")
    for name in ("one_per_customer", "active"):
        if not isinstance(values.get(name), bool):
            raise CouponInvalid(name, "must be true or false")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for name in ("title", "description"):
        if isinstance(out.get(name), str):
            out[name] = out[name].strip()
    if out.get("description") == "":
        out["description"] = None
    for name in ("valid_from", "valid_until"):  # stored and returned in UTC, as read back
        moment = out.get(name)
        if isinstance(moment, datetime) and moment.tzinfo is not None:
            try:
                out[name] = moment.astimezone(timezone.utc)
            except OverflowError:  # 0001-01-01T00:00:00+09:00 is before the first UTC moment Python has
                raise CouponInvalid(name, "is out of range") from None
    return out


def audit_target(coupon: Coupon) -> str:
    """How the audit log names a coupon: `coupon:<id> <title>`."""
    return f"coupon:{coupon.id} {coupon.title}"


async def create_coupon(
    session: AsyncSession, data: Any, *, now: datetime | None = None, actor: audit.Actor | None = None
) -> Coupon:
    """`data`: a `CouponCreate` or a dict of its fields. Raises `CouponInvalid`."""
    fields = data.model_dump() if hasattr(data, "model_dump") else dict(data)
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise CouponInvalid(sorted(unknown)[0], "is not a coupon field")
    defaults = {"description": None, "valid_days": None, "valid_from": None, "valid_until": None, "stock": None,
                "one_per_customer": True, "image_url": None, "trigger": None, "active": True}
    values = _clean({**defaults, **fields})
    check_coupon(values)
    moment = now or utcnow()
    coupon = Coupon(**values, issued_count=0, created_at=moment, updated_at=moment)
    session.add(coupon)
    await session.flush()
    audit.record_by(session, actor, audit.Action.COUPON_CREATED, target=audit_target(coupon),
                    discount=f"{coupon.discount_value} {coupon.discount_type}")
    return coupon


async def update_coupon(
    session: AsyncSession, coupon_id: int, changes: dict[str, Any], *, now: datetime | None = None,
    actor: audit.Actor | None = None,
) -> Coupon | None:
    """Change the given fields (a PATCH: `model_dump(exclude_unset=True)`); None if there is
    no such coupon. The whole result is checked, so a change can't break another field's rule.
    Grants already issued keep their code and expiry."""
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise CouponInvalid(sorted(unknown)[0], "is not a coupon field")
    # FOR UPDATE (PostgreSQL): the stock check below sees the issued_count of the moment.
    coupon = await session.get(Coupon, coupon_id, with_for_update=True, populate_existing=True)
    if coupon is None:
        return None
    values = _clean({**{name: getattr(coupon, name) for name in EDITABLE}, **changes})
    check_coupon(values)
    if values["one_per_customer"] != coupon.one_per_customer and coupon.issued_count > 0:
        raise CouponInvalid("one_per_customer", "cannot change once the coupon has been issued")
    if values["stock"] is not None and values["stock"] < coupon.issued_count:
        raise CouponInvalid("stock", f"{coupon.issued_count} already issued: stock cannot be lower than that")
    changed = [name for name in changes if getattr(coupon, name) != values[name]]
    for name in changes:
        setattr(coupon, name, values[name])
    coupon.updated_at = now or utcnow()
    await session.flush()
    if changed:
        audit.record_by(session, actor, audit.Action.COUPON_UPDATED, target=audit_target(coupon), changed=", ".join(changed))
    return coupon


async def get_coupon(session: AsyncSession, coupon_id: int) -> Coupon | None:
    return await session.get(Coupon, coupon_id, populate_existing=True)


async def list_coupons(
    session: AsyncSession, *, active: bool | None = None, limit: int = 100, before_id: int | None = None
) -> list[Coupon]:
    """Newest first."""
    statement = sa.select(Coupon).order_by(Coupon.id.desc()).limit(limit)
    if active is not None:
        statement = statement.where(Coupon.active.is_(active))
    if before_id is not None:
        statement = statement.where(Coupon.id < before_id)
    return list((await session.execute(statement)).scalars())


async def registration_coupon(session: AsyncSession) -> Coupon | None:
    """The coupon given on member registration: the newest active one with that trigger."""
    statement = (
        sa.select(Coupon).where(Coupon.trigger == CouponTrigger.REGISTRATION, Coupon.active.is_(True))
        .order_by(Coupon.id.desc()).limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


def expiry_for(coupon: Coupon, issued_at: datetime, tz: tzinfo) -> datetime:
    """When a grant issued at `issued_at` stops being valid (exclusive).

    `valid_days` = N: through the end of the N-th day after the day of issue, shop time
    (so a customer always has at least N full days, and the date shown is the last
    valid day). `valid_until`: that moment. Both: the earlier.
    """
    ends = []
    if coupon.valid_days is not None:
        last_day: date = issued_at.astimezone(tz).date() + timedelta(days=coupon.valid_days)
        ends.append(datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc))
    if coupon.valid_until is not None:
        ends.append(coupon.valid_until)
    if not ends:  # check_coupon makes this impossible for stored coupons
        raise ValueError("the coupon has neither valid_days nor valid_until")
    return min(ends)


def _refusal(coupon: Coupon, now: datetime) -> Refusal | None:
    if not coupon.active:
        return "inactive"
    if coupon.valid_from is not None and now < coupon.valid_from:
        return "not_yet_valid"
    if coupon.valid_until is not None and now >= coupon.valid_until:
        return "ended"
    # A stale read can only under-count (issued_count never falls), so "sold out" here is
    # final; the conditional UPDATE below is what actually guards the stock.
    if coupon.stock is not None and coupon.issued_count >= coupon.stock:
        return "out_of_stock"
    return None


def _insert(session: AsyncSession):
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert
    if name == "sqlite":
        return sqlite.insert
    raise RuntimeError(f"coupons need PostgreSQL or SQLite, not {name}")


async def _grant_once(session: AsyncSession, coupon_id: int, customer_id: int, key: str = ONCE) -> CouponGrant | None:
    statement = sa.select(CouponGrant).where(
        CouponGrant.coupon_id == coupon_id, CouponGrant.customer_id == customer_id, CouponGrant.per_customer_key == key
    ).execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


def _timeline(kind: str, coupon: Coupon, grant: Any, now: datetime, *, actor: str | None, **extra: Any) -> Any:
    """The timeline row: a core INSERT (one statement, no ORM flush)."""
    payload = {"coupon_id": coupon.id, "grant_id": grant.id, "code": grant.code, "title": coupon.title, **extra}
    return Interaction.__table__.insert().values(
        customer_id=grant.customer_id, direction=Direction.SYS, kind=kind, text=coupon.title, payload=payload,
        sender_type="system", sender_id=actor[:64] if actor else None, created_at=now,
    )


_SAVEPOINT = "kizuna_coupon_issue"  # a constant: never built from input
_GRANTS = CouponGrant.__table__
_COUPONS = Coupon.__table__
# The stock guard: the only statement that changes issued_count.
_TAKE_ONE = (
    _COUPONS.update()
    .where(_COUPONS.c.id == sa.bindparam("coupon_id"), _COUPONS.c.active.is_(True),
           sa.or_(_COUPONS.c.stock.is_(None), _COUPONS.c.issued_count < _COUPONS.c.stock))
    .values(issued_count=_COUPONS.c.issued_count + 1)
    .returning(_COUPONS.c.issued_count)
)


async def issue(
    session: AsyncSession, *, coupon_id: int, customer_id: int, now: datetime, by: str | None = None, key: str | None = None,
) -> IssueResult:
    """Give the coupon to the customer, atomically, in the caller's transaction.

    `key` makes the grant idempotent for its cause (a campaign grants each recipient once, however
    often a send is retried): a grant with that key is returned as it is. A one-per-customer
    coupon ignores it (its key is "once").

    - a new grant: `created=True`;
    - a one-per-customer coupon the customer already has: that grant, `created=False`
      (also when the coupon has since ended or sold out: they keep what they were given);
    - otherwise `grant=None` and `refusal` says why.
    Raises NotFound for an unknown coupon or customer (a refused one only for the coupon:
    without an INSERT no foreign key checks the customer; `issue_by_staff` does).

    In the database: SAVEPOINT; INSERT the grant ... ON CONFLICT DO NOTHING; INSERT the
    timeline row; the guarded UPDATE of the coupon's issued_count; if that updated no
    row, ROLLBACK TO SAVEPOINT. The coupon row is locked from that UPDATE to the commit,
    so everything else happens before it. (Core statements on the session's connection:
    this is the hot path, and the ORM's per-statement work is most of its CPU.)
    """
    row = (await session.execute(
        sa.select(Coupon, Shop.code, Shop.timezone).join(Shop, Shop.id == SHOP_ID).where(Coupon.id == coupon_id)
        .execution_options(populate_existing=True)
    )).one_or_none()
    if row is None:
        await get_shop(session)  # a missing shop row is a setup error, not a missing coupon
        raise NotFound("no such coupon")
    coupon, shop_code, shop_timezone = row
    key = ONCE if coupon.one_per_customer else key
    refusal = _refusal(coupon, now)
    if refusal is not None:
        existing = await _grant_once(session, coupon_id, customer_id, key) if key is not None else None
        if existing is not None:
            return IssueResult(existing, False, None, coupon)
        return IssueResult(None, False, refusal, coupon)

    expires_at = expiry_for(coupon, now, zone(shop_timezone))
    stable = key is not None  # a second grant with this key conflicts: the first is the answer
    key = key or str(uuid.uuid4())
    insert = _insert(session)
    await session.flush()  # the ORM's pending work goes before the savepoint, not into it
    connection = await session.connection()
    # A plain SQL savepoint rather than session.begin_nested(): on success it is left for
    # COMMIT to release, which saves a round trip while the coupon row is locked.
    await connection.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")
    try:
        inserted = None
        for _attempt in range(MAX_CODE_ATTEMPTS):
            # No conflict target: a clash on the per-customer guard OR on the code is
            # "nothing inserted", never an error that would abort the transaction.
            statement = insert(_GRANTS).values(
                coupon_id=coupon_id, customer_id=customer_id, code=generate_code(shop_code), per_customer_key=key,
                status=GrantStatus.ISSUED, issued_at=now, expires_at=expires_at,
            ).on_conflict_do_nothing().returning(*_GRANTS.c)
            try:
                inserted = (await connection.execute(statement)).one_or_none()
            except sa.exc.IntegrityError:  # only the foreign keys are left: the customer
                raise NotFound("no such customer") from None
            if inserted is not None:
                break
            if stable:
                existing = await _grant_once(session, coupon_id, customer_id, key)
                if existing is not None:  # nothing was written after the savepoint
                    return IssueResult(existing, False, None, coupon)
            # else: the random code was taken (55 bits: astronomically rare); draw another
        if inserted is None:
            raise RuntimeError(f"no unique coupon code after {MAX_CODE_ATTEMPTS} attempts")
        await connection.execute(_timeline("coupon.issued", coupon, inserted, now, actor=by, expires_at=expires_at.isoformat()))
        count = (await connection.execute(_TAKE_ONE, {"coupon_id": coupon_id})).scalar_one_or_none()
    except Exception:
        with contextlib.suppress(Exception):  # leave the caller's transaction usable, as it was
            await connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        raise
    if count is None:  # sold out or deactivated meanwhile: undo the grant and its timeline row
        await connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        coupon = await session.get(Coupon, coupon_id, populate_existing=True)
        assert coupon is not None
        return IssueResult(None, False, "out_of_stock" if coupon.active else "inactive", coupon)
    set_committed_value(coupon, "issued_count", count)
    grant = CouponGrant(**inserted._asdict())
    make_transient_to_detached(grant)
    session.add(grant)  # persistent in the session, as if loaded
    return IssueResult(grant, True, None, coupon)


async def issue_by_staff(
    session: AsyncSession, *, coupon_id: int, customer_id: int, now: datetime, by: str | None,
    actor: audit.Actor | None = None,
) -> IssueResult:
    """A person or system (the REST API, the console) gives the coupon to a customer: `issue`,
    for a customer that must exist, and a refusal raised as `IssueRefused`. (The bot calls
    `issue` itself: its customer exists, and a refusal is a message, not an error.)"""
    if await session.get(Customer, customer_id) is None:
        raise NotFound("no such customer")
    result = await issue(session, coupon_id=coupon_id, customer_id=customer_id, now=now, by=by)
    if result.refusal is not None:
        raise IssueRefused(result.refusal, _REFUSALS[result.refusal])
    if result.created:
        audit.record_by(session, actor, audit.Action.COUPON_GRANTED, target=audit_target(result.coupon),
                        customer_id=customer_id, grant_id=result.grant.id)
    return result


# -- grants ---------------------------------------------------------------------------------


def grant_state(grant: CouponGrant, now: datetime) -> GrantState:
    """The stored status, with "expired" for an issued grant past its expiry."""
    if grant.status == GrantStatus.ISSUED and grant.expires_at <= now:
        return "expired"
    return grant.status  # type: ignore[return-value]


async def grants_of_customer(
    session: AsyncSession, customer_id: int, *, valid_only: bool, now: datetime | None = None,
    limit: int = 50, before_id: int | None = None,
) -> list[tuple[CouponGrant, Coupon]]:
    """The customer's grants with their coupons, newest first. `valid_only`: issued and
    not expired (what can be used at the till now)."""
    statement = (
        sa.select(CouponGrant, Coupon).join(Coupon, Coupon.id == CouponGrant.coupon_id)
        .where(CouponGrant.customer_id == customer_id)
        .order_by(CouponGrant.id.desc()).limit(limit)
        .execution_options(populate_existing=True)
    )
    if valid_only:
        statement = statement.where(CouponGrant.status == GrantStatus.ISSUED, CouponGrant.expires_at > (now or utcnow()))
    if before_id is not None:
        statement = statement.where(CouponGrant.id < before_id)
    return [(grant, coupon) for grant, coupon in (await session.execute(statement)).all()]


async def find_grant_by_code(session: AsyncSession, code_text: str) -> CouponGrant | None:
    """The grant with this code (typed in any accepted form), or None."""
    try:
        code = normalize_code(code_text)
    except InvalidCode:
        return None
    statement = sa.select(CouponGrant).where(CouponGrant.code == code).execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def known_code(session: AsyncSession, code_text: str) -> str | None:
    """`code_text` as stored, when it is the code of a grant of this shop; None for anything
    else (malformed, a typo, another shop's, never issued): whoever asks learns nothing more."""
    try:
        code = parse_code(code_text, (await get_shop(session)).code)
    except InvalidCode:
        return None
    return code if await find_grant_by_code(session, code) is not None else None


async def get_grant(session: AsyncSession, grant_id: int) -> CouponGrant | None:
    return await session.get(CouponGrant, grant_id, populate_existing=True)


_CODE_MESSAGES = {
    "malformed": "this is not a coupon code",
    "bad_check": "the code has a typo (its check character does not match): please check it and enter it again",
    "other_shop": "this is a coupon code of another shop",
}


def _redeemable_code(code_text: str, shop_code: str) -> str:
    """The code as stored, or the `RedeemError` saying why it is not one of this shop's."""
    try:
        return parse_code(code_text, shop_code)
    except InvalidCode as error:
        raise RedeemError(error.reason, _CODE_MESSAGES[error.reason]) from None


def _why_not(grant: CouponGrant | None, now: datetime) -> RedeemError | None:
    """Why this grant cannot be redeemed now (None: it can)."""
    if grant is None:
        return RedeemError("unknown", "no coupon has this code")
    if grant.status == GrantStatus.REDEEMED:
        return RedeemError("already_redeemed", f"this coupon was already used at {grant.redeemed_at.isoformat()}", grant)
    if grant.status == GrantStatus.REVOKED:
        return RedeemError("revoked", "this coupon was cancelled by the shop", grant)
    if grant.expires_at <= now:
        return RedeemError("expired", f"this coupon expired at {grant.expires_at.isoformat()}", grant)
    return None


@dataclass
class Found:
    grant: CouponGrant
    coupon: Coupon
    customer: Customer


async def look_up(session: AsyncSession, *, code_text: str, now: datetime) -> Found:
    """What a code would redeem, before anyone confirms (the console's redemption screen):
    the grant, its coupon and customer. Raises the `RedeemError` `redeem` would raise now."""
    code = _redeemable_code(code_text, (await get_shop(session)).code)
    grant = await find_grant_by_code(session, code)
    refusal = _why_not(grant, now)
    if refusal is not None:
        raise refusal
    return await describe(session, grant)


async def describe(session: AsyncSession, grant: CouponGrant) -> Found:
    """The grant with its coupon and customer."""
    coupon, customer = await session.get(Coupon, grant.coupon_id), await session.get(Customer, grant.customer_id)
    assert coupon is not None and customer is not None
    return Found(grant, coupon, customer)


async def redeem(
    session: AsyncSession, *, code_text: str, shop_code: str | None = None, by: str | None, where: str | None, now: datetime,
    actor: audit.Actor | None = None,
) -> CouponGrant:
    """Use the coupon at the till. One conditional UPDATE decides: two tills redeeming one
    code at once get one success and one `already_redeemed`. Raises `RedeemError`."""
    if shop_code is None:
        shop_code = (await get_shop(session)).code
    code = _redeemable_code(code_text, shop_code)
    grant = (await session.execute(
        sa.update(CouponGrant)
        .where(CouponGrant.code == code, CouponGrant.status == GrantStatus.ISSUED, CouponGrant.expires_at > now)
        .values(status=GrantStatus.REDEEMED, redeemed_at=now, redeemed_by=by, redeemed_where=where)
        .returning(CouponGrant)
        .execution_options(synchronize_session=False, populate_existing=True)
    )).scalar_one_or_none()
    if grant is None:
        # The UPDATE matched nothing: `_why_not`, with the same `now`, says why.
        raise _why_not(await find_grant_by_code(session, code), now) or RedeemError("expired", "this coupon has expired")
    coupon = await session.get(Coupon, grant.coupon_id)
    assert coupon is not None
    await session.execute(_timeline("coupon.redeemed", coupon, grant, now, actor=by, by=by, where=where))
    audit.record_by(session, actor, audit.Action.COUPON_REDEEMED, target=audit_target(coupon), grant_id=grant.id,
                    customer_id=grant.customer_id, where=where)
    return grant


async def revoke(
    session: AsyncSession, *, grant_id: int, by: str | None, now: datetime, actor: audit.Actor | None = None
) -> CouponGrant:
    """Cancel an unused grant (it can no longer be redeemed; the stock is not given back,
    and a one-per-customer coupon is not issued to the customer again). Revoking a revoked
    grant returns it unchanged. Raises NotFound, or CouponError("already_redeemed")."""
    grant = (await session.execute(
        sa.update(CouponGrant)
        .where(CouponGrant.id == grant_id, CouponGrant.status == GrantStatus.ISSUED)
        .values(status=GrantStatus.REVOKED, revoked_at=now)
        .returning(CouponGrant)
        .execution_options(synchronize_session=False, populate_existing=True)
    )).scalar_one_or_none()
    if grant is None:
        grant = await get_grant(session, grant_id)
        if grant is None:
            raise NotFound("no such grant")
        if grant.status == GrantStatus.REDEEMED:
            raise CouponError("already_redeemed", "a redeemed coupon cannot be revoked", grant)
        return grant
    coupon = await session.get(Coupon, grant.coupon_id)
    assert coupon is not None
    await session.execute(_timeline("coupon.revoked", coupon, grant, now, actor=by, by=by))
    audit.record_by(session, actor, audit.Action.COUPON_REVOKED, target=audit_target(coupon), grant_id=grant.id,
                    customer_id=grant.customer_id)
    return grant
