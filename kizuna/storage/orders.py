"""Orders from the shop's EC site and POS: upserted in batches, set-based.

`upsert` is what the REST API and the CSV import both call. For a batch it runs a fixed number
of statements whatever its size (each a multi-row INSERT … ON CONFLICT or an IN list), never one
per order:

1. read the stored fingerprints of the batch's external ids: an order sent again unchanged is
   dropped here, so a re-sent order (or a re-run import) changes nothing at all;
2. find each remaining order's customer by its references (storage/matching.py), in the
   precedence of `IdentityKind` — LINE user id, external customer id, e-mail, phone. When the
   references match two different customers, the order goes to the first by that precedence and
   the pair becomes a merge candidate (never merged silently). References nobody holds become
   identities of the customer chosen, so the next order with only that e-mail finds them too;
3. an order that matches nobody gets a new customer (with the order's LINE user id if it has
   one, else none: a customer known only from the shop's systems). Orders of one batch that
   share a reference share that new customer;
4. upsert the orders on `external_id` (`DO UPDATE … WHERE fingerprint differs`), replace the
   lines of the changed ones, and put one row per new or changed order on its customer's
   timeline: `order.placed`, `order.cancelled` or `order.returned` by status, `order.updated`
   when a stored order changed without changing status;
5. recompute the kept metrics (storage/customer_metrics.py) of every customer the batch touched —
   the orders' customers, and the previous customer of an order that moved — set-based, so an
   accepted order counts in segments as soon as the transaction commits.

The caller owns the transaction: a batch is stored whole or not at all.

On PostgreSQL a large batch (an import's 10,000 orders) moves its rows with COPY, which costs a
tenth of a multi-row INSERT per row: the lines and the timeline rows straight into their tables,
the new orders straight into `orders` with ids drawn from its sequence first (if a concurrent
writer stored one of them meanwhile, that COPY is rolled back to a savepoint and the orders take
the ON CONFLICT way below), changed orders through a temporary table and one
`INSERT … SELECT … ON CONFLICT`. Small batches (the API's) and SQLite use multi-row INSERTs.
Same statements whatever the size, same results either way (tests/storage/test_orders.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from . import automations, customer_metrics, matching, sequences
from .db import chunked, copy_records, insert_on_conflict, insert_rows, is_postgres
from .errors import Invalid
from .identity_values import IdentityKind
from .models import CUSTOMER_REFS, AutomationTrigger, Direction, Interaction, Order, OrderCreate, OrderItem, OrderItemCreate, OrderStatus

# Timeline kinds, by the status an order arrives with.
KIND_BY_STATUS = {
    OrderStatus.COMPLETED: "order.placed",
    OrderStatus.CANCELLED: "order.cancelled",
    OrderStatus.RETURNED: "order.returned",
}
KIND_UPDATED = "order.updated"

_CHUNK = 1000  # rows per IN list or multi-row statement


@dataclass
class UpsertResult:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    customers_created: int = 0
    merge_candidates: int = 0

    def add(self, other: UpsertResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class Plain:
    """An order as `upsert` stores it: plain values, its customer references in IdentityKind's
    precedence, its lines as (sku, name, category, quantity, unit_price), and its fingerprint.
    The API's orders become this (`plain`); the CSV import builds it straight from a file's
    plainly valid rows (storage/imports.py), since a pydantic model per row cost more than the
    database work."""

    external_id: str
    ordered_at: datetime
    total: int
    channel: str | None
    store: str | None
    status: str
    refs: list[tuple[str, str]]
    items: list[tuple[str, str | None, str | None, int, int]]
    fingerprint: str = ""

    @property
    def line_user_id(self) -> str | None:
        # First in the precedence when given (and a plain str compare: an enum member costs more).
        return self.refs[0][1] if self.refs and self.refs[0][0] == _LINE_USER_ID else None

    def finish(self) -> Plain:
        """Set the fingerprint: a hash of everything the shop sent for the order, its lines in
        their order included, the time taken in UTC (the same moment written with another
        offset is the same order). The JSON is what `OrderCreate.model_dump(mode="json")` gives
        (the fingerprints stored before this class stay valid; a test holds the two together)."""
        data: dict[str, object] = dict.fromkeys(CUSTOMER_REFS)
        data.update(self.refs)
        data.update(
            external_id=self.external_id, ordered_at=self.ordered_at.astimezone(timezone.utc).isoformat(), total=self.total,
            channel=self.channel, store=self.store, status=self.status,
            items=[dict(zip(ITEM_FIELDS, item)) for item in self.items],
        )
        self.fingerprint = hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        return self


ITEM_FIELDS = ("sku", "name", "category", "quantity", "unit_price")
_LINE_USER_ID = str(IdentityKind.LINE_USER_ID)
assert CUSTOMER_REFS[0] == _LINE_USER_ID
# `Plain.finish` writes every field of the model: a field added to the model must be added there.
assert set(OrderCreate.model_fields) == {*CUSTOMER_REFS, "external_id", "ordered_at", "total", "channel", "store", "status", "items"}
assert tuple(OrderItemCreate.model_fields) == ITEM_FIELDS


def plain(order: OrderCreate) -> Plain:
    return Plain(
        order.external_id, order.ordered_at, order.total, order.channel.value if order.channel else None, order.store,
        OrderStatus(order.status).value, order.refs(),
        [(item.sku, item.name, item.category, item.quantity, item.unit_price) for item in order.items],
    ).finish()


def fingerprint(order: OrderCreate) -> str:
    return plain(order).fingerprint


def check_distinct(orders: Sequence[OrderCreate | Plain], where: str = "orders") -> None:
    """One batch names each order once: two versions of one order in a batch would leave which
    one is stored to chance. Invalid naming the repeat as `orders[i].external_id`."""
    first: dict[str, int] = {}
    for index, order in enumerate(orders):
        seen = first.setdefault(order.external_id, index)
        if seen != index:
            raise Invalid(f"{where}[{index}].external_id", f"repeats {where}[{seen}] ({order.external_id})")


async def upsert(session: AsyncSession, orders: Sequence[OrderCreate | Plain], *, now: datetime, source: str) -> UpsertResult:
    """Store `orders` (new, changed or unchanged) in the caller's transaction; `source` says who
    sent them ("token:pos-1", "import"), on the timeline and on merge candidates."""
    check_distinct(orders)
    result = UpsertResult()
    given = [order if isinstance(order, Plain) else plain(order) for order in orders]
    stored = await _stored(session, [order.external_id for order in given])
    todo = [order for order in given if stored.get(order.external_id, (None, None, None, None))[1] != order.fingerprint]
    result.unchanged = len(orders) - len(todo)
    if not todo:
        return result

    found = await matching.resolve(
        session, [matching.Record(order.external_id, order.refs, order.line_user_id, f"order:{order.external_id}") for order in todo],
        now=now, source=f"orders:{source}",
    )
    customer_of = found.customer_of
    result.customers_created, result.merge_candidates = found.customers_created, found.merge_candidates
    rows = [(order.external_id, customer_of[order.external_id], order.ordered_at, order.total, order.channel, order.store,
             order.status, order.fingerprint)
            for order in sorted(todo, key=lambda order: order.external_id)]  # one lock order for concurrent writers
    if is_postgres(session) and len(rows) > _COPY_FROM:
        order_ids = await _copy_new_orders(session, [row for row in rows if row[0] not in stored], now=now)
        order_ids.update(await _write_orders_copy(session, [row for row in rows if row[0] not in order_ids], now=now))
    else:
        order_ids = await _write_orders(session, rows, now=now)

    written = [order for order in todo if order.external_id in order_ids]
    replaced = [order_ids[order.external_id] for order in written if order.external_id in stored]
    for chunk in chunked(replaced, _CHUNK):
        await session.execute(sa.delete(OrderItem.__table__).where(OrderItem.__table__.c.order_id.in_(chunk)))
    items = [(order_ids[order.external_id], line_no, *item) for order in written for line_no, item in enumerate(order.items, start=1)]
    timeline = []
    for order in written:
        before = stored.get(order.external_id)
        kind = KIND_BY_STATUS[order.status] if before is None or before[2] != order.status else KIND_UPDATED
        timeline.append((
            customer_of[order.external_id], Direction.SYS.value, kind, None, "system", source[:64], now,
            {"order_id": order_ids[order.external_id], "external_id": order.external_id,
             "ordered_at": order.ordered_at.isoformat(), "total": order.total, "status": order.status,
             "channel": order.channel, "store": order.store, "items": len(order.items)},
        ))
    await insert_rows(session, OrderItem.__table__, _ITEM_COLUMNS, items)
    await insert_rows(session, Interaction.__table__, _TIMELINE_COLUMNS, timeline, json_last=True)
    buyers = {customer_of[order.external_id] for order in written}
    # The previous customer of an order that moved may have none left: `refresh` also drops their
    # row. A buyer has at least the order just written, so their rows need only the upsert.
    left = {stored[order.external_id][3] for order in written if order.external_id in stored} - buyers
    await customer_metrics.refresh(session, left, now=now)
    await _refresh_buyers(session, buyers, now=now)
    # Step sequences: a new completed order exits "ordered again" enrolments and starts "first
    # order" sequences (storage/sequences.py), in this transaction.
    ordered: dict[int, datetime] = {}
    for order in written:
        if order.external_id not in stored and order.status == OrderStatus.COMPLETED:
            customer = customer_of[order.external_id]
            ordered[customer] = max(ordered.get(customer, order.ordered_at), order.ordered_at)
    await sequences.on_orders(session, ordered, now=now)
    # Automation rules on order_placed: one cause per new completed order that is fresh (an import
    # of last year's orders fires nothing), in this transaction.
    await automations.record_each(session, AutomationTrigger.ORDER_PLACED, [
        automations.Happened(customer_of[order.external_id], ref_id=order_ids[order.external_id],
                             data={"total": order.total, "external_id": order.external_id, "ordered_at": order.ordered_at.isoformat()})
        for order in written
        if order.external_id not in stored and order.status == OrderStatus.COMPLETED
        and order.ordered_at >= now - sequences.FIRST_ORDER_FRESHNESS
    ], now=now)
    result.created = sum(1 for order in written if order.external_id not in stored)
    result.updated = len(written) - result.created
    result.unchanged += len(todo) - len(written)
    return result


_ORDER_COLUMNS = ("external_id", "customer_id", "ordered_at", "total", "channel", "store", "status", "fingerprint")
_ITEM_COLUMNS = ("order_id", "line_no", "sku", "name", "category", "quantity", "unit_price")
_TIMELINE_COLUMNS = ("customer_id", "direction", "kind", "text", "sender_type", "sender_id", "created_at", "payload")
_CHANGING = ("customer_id", "ordered_at", "total", "channel", "store", "status", "fingerprint", "updated_at")


async def _write_orders(session: AsyncSession, rows: list[tuple], *, now: datetime) -> dict[str, int]:
    """Upsert the orders (multi-row INSERT … ON CONFLICT DO UPDATE … WHERE the fingerprint
    differs); external_id → id of those written (an order a concurrent writer stored in this
    very version meanwhile is not)."""
    table = Order.__table__
    insert = insert_on_conflict(session, table)
    statement = insert.on_conflict_do_update(
        index_elements=["external_id"],
        set_={name: insert.excluded[name] for name in _CHANGING},
        where=table.c.fingerprint != insert.excluded.fingerprint,
    ).returning(table.c.id, table.c.external_id)
    order_ids: dict[str, int] = {}
    for chunk in chunked(rows, _CHUNK):
        values = [{**dict(zip(_ORDER_COLUMNS, row)), "created_at": now, "updated_at": now} for row in chunk]
        order_ids.update((external_id, order_id) for order_id, external_id in (await session.execute(statement, values)))
    return order_ids


_COPY_FROM = 100  # orders at once from which COPY beats a multi-row INSERT (an import; the API sends fewer)


async def _copy_new_orders(session: AsyncSession, rows: list[tuple], *, now: datetime) -> dict[str, int]:
    """The orders nobody had stored when `_stored` read them, COPYed straight into `orders` with
    ids taken from its sequence first (the fastest way in). A concurrent writer may have stored
    one of them since: then the COPY fails on the unique external_id, is rolled back to its
    savepoint, and nothing is returned here; `_write_orders_copy` then takes them all the careful way."""
    if not rows:
        return {}
    ids = (await session.execute(  # one array, not a row per id
        sa.text("SELECT array_agg(nextval(pg_get_serial_sequence('orders', 'id'))) FROM generate_series(1, :count)"),
        {"count": len(rows)},
    )).scalar_one()
    try:
        async with session.begin_nested():
            await copy_records(session, "orders", ("id", *_ORDER_COLUMNS, "created_at", "updated_at"),
                               [(order_id, *row, now, now) for order_id, row in zip(ids, rows)])
    except asyncpg.UniqueViolationError:
        return {}
    return {row[0]: order_id for order_id, row in zip(ids, rows)}


async def _write_orders_copy(session: AsyncSession, rows: list[tuple], *, now: datetime) -> dict[str, int]:
    """`_write_orders` on PostgreSQL: COPY into a temporary table, then one INSERT … SELECT …
    ON CONFLICT DO UPDATE (same rule, rows in external_id order)."""
    if not rows:
        return {}
    await session.execute(sa.text(
        "CREATE TEMPORARY TABLE IF NOT EXISTS import_orders (external_id text, customer_id integer, "
        "ordered_at timestamptz, total integer, channel text, store text, status text, fingerprint text) ON COMMIT DELETE ROWS"
    ))
    await session.execute(sa.text("DELETE FROM import_orders"))  # an earlier upsert in this transaction
    await copy_records(session, "import_orders", _ORDER_COLUMNS, rows)
    columns = ", ".join(_ORDER_COLUMNS)
    result = await session.execute(sa.text(
        f"INSERT INTO orders ({columns}, created_at, updated_at) "
        f"SELECT {columns}, CAST(:now AS timestamptz), CAST(:now AS timestamptz) FROM import_orders ORDER BY external_id "
        f"ON CONFLICT (external_id) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in _CHANGING)
        + " WHERE orders.fingerprint <> excluded.fingerprint RETURNING id, external_id"
    ), {"now": now})
    return {external_id: order_id for order_id, external_id in result}


async def _refresh_buyers(session: AsyncSession, customer_ids: set[int], *, now: datetime) -> None:
    """`customer_metrics.refresh` for customers who certainly have an order: its upsert only (the
    DELETE of rows left without orders cost as much again and finds nothing here)."""
    if not customer_ids:
        return
    rules = await customer_metrics.load_rules(session)
    dialect = session.bind.dialect.name
    for chunk in chunked(sorted(customer_ids), _CHUNK):
        await session.execute(customer_metrics.refresh_statement(dialect, rules, now, list(chunk)))


async def _stored(session: AsyncSession, external_ids: list[str]) -> dict[str, tuple[int, str, str, int]]:
    """external_id → (id, fingerprint, status, customer_id) of the orders already stored."""
    found = {}
    table = Order.__table__
    columns = (table.c.external_id, table.c.id, table.c.fingerprint, table.c.status, table.c.customer_id)
    if is_postgres(session) and len(external_ids) > _COPY_FROM:
        # An import's 10,000 ids as one array joined in (an IN list per 1,000 was most of a re-run's
        # time: each list is planned anew). A join, not `= ANY(array)`: that one may be a scan
        # testing every row against the whole array.
        keys = sa.func.unnest(sa.cast(sa.literal(sorted(external_ids)), ARRAY(sa.Text))).table_valued("external_id").render_derived(name="keys")
        statements = [sa.select(*columns).join(keys, table.c.external_id == keys.c.external_id)]
    else:
        statements = [sa.select(*columns).where(table.c.external_id.in_(chunk)) for chunk in chunked(sorted(external_ids), _CHUNK)]
    for statement in statements:
        rows = await session.execute(statement)
        found.update((external_id, (order_id, print_, status, customer_id)) for external_id, order_id, print_, status, customer_id in rows)
    return found
