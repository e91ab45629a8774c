"""Cart events from the shop's EC site (issue 14 §1): an item added to or removed from a cart,
a checkout started, a cart abandoned. Each is a row on its customer's timeline
(`cart.added`, `cart.removed`, `cart.checkout_started`, `cart.abandoned`), written set-based.

`store` is what `POST /api/v1/cart-events` calls, for one event or a batch, in the caller's
transaction (a batch is stored whole or not at all). A fixed number of statements per batch:

1. read which of the batch's idempotency keys (`external_id`) are already in the ledger
   (`cart_events`): those events were stored before and change nothing, not even when sent with
   other contents (an event happened once; its first report stands);
2. find each new event's customer exactly as an order's (storage/matching.py): by its
   references in `IdentityKind`'s precedence, a reference nobody holds becomes an identity of
   the customer chosen, two customers matched become a merge candidate, and an event matching
   nobody creates a customer (with its LINE user id, if it names one);
3. claim the keys in the ledger (`INSERT … ON CONFLICT DO NOTHING RETURNING`: of two senders
   racing with one event, one claims it) and put the claimed events on the timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import matching
from .db import chunked, insert_on_conflict, insert_rows
from .errors import Invalid
from .models import CartEvent, CartEventCreate, Direction, Interaction

KIND_PREFIX = "cart."
_CHUNK = 1000
_TIMELINE_COLUMNS = ("customer_id", "direction", "kind", "text", "sender_type", "sender_id", "created_at", "payload")


@dataclass
class CartEventsResult:
    created: int = 0
    unchanged: int = 0
    customers_created: int = 0
    merge_candidates: int = 0


def check_distinct(events: Sequence[CartEventCreate], where: str = "events") -> None:
    """One batch names each event once (two reports of one event in a batch would leave which
    one is stored to chance). Invalid naming the repeat as `events[i].external_id`."""
    first: dict[str, int] = {}
    for index, event in enumerate(events):
        seen = first.setdefault(event.external_id, index)
        if seen != index:
            raise Invalid(f"{where}[{index}].external_id", f"repeats {where}[{seen}] ({event.external_id})")


async def store(session: AsyncSession, events: Sequence[CartEventCreate], *, now: datetime, source: str) -> CartEventsResult:
    """Store the new ones of `events` on their customers' timelines, in the caller's transaction;
    `source` says who sent them ("token:ec-site"), on the timeline and on merge candidates."""
    check_distinct(events)
    result = CartEventsResult()
    known = await _known(session, [event.external_id for event in events])
    todo = [event for event in events if event.external_id not in known]
    result.unchanged = len(events) - len(todo)
    if not todo:
        return result
    found = await matching.resolve(
        session, [matching.Record(event.external_id, event.refs(), event.line_user_id, f"cart:{event.external_id}") for event in todo],
        now=now, source=f"cart_events:{source}",
    )
    result.customers_created, result.merge_candidates = found.customers_created, found.merge_candidates

    table = CartEvent.__table__
    claim = (insert_on_conflict(session, table).on_conflict_do_nothing(index_elements=["external_id"])
             .returning(table.c.external_id))
    claimed: set[str] = set()
    ledger = [{"external_id": event.external_id, "kind": event.kind.value, "occurred_at": event.occurred_at, "created_at": now}
              for event in sorted(todo, key=lambda event: event.external_id)]  # one lock order for concurrent senders
    for chunk in chunked(ledger, _CHUNK):
        claimed.update((await session.execute(claim, chunk)).scalars())

    timeline = [
        (found.customer_of[event.external_id], Direction.SYS.value, KIND_PREFIX + event.kind.value, None, "system", source[:64], now,
         {"external_id": event.external_id, "occurred_at": event.occurred_at.isoformat(), "cart_id": event.cart_id,
          "sku": event.sku, "name": event.name, "category": event.category, "quantity": event.quantity,
          "unit_price": event.unit_price})
        for event in todo if event.external_id in claimed
    ]
    await insert_rows(session, Interaction.__table__, _TIMELINE_COLUMNS, timeline, json_last=True)
    result.created = len(timeline)
    result.unchanged += len(todo) - len(timeline)
    return result


async def _known(session: AsyncSession, external_ids: list[str]) -> set[str]:
    table = CartEvent.__table__
    found: set[str] = set()
    for chunk in chunked(sorted(external_ids), _CHUNK):
        found.update((await session.execute(sa.select(table.c.external_id).where(table.c.external_id.in_(chunk)))).scalars())
    return found
