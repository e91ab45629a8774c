"""Customers' identities and merge candidates: how a record from another system (an order, a
customer record) or a registration finds the customer it belongs to (名寄せ).

A (kind, value) names at most one customer (UNIQUE in the database). When one record matches
two customers, nothing is merged: the pair is recorded as a merge candidate for an admin.
Every write here is set-based and `ON CONFLICT DO NOTHING`, so two writers racing for the same
value never fail: the loser's claim becomes a merge candidate instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .db import chunked, copy_records, insert_on_conflict, is_postgres
from .identity_values import BadIdentity, IdentityKind, normalise
from .models import Customer, CustomerIdentity, MergeCandidate

Ref = tuple[str, str]  # (kind, normalised value)

# Values per IN list: well under both backends' limits on bound parameters.
_CHUNK = 5000


async def holders(session: AsyncSession, refs: Iterable[Ref]) -> dict[Ref, int]:
    """Which customer holds each of `refs` (those nobody holds are absent). A LINE user id is
    also found on `customers.line_user_id`, the column LINE's events are matched on, which wins
    if the two ever disagree."""
    by_kind: dict[str, list[str]] = {}
    for kind, value in set(refs):
        by_kind.setdefault(kind, []).append(value)
    found: dict[Ref, int] = {}
    table = CustomerIdentity.__table__
    for kind, values in by_kind.items():
        for chunk in chunked(sorted(values), _CHUNK):
            rows = await session.execute(
                sa.select(table.c.value, table.c.customer_id).where(table.c.kind == kind, table.c.value.in_(chunk))
            )
            found.update(((kind, value), customer_id) for value, customer_id in rows)
            if kind == IdentityKind.LINE_USER_ID:
                rows = await session.execute(
                    sa.select(Customer.line_user_id, Customer.id).where(Customer.line_user_id.in_(chunk))
                )
                found.update(((kind, value), customer_id) for value, customer_id in rows)
    return found


async def add(session: AsyncSession, rows: Sequence[tuple[int, str, str]], *, source: str, now: datetime) -> int:
    """Give each customer its (customer_id, kind, value) identity. A value another customer
    already holds (a concurrent writer got there first) stays theirs, and the pair becomes a
    merge candidate. Returns the number of merge candidates recorded."""
    if not rows:
        return 0
    table = CustomerIdentity.__table__
    wanted = {(kind, value): customer_id for customer_id, kind, value in rows}
    # In (kind, value) order: two writers claiming overlapping values lock them in the same order,
    # so one waits for the other instead of both deadlocking (PostgreSQL).
    contested = wanted  # the values to read back: who holds them now
    if is_postgres(session) and len(wanted) > _COPY_FROM:
        added = await _add_by_copy(session, [(customer_id, kind, value) for (kind, value), customer_id in sorted(wanted.items())], now=now)
        contested = {ref: customer_id for ref, customer_id in wanted.items() if ref not in added}
    else:
        for chunk in chunked(sorted(wanted.items()), _CHUNK):
            await session.execute(
                insert_on_conflict(session, table).on_conflict_do_nothing(index_elements=["kind", "value"]),
                [{"customer_id": customer_id, "kind": kind, "value": value, "created_at": now}
                 for (kind, value), customer_id in chunk],
            )
    held = await holders(session, contested) if contested else {}
    lost = [(customer_id, held[ref], *ref, source) for ref, customer_id in contested.items()
            if held.get(ref, customer_id) != customer_id]
    return await record_candidates(session, lost, now=now)


_COPY_FROM = 100  # identities at once from which COPY + one INSERT … SELECT beats a multi-row INSERT


async def _add_by_copy(session: AsyncSession, rows: list[tuple[int, str, str]], *, now: datetime) -> set[Ref]:
    """`add`'s INSERT … ON CONFLICT DO NOTHING on PostgreSQL for many rows (an import): COPY into a
    temporary table, then one INSERT … SELECT in (kind, value) order. Returns the values it
    inserted (only the others need reading back)."""
    await session.execute(sa.text(
        "CREATE TEMPORARY TABLE IF NOT EXISTS import_identities (customer_id integer, kind text, value text) ON COMMIT DELETE ROWS"
    ))
    await session.execute(sa.text("DELETE FROM import_identities"))  # an earlier call in this transaction
    await copy_records(session, "import_identities", ("customer_id", "kind", "value"), rows)
    inserted = await session.execute(sa.text(
        "INSERT INTO customer_identities (customer_id, kind, value, created_at) "
        "SELECT customer_id, kind, value, CAST(:now AS timestamptz) FROM import_identities ORDER BY kind, value "
        "ON CONFLICT (kind, value) DO NOTHING RETURNING kind, value"
    ), {"now": now})
    return {(kind, value) for kind, value in inserted}


async def record_candidates(session: AsyncSession, pairs: Iterable[tuple[int, int, str, str, str]], *, now: datetime) -> int:
    """Record (customer, other customer, kind, value, source) as merge candidates: one row per
    pair of customers whichever way round it was found (a pair already listed, decided or
    not, is left as it is). Returns how many pairs were new."""
    rows: dict[tuple[int, int], dict] = {}
    for first, second, kind, value, source in pairs:
        if first == second:
            continue
        low, high = sorted((first, second))
        rows.setdefault((low, high), {"customer_id": low, "other_customer_id": high, "kind": kind, "value": value,
                                      "source": source[:100], "status": "pending", "created_at": now})
    if not rows:
        return 0
    table = MergeCandidate.__table__
    added = 0
    for chunk in chunked(list(rows.values()), 1000):
        statement = (insert_on_conflict(session, table)
                     .on_conflict_do_nothing(index_elements=["customer_id", "other_customer_id"])
                     .returning(table.c.id))
        added += len((await session.execute(statement, chunk)).all())
    return added


def profile_refs(customer: Customer) -> list[Ref]:
    """The identities a customer's own columns give: LINE user id, registered e-mail and phone
    (a value that cannot be normalised is skipped: it identifies nobody)."""
    refs = []
    for kind, value in ((IdentityKind.LINE_USER_ID, customer.line_user_id), (IdentityKind.EMAIL, customer.email),
                        (IdentityKind.PHONE, customer.phone)):
        if value:
            try:
                refs.append((str(kind), normalise(kind, value)))
            except BadIdentity:
                continue
    return refs


async def link_profile(session: AsyncSession, customer: Customer, *, source: str, now: datetime) -> int:
    """After a customer gave (or changed) their e-mail or phone: those become their identities,
    and a customer already holding one (an EC customer who is the same person, say) becomes a
    merge candidate with them. Returns the number of merge candidates recorded."""
    assert customer.id is not None
    return await add(session, [(customer.id, kind, value) for kind, value in profile_refs(customer)], source=source, now=now)


async def of_customer(session: AsyncSession, customer_id: int) -> list[CustomerIdentity]:
    statement = sa.select(CustomerIdentity).where(CustomerIdentity.customer_id == customer_id).order_by(CustomerIdentity.id)
    return list((await session.execute(statement)).scalars())


async def of_customers(session: AsyncSession, customer_ids: Iterable[int]) -> dict[int, dict[str, list[str]]]:
    """Per customer: their identity values by kind (what the merge page shows side by side)."""
    found: dict[int, dict[str, list[str]]] = {}
    ids = sorted(set(customer_ids))
    if not ids:
        return found
    statement = sa.select(CustomerIdentity).where(CustomerIdentity.customer_id.in_(ids)).order_by(CustomerIdentity.id)
    for row in (await session.execute(statement)).scalars():
        found.setdefault(row.customer_id, {}).setdefault(row.kind, []).append(row.value)
    return found


async def merge_candidates(
    session: AsyncSession, *, status: str | None = "pending", limit: int = 100, after_id: int | None = None
) -> list[MergeCandidate]:
    """Oldest first (cursor paging by id); `status` None: all of them."""
    statement = sa.select(MergeCandidate).order_by(MergeCandidate.id).limit(limit)
    if status is not None:
        statement = statement.where(MergeCandidate.status == status)
    if after_id is not None:
        statement = statement.where(MergeCandidate.id > after_id)
    return list((await session.execute(statement)).scalars())
