"""Customer records from the shop's EC site and POS (name, kana, e-mail, phone, birthday, gender,
prefecture, the shop's customer id, tags): upserted in batches, set-based.

Each record finds its customer as an order does (storage/matching.py: by its references in the
precedence LINE user id, external customer id, e-mail, phone; two customers matched → a merge
candidate, never a merge; nobody → a new customer). Then its details are applied:

- a customer who registered on LINE keeps what they told us: the record only fills what they
  left empty (their own words are newer and theirs);
- anyone else takes the record's values (the shop's system is the truth about its customers);
- a value the record leaves out never clears one; tags are added, never removed.

A record sent again unchanged changes nothing: only customers whose columns differ are updated
(one executemany UPDATE), tags are `INSERT … ON CONFLICT DO NOTHING`. The caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import matching
from .db import chunked, insert_on_conflict
from .errors import Invalid
from .models import Customer, CustomerRecordCreate, CustomerTag

# record field → customer column
COLUMNS = {"name": "full_name", "kana": "name_kana", "email": "email", "phone": "phone", "birthday": "birthday",
           "gender": "gender", "prefecture": "prefecture"}
_CHUNK = 1000


@dataclass
class RecordsResult:
    created: int = 0  # customers created for records that matched nobody
    updated: int = 0  # existing customers whose details or tags changed
    unchanged: int = 0
    merge_candidates: int = 0

    def add(self, other: RecordsResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def check_distinct(records: Sequence[CustomerRecordCreate], where: str = "customers") -> None:
    """One batch names each of the shop's customers once (two versions would leave the outcome to chance)."""
    first: dict[str, int] = {}
    for index, record in enumerate(records):
        if record.external_customer_id is None:
            continue
        seen = first.setdefault(record.external_customer_id, index)
        if seen != index:
            raise Invalid(f"{where}[{index}].external_customer_id", f"repeats {where}[{seen}] ({record.external_customer_id})")


async def upsert(session: AsyncSession, records: Sequence[CustomerRecordCreate], *, now: datetime, source: str) -> RecordsResult:
    check_distinct(records)
    result = RecordsResult()
    if not records:
        return result
    found = await matching.resolve(
        session, [matching.Record(index, record.refs(), record.line_user_id, f"customer_record:{source}")
                  for index, record in enumerate(records)],
        now=now, source=f"customer_records:{source}",
    )
    result.merge_candidates = found.merge_candidates
    ids = sorted(set(found.customer_of.values()))
    current: dict[int, dict] = {}
    table = Customer.__table__
    for chunk in chunked(ids, _CHUNK):
        rows = await session.execute(
            sa.select(table.c.id, table.c.registered, *(table.c[column] for column in COLUMNS.values())).where(table.c.id.in_(chunk))
        )
        current.update((row.id, dict(row._mapping)) for row in rows)

    changes: dict[int, dict] = {}
    for index, record in enumerate(records):
        customer_id = found.customer_of[index]
        row = current[customer_id]
        for field, column in COLUMNS.items():
            value = getattr(record, field)
            if value is None or row[column] == value or (row["registered"] and row[column] is not None):
                continue
            row[column] = value  # a later record of the batch sees this one's values
            changes.setdefault(customer_id, {})[column] = value
    for column in COLUMNS.values():
        # One executemany per column changed: every parameter set of a statement names the same columns.
        params = [{"b_id": customer_id, "b_value": values[column]} for customer_id, values in changes.items() if column in values]
        if params:
            await session.execute(
                sa.update(table).where(table.c.id == sa.bindparam("b_id")).values({column: sa.bindparam("b_value")}), params
            )

    tagged: set[int] = set()
    tags = list({(found.customer_of[index], tag) for index, record in enumerate(records) for tag in record.tags})
    tag_table = CustomerTag.__table__
    for chunk in chunked(tags, _CHUNK):
        statement = (insert_on_conflict(session, tag_table).on_conflict_do_nothing(index_elements=["customer_id", "tag"])
                     .returning(tag_table.c.customer_id))
        returned = await session.execute(statement, [{"customer_id": customer_id, "tag": tag, "created_at": now}
                                                     for customer_id, tag in chunk])
        tagged.update(customer_id for (customer_id,) in returned)

    touched = set(current)
    result.created = len(found.created)
    result.updated = len((set(changes) | tagged) - found.created)
    result.unchanged = len(touched - set(changes) - tagged - found.created)
    return result
