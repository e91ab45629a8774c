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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import customer_metrics, matching
from .db import chunked, insert_on_conflict
from .errors import Invalid
from .models import Direction, Interaction, Order, OrderCreate, OrderItem, OrderStatus

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


def fingerprint(order: OrderCreate) -> str:
    """A hash of everything the shop sent for the order, its lines in their order included.
    The time is taken in UTC: the same moment written with another offset is the same order."""
    data = order.model_dump(mode="json", exclude={"ordered_at"})
    data["ordered_at"] = order.ordered_at.astimezone(timezone.utc).isoformat()
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def check_distinct(orders: Sequence[OrderCreate], where: str = "orders") -> None:
    """One batch names each order once: two versions of one order in a batch would leave which
    one is stored to chance. Invalid naming the repeat as `orders[i].external_id`."""
    first: dict[str, int] = {}
    for index, order in enumerate(orders):
        seen = first.setdefault(order.external_id, index)
        if seen != index:
            raise Invalid(f"{where}[{index}].external_id", f"repeats {where}[{seen}] ({order.external_id})")


async def upsert(session: AsyncSession, orders: Sequence[OrderCreate], *, now: datetime, source: str) -> UpsertResult:
    """Store `orders` (new, changed or unchanged) in the caller's transaction; `source` says who
    sent them ("token:pos-1", "import"), on the timeline and on merge candidates."""
    check_distinct(orders)
    result = UpsertResult()
    prints = {order.external_id: fingerprint(order) for order in orders}
    stored = await _stored(session, list(prints))
    todo = [order for order in orders if stored.get(order.external_id, (None, None, None, None))[1] != prints[order.external_id]]
    result.unchanged = len(orders) - len(todo)
    if not todo:
        return result

    found = await matching.resolve(
        session, [matching.Record(order.external_id, order.refs(), order.line_user_id, f"order:{order.external_id}") for order in todo],
        now=now, source=f"orders:{source}",
    )
    customer_of = found.customer_of
    result.customers_created, result.merge_candidates = found.customers_created, found.merge_candidates
    table = Order.__table__
    insert = insert_on_conflict(session, table)
    changing = ("customer_id", "ordered_at", "total", "channel", "store", "status", "fingerprint", "updated_at")
    statement = insert.on_conflict_do_update(
        index_elements=["external_id"],
        set_={name: insert.excluded[name] for name in changing},
        # A concurrent writer may have stored this very version meanwhile: then nothing changes.
        where=table.c.fingerprint != insert.excluded.fingerprint,
    ).returning(table.c.id, table.c.external_id)
    rows = [{
        "external_id": order.external_id, "customer_id": customer_of[order.external_id],
        "ordered_at": order.ordered_at, "total": order.total,
        "channel": order.channel.value if order.channel else None, "store": order.store,
        "status": order.status.value, "fingerprint": prints[order.external_id], "created_at": now, "updated_at": now,
    } for order in sorted(todo, key=lambda order: order.external_id)]  # one lock order for concurrent writers
    order_ids: dict[str, int] = {}
    for chunk in chunked(rows, _CHUNK):
        order_ids.update((external_id, order_id) for order_id, external_id in (await session.execute(statement, chunk)))

    written = [order for order in todo if order.external_id in order_ids]
    replaced = [order_ids[order.external_id] for order in written if order.external_id in stored]
    for chunk in chunked(replaced, _CHUNK):
        await session.execute(sa.delete(OrderItem.__table__).where(OrderItem.__table__.c.order_id.in_(chunk)))
    items = [
        {"order_id": order_ids[order.external_id], "line_no": line_no, "sku": item.sku, "name": item.name,
         "category": item.category, "quantity": item.quantity, "unit_price": item.unit_price}
        for order in written for line_no, item in enumerate(order.items, start=1)
    ]
    for chunk in chunked(items, _CHUNK):
        await session.execute(sa.insert(OrderItem.__table__), chunk)

    timeline = []
    for order in written:
        before = stored.get(order.external_id)
        kind = KIND_BY_STATUS[order.status] if before is None or before[2] != order.status else KIND_UPDATED
        timeline.append({
            "customer_id": customer_of[order.external_id], "direction": Direction.SYS.value, "kind": kind,
            "text": None, "sender_type": "system", "sender_id": source[:64], "created_at": now,
            "payload": {"order_id": order_ids[order.external_id], "external_id": order.external_id,
                        "ordered_at": order.ordered_at.isoformat(), "total": order.total, "status": order.status.value,
                        "channel": order.channel.value if order.channel else None, "store": order.store,
                        "items": len(order.items)},
        })
    for chunk in chunked(timeline, _CHUNK):
        await session.execute(sa.insert(Interaction.__table__), chunk)
    touched = {customer_of[order.external_id] for order in written}
    touched.update(stored[order.external_id][3] for order in written if order.external_id in stored)
    await customer_metrics.refresh(session, touched, now=now)
    result.created = sum(1 for order in written if order.external_id not in stored)
    result.updated = len(written) - result.created
    result.unchanged += len(todo) - len(written)
    return result


async def _stored(session: AsyncSession, external_ids: list[str]) -> dict[str, tuple[int, str, str, int]]:
    """external_id → (id, fingerprint, status, customer_id) of the orders already stored."""
    found = {}
    table = Order.__table__
    for chunk in chunked(sorted(external_ids), _CHUNK):
        rows = await session.execute(
            sa.select(table.c.external_id, table.c.id, table.c.fingerprint, table.c.status, table.c.customer_id)
            .where(table.c.external_id.in_(chunk))
        )
        found.update((external_id, (order_id, print_, status, customer_id)) for external_id, order_id, print_, status, customer_id in rows)
    return found
