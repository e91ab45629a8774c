"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes everywhere.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are stored
    as naive UTC and given their zone back on the way out. Naive input is refused:
    a naive datetime in this code base is a bug, not local time.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# JSONB on PostgreSQL (indexable, used by segment rules later), JSON text on SQLite.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

# 64-bit ids on PostgreSQL for the tables that grow without bound; SQLite needs
# plain INTEGER for its rowid autoincrement.
BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
