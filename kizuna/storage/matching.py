"""Which customer a record from the shop's systems belongs to (名寄せ), for a whole batch at once:
orders (storage/orders.py) and customer records (storage/customer_records.py) alike.

Each record carries references (kind, normalised value) in the precedence of `IdentityKind`:
LINE user id, external customer id, e-mail, phone. A record goes to the customer holding its
first matching reference; any other customer it matches becomes a merge candidate with that one
(never merged silently); references nobody holds become identities of the customer chosen; a
record matching nobody creates a customer (with the record's LINE user id, if it has one).

The choice runs in memory over one read of the identities (no statement per record), in the
records' sequence: each record sees the identities the records before it gave, so records of
one batch that share a reference share a customer, new or not.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import identities
from .db import chunked, is_postgres
from .identity_values import IdentityKind
from .models import Customer

_CHUNK = 1000


@dataclass(frozen=True)
class Record:
    key: Hashable  # the caller's name for the record (an order's external_id, a position)
    refs: list[tuple[str, str]]  # (kind, normalised value), in IdentityKind's precedence
    line_user_id: str | None
    source: str  # what a merge candidate it finds says it came from: "order:EC-1001"


@dataclass
class Resolved:
    customer_of: dict[Hashable, int]
    created: set[int]  # ids of the customers created for these records
    customers_created: int = 0
    merge_candidates: int = 0


@dataclass(frozen=True)
class _New:
    """A customer to create: its place among the new ones, and the LINE user id it comes with."""

    index: int
    line_user_id: str | None


async def resolve(session: AsyncSession, records: Sequence[Record], *, now: datetime, source: str) -> Resolved:
    """key → customer id for each record, creating customers and identities as needed, in the
    caller's transaction. `source` is recorded on merge candidates found by a race (see
    identities.add)."""
    holder: dict[tuple[str, str], int | _New] = dict(
        await identities.holders(session, (ref for record in records for ref in record.refs))
    )
    new: list[_New] = []
    chosen_for: dict[Hashable, int | _New] = {}
    give: list[tuple[int | _New, str, str]] = []  # identities to add: (customer, kind, value)
    conflicts: list[tuple[int | _New, int | _New, str, str, str]] = []
    for record in records:
        matched: list[tuple[int | _New, tuple[str, str]]] = []
        for ref in record.refs:
            owner = holder.get(ref)
            if owner is not None and all(owner != seen for seen, _ in matched):
                matched.append((owner, ref))
        if matched:
            chosen = matched[0][0]
            conflicts.extend((chosen, other, *ref, record.source) for other, ref in matched[1:])
        else:
            chosen = _New(len(new), record.line_user_id)
            new.append(chosen)
        for ref in record.refs:
            if ref not in holder:
                holder[ref] = chosen
                give.append((chosen, *ref))
        chosen_for[record.key] = chosen

    ids = await _create(session, new, now=now)

    def resolved(customer: int | _New) -> int:
        return ids[customer.index] if isinstance(customer, _New) else customer

    # An existing customer without a LINE user id who now has one (a record named it): it goes on
    # the customer too, where LINE's events look for it, so their first message finds them.
    line_kind = str(IdentityKind.LINE_USER_ID)  # (a plain str: an enum member's lookup costs more, per identity)
    line_ids = [{"b_id": customer, "b_line": value} for customer, kind, value in give
                if kind == line_kind and not isinstance(customer, _New)]
    if line_ids:
        table = Customer.__table__
        await session.execute(
            sa.update(table).where(table.c.id == sa.bindparam("b_id"), table.c.line_user_id.is_(None))
            .values(line_user_id=sa.bindparam("b_line")),
            line_ids,
        )
    found = Resolved({key: resolved(customer) for key, customer in chosen_for.items()}, set(ids), len(new))
    found.merge_candidates += await identities.add(
        session, [(resolved(customer), kind, value) for customer, kind, value in give], source=source, now=now
    )
    found.merge_candidates += await identities.record_candidates(
        session, [(resolved(first), resolved(second), *rest) for first, second, *rest in conflicts], now=now,
    )
    return found


async def _create(session: AsyncSession, new: list[_New], *, now: datetime) -> list[int]:
    """Insert the new customers (one multi-row INSERT … RETURNING per chunk); their ids by index.
    Those with a LINE user id are matched back by it; the others are blank rows, alike until
    their identities are added, so any returned id serves any of them."""
    if not new:
        return []
    table = Customer.__table__
    ids: list[int | None] = [None] * len(new)
    by_line = {customer.line_user_id: customer.index for customer in new if customer.line_user_id}
    blank = [customer.index for customer in new if not customer.line_user_id]
    blank_ids: list[int] = []
    if is_postgres(session):
        # One statement over an array of the LINE user ids (NULL for the blank ones), whatever their number.
        returned = await session.execute(
            sa.text("INSERT INTO customers (line_user_id, followed, blocked, registered, marketing_opt_in, created_at) "
                    "SELECT line_user_id, false, false, false, false, CAST(:now AS timestamptz) "
                    "FROM unnest(CAST(:line_user_ids AS text[])) AS line_user_id RETURNING id, line_user_id"),
            {"now": now, "line_user_ids": [customer.line_user_id for customer in new]},
        )
        created = list(returned)
    else:
        defaults = {"followed": False, "blocked": False, "registered": False, "marketing_opt_in": False, "created_at": now}
        rows = [{**defaults, "line_user_id": customer.line_user_id} for customer in new]
        created = [row for chunk in chunked(rows, _CHUNK)
                   for row in await session.execute(sa.insert(table).returning(table.c.id, table.c.line_user_id), chunk)]
    for customer_id, line_user_id in created:
        if line_user_id:
            ids[by_line[line_user_id]] = customer_id
        else:
            blank_ids.append(customer_id)
    # Ascending ids in the records' sequence: the first stranger in a batch gets the lowest id.
    for index, customer_id in zip(blank, sorted(blank_ids), strict=True):
        ids[index] = customer_id
    assert all(customer_id is not None for customer_id in ids)
    return ids  # type: ignore[return-value]
