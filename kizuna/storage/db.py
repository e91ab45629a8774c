"""The database engine and sessions. Sessions are always passed in explicitly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


# SQLSTATEs that mean "the server is not there for us right now": connection exceptions
# (class 08), shutting down or starting up (57P01-57P03), too many connections (53300).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    if database_url.startswith("sqlite"):
        return _sqlite_engine(database_url)
    # Bounded waits, so an unreachable server is an error after seconds, not a hang:
    # connecting (asyncpg's own default is 60 s) and waiting for a pooled connection.
    engine = create_async_engine(
        database_url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=10, connect_args={"timeout": 5},
    )
    _ping_when_idle(engine)
    return engine


# A pooled connection that sat unused this long is pinged before it is handed out.
IDLE_PING_SECONDS = 1.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pre-ping, only for connections that were idle in the pool (`pool_pre_ping` pings on
    every checkout: three round trips, BEGIN ; ROLLBACK, a fifth of a worker's time).

    An idle connection may have been closed by a server restart or the network meanwhile:
    it is pinged, and a dead one is replaced before anyone uses it, as with pre-ping. One in
    steady use is not: if the server restarted under it, its first statement fails as the
    statements in flight during the restart do (`lost_connection`: the work is retried
    once the database answers), and SQLAlchemy then drops every pooled connection older
    than that failure at once, so each process sees at most one such failure per restart."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection, record):
        record.info["kizuna_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy):
        idle_since = record.info.pop("kizuna_idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return  # a new connection, or one in steady use
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            if dialect.is_disconnect(error, dbapi_connection, None) or lost_connection(error):
                # The pool discards it and checks out another (a new one if need be).
                raise sqlalchemy.exc.DisconnectionError(str(error)) from error
            raise


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` may say the database could not be reached (a restart, a failover,
    the network) rather than that a statement was wrong: the first is waited out, the
    second is a failure of the work that ran it. A bare OSError is only a hint (code
    that is not the database raises them too); `lost_connection` is certain."""
    return any(
        isinstance(cause, (OSError, TimeoutError, sqlalchemy.exc.TimeoutError)) for cause in _causes(error)
    ) or lost_connection(error)


def lost_connection(error: BaseException) -> bool:
    """Whether the database connection itself failed under `error` (also when the hot path
    talks to asyncpg directly, without SQLAlchemy's wrapping)."""
    for cause in _causes(error):
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, asyncpg.exceptions.ConnectionDoesNotExistError) or (
            isinstance(cause, asyncpg.exceptions.InterfaceError) and "connection is closed" in str(cause)
        ):
            return True
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_STATES):
            return True
    return False


def _causes(error: BaseException | None):
    """`error` and what caused it, a few levels deep."""
    for _ in range(8):
        if error is None:
            return
        yield error
        error = error.__cause__ or error.__context__


def _sqlite_engine(database_url: str) -> AsyncEngine:
    path = database_url.split(":///", 1)[1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(database_url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, start transactions (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):
        # A deferred transaction that reads and then writes can fail at once with
        # "database is locked" instead of waiting; taking the write lock up front
        # makes concurrent writers queue on busy_timeout instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: committed on success, rolled back on error."""
    async with sessions() as session, session.begin():
        yield session


# -- query helpers ----------------------------------------------------------------------------

LIKE_ESCAPE = "\\"


def contains(text: str) -> str:
    """A LIKE pattern for `text` anywhere, its wildcards taken literally (use with
    `escape=LIKE_ESCAPE`): a search for 「100%」 or 「_」 finds just that."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def insert_on_conflict(session: AsyncSession, table: Any) -> Any:
    """An INSERT of `table` that can take ON CONFLICT (`on_conflict_do_nothing` /
    `on_conflict_do_update`): both backends have it, each in its own dialect's construct."""
    if session.bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def any_of(session: AsyncSession, column: Any, values: Sequence[Any], element_type: Any = None) -> Any:
    """`column IN values` that is one statement whatever the number of values: on PostgreSQL
    `column = ANY(:array)`, one array parameter, so the statement is prepared once per
    connection (an IN list is a new statement, prepared again, for each length: a worker's
    batches of events would keep asyncpg's statement cache churning). Elsewhere an IN list."""
    if session.bind.dialect.name == "postgresql":
        array = sa.bindparam("any_of", value=list(values), type_=postgresql.ARRAY(element_type or column.type), unique=True)
        return column == sa.any_(array)
    return column.in_(list(values))


def pairs_of(session: AsyncSession, first: Any, second: Any, pairs: Sequence[tuple[Any, Any]]) -> Any:
    """`(first, second) IN pairs`, as `any_of`: on PostgreSQL against two array parameters
    zipped by `unnest`, one statement whatever the number of pairs."""
    if session.bind.dialect.name == "postgresql":
        firsts = sa.bindparam("pairs_first", value=[p[0] for p in pairs], type_=postgresql.ARRAY(first.type), unique=True)
        seconds = sa.bindparam("pairs_second", value=[p[1] for p in pairs], type_=postgresql.ARRAY(second.type), unique=True)
        return sa.tuple_(first, second).in_(sa.select(sa.func.unnest(firsts), sa.func.unnest(seconds)))
    return sa.tuple_(first, second).in_(list(pairs))


def chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """`items` in slices of at most `size`: keeps an IN list or a multi-row VALUES under the
    backends' limits on bound parameters (32,766 on SQLite, 32,767 on PostgreSQL)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def is_postgres(session: AsyncSession) -> bool:
    return session.bind.dialect.name == "postgresql"


async def copy_records(session: AsyncSession, table: str, columns: Sequence[str], records: Sequence[tuple]) -> None:
    """PostgreSQL only: COPY `records` into `table` (a real or a temporary table) inside the
    session's transaction, through the asyncpg connection under it. One COPY moves rows about
    ten times faster than a multi-row INSERT of the same rows (no SQL to build, bind or parse).
    `table` and `columns` are the caller's names, never input; JSON columns take JSON text."""
    if not records:
        return
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():
        # SQLAlchemy opens the database transaction with its first statement: open it, so the
        # COPY is part of it (and is rolled back with it).
        await session.execute(sqlalchemy.text("SELECT 1"))
    await driver.copy_records_to_table(table, columns=list(columns), records=records)


async def insert_rows(session: AsyncSession, table: Any, columns: Sequence[str], rows: Sequence[tuple], *, json_last: bool = False) -> None:
    """A plain INSERT of `rows` (tuples in `columns` order) in the session's transaction: COPY on
    PostgreSQL, multi-row INSERTs of at most 1,000 rows on SQLite. `json_last`: the last column
    is JSON (a dict here; COPY takes it as JSON text)."""
    if session.bind.dialect.name == "postgresql":
        if json_last:
            rows = [(*row[:-1], orjson.dumps(row[-1]).decode()) for row in rows]  # (orjson: a fifth of json's time)
        await copy_records(session, table.name, columns, rows)
        return
    for chunk in chunked(rows, 1000):
        await session.execute(sqlalchemy.insert(table), [dict(zip(columns, row)) for row in chunk])
