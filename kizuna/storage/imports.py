"""CSV files from the shop's EC site and POS, read as a stream of checked batches.

A file of a million rows is never held in memory: it is read row by row and handed on in batches
of at most BATCH_ORDERS orders (an order's lines always in one batch), each with the errors of
its rows. The caller stores a batch only when it has none (`run_import`), so a bad row
never half-imports its batch; the other batches go in. A second run of the same file changes
nothing (storage/orders.upsert is idempotent).

Speed (bench/order_import.py, docs/benchmarks.md): the batches are parsed in a thread a few
batches ahead, while the database works on the previous ones; good batches are stored ten at a
time (one transaction, each with its customers' metrics); a plainly valid row becomes an order
without a pydantic model (the model checks every other row, so the errors are the model's).

Files: UTF-8 (with or without BOM) or Shift_JIS/CP932, which Japanese EC and POS exports use;
the encoding is detected, not asked for: a file that is valid UTF-8 throughout is UTF-8, else
CP932 (a superset of Shift_JIS with the Windows characters such as ① and ㈱). Columns are found
by their header name, in any order. Rows are numbered as a spreadsheet shows them: the header
is row 1.

The orders file has one row per order line; the order's columns repeat on each of its lines,
which must be consecutive:
    external_id,ordered_at,total,external_customer_id,email,phone,line_user_id,channel,store,status,
    sku,name,category,quantity,unit_price
Required: external_id, ordered_at, total and at least one customer reference. A row whose item
columns are all empty is an order without lines.

The customers file has one row per customer (at least one reference; tags split by "|"):
    external_customer_id,name,kana,email,phone,birthday,gender,prefecture,line_user_id,tags
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import functools
import operator
import queue
import re
import threading
import unicodedata
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import customer_metrics, customer_records
from . import orders as order_store
from .db import transaction
from .identity_values import BadIdentity, normalise
from .models import (
    CUSTOMER_REFS, INT4_MAX, ITEM_CATEGORY_MAX, ITEM_NAME_MAX, ORDER_EXTERNAL_ID_MAX, ORDER_ITEMS_MAX, ORDER_STORE_MAX,
    SKU_MAX, CustomerRecordCreate, OrderChannel, OrderCreate, OrderItemCreate, OrderStatus,
)

BATCH_ORDERS = 1000
ORDER_COLUMNS = ("external_id", "ordered_at", "total", "external_customer_id", "email", "phone", "line_user_id",
                 "channel", "store", "status")
ITEM_COLUMNS = ("sku", "name", "category", "quantity", "unit_price")
ORDERS_HEADER = ORDER_COLUMNS + ITEM_COLUMNS
REQUIRED_ORDER_COLUMNS = ("external_id", "ordered_at", "total")
_READ_CHUNK = 1 << 20


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, header): nothing in it was looked at."""


@dataclass(frozen=True)
class RowError:
    row: int
    field: str | None
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.message}" if self.field else f"row {self.row}: {self.message}"


@dataclass
class Batch:
    orders: list[Any] = field(default_factory=list)  # OrderCreate, or CustomerRecordCreate in a customers file
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0  # data rows read into this batch (bad ones included)


# -- the file: encoding, rows ------------------------------------------------------------------

@dataclass(frozen=True)
class FileInfo:
    encoding: str  # "utf-8-sig" (a BOM is skipped when there is one) or "cp932"
    lines: int  # newlines: the data rows, near enough for a progress bar (a quoted cell may hold more)


def inspect(path: Path) -> FileInfo:
    """Detect the encoding and count the lines in one streaming pass (a 1 MB buffer)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    lines = 0
    with open(path, "rb") as file:
        while chunk := file.read(_READ_CHUNK):
            lines += chunk.count(b"\n")
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
        if utf8:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8 = False
    if utf8:
        return FileInfo("utf-8-sig", lines)
    # Not UTF-8: CP932 must read the whole file, or the file is neither.
    decoder = codecs.getincrementaldecoder("cp932")()
    with open(path, "rb") as file:
        offset = 0
        while chunk := file.read(_READ_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                raise ImportFileError(
                    f"is neither UTF-8 nor Shift_JIS (CP932) text (byte {offset + error.start}); save it as CSV UTF-8"
                ) from None
            offset += len(chunk)
    return FileInfo("cp932", lines)


def _header_name(cell: str) -> str:
    return unicodedata.normalize("NFKC", cell).strip().lower()


def read_rows(path: Path, encoding: str, *, known: tuple[str, ...], required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number, {column: cell}) for each data row, streaming; the header (row 1) names the
    columns, in any order. Blank rows are skipped but counted."""
    with open(path, encoding=encoding, newline="") as file:
        reader = csv.reader(file, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            raise ImportFileError("is empty; row 1 must be the header: " + ",".join(known)) from None
        except csv.Error as error:
            raise ImportFileError(f"row 1: is not valid CSV: {error}") from None
        names = [_header_name(cell) for cell in header]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ImportFileError(f"row 1: unknown column {unknown[0]!r}; the columns are: {','.join(known)}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ImportFileError(f"row 1: column {repeated[0]!r} is given twice")
        missing = [name for name in required if name not in names]
        if missing:
            raise ImportFileError(f"row 1: the column {missing[0]!r} is missing; required: {','.join(required)}")
        row = 1
        while True:
            row += 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield row, {"": f"is not valid CSV: {error}"}
                continue
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != len(names):
                yield row, {"": f"has {len(record)} cells; the header has {len(names)} (quote a cell that holds a comma)"}
                continue
            yield row, dict(zip(names, record))


# -- cells to orders ---------------------------------------------------------------------------

_THOUSANDS = re.compile(r"[0-9]{1,3}(,[0-9]{3})+")


def _number(cell: str) -> str:
    """What a spreadsheet writes for a number: ５５００, "5,500", ¥5,500, 5500円 → "5500"."""
    text = unicodedata.normalize("NFKC", cell).strip().removeprefix("¥").removesuffix("円").strip()
    return text.replace(",", "") if _THOUSANDS.fullmatch(text) else text


def _time(cell: str, zone: tzinfo) -> str | datetime:
    """ISO 8601 with an offset as given; a time without one (what Japanese exports write, also
    with slashes: 2026/12/01 10:30) is the shop's local time."""
    text = unicodedata.normalize("NFKC", cell).strip()
    try:
        moment = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        return text  # the model names the problem
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _problems(error: ValidationError, row: int, prefix: str = "") -> list[RowError]:
    found = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if not isinstance(part, int)]
        message = "is not a known column" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        found.append(RowError(row, ".".join(loc) or None, message))
    return found


def _order_cells(cells: dict[str, str]) -> dict[str, str]:
    return {name: cells[name].strip() for name in ORDER_COLUMNS if name in cells}


def _order(cells: dict[str, str], row: int, zone: tzinfo) -> tuple[order_store.Plain | None, list[RowError]]:
    """The order of its first row (without its lines), or the row's errors."""
    values: dict[str, object] = {name: value for name, value in _order_cells(cells).items() if value}
    if "total" in values:
        values["total"] = _number(str(values["total"]))
    if "ordered_at" in values:
        values["ordered_at"] = _time(str(values["ordered_at"]), zone)
    for name in ("external_id", "ordered_at", "total"):
        if name not in values:
            return None, [RowError(row, name, "is required")]
    order = _plain_order(values)
    if order is not None:
        return order, []
    try:
        return order_store.plain(OrderCreate.model_validate(values)), []
    except ValidationError as error:
        return None, _problems(error, row)


Item = tuple[str, str | None, str | None, int, int]  # sku, name, category, quantity, unit_price


def _item(cells: dict[str, str], row: int) -> tuple[Item | None, list[RowError]]:
    sku, name, category, quantity, unit_price = (cells.get(column, "").strip() for column in ITEM_COLUMNS)
    if not (sku or name or category or quantity or unit_price):
        return None, []  # an order without lines
    # The plain case, as the model would take it (see _plain_order), without building one.
    if (sku and len(sku) <= SKU_MAX and len(name) <= ITEM_NAME_MAX and len(category) <= ITEM_CATEGORY_MAX
            and (number := _whole(unit_price or "-", 0, INT4_MAX)) is not None
            and (count := _whole(quantity or "1", 1, 1_000_000)) is not None):
        return (sku, name or None, category or None, count, number), []
    values: dict[str, object] = {column: cells[column].strip() for column in ITEM_COLUMNS if cells.get(column, "").strip()}
    for column in ("quantity", "unit_price"):
        if column in values:
            values[column] = _number(str(values[column]))
    try:
        item = OrderItemCreate.model_validate(values)
    except ValidationError as error:
        return None, _problems(error, row)
    return (item.sku, item.name, item.category, item.quantity, item.unit_price), []


# -- the plain rows' short cut -------------------------------------------------------------------
# Validating each row with pydantic was most of an import's time. A row whose cells are plainly
# right (ASCII digits in range, known words, lengths within bounds, references that normalise)
# becomes an order without it, with the values the model would give; any other row goes through
# the model, so every error message is the model's, as before (tests/storage hold the two paths
# to the same result).

_CHANNELS = {channel.value for channel in OrderChannel}
_STATUSES = {status.value for status in OrderStatus}
_REF_MAX = {name: OrderCreate.model_fields[name].metadata[0].max_length for name in CUSTOMER_REFS}


def _whole(text: object, low: int, high: int) -> int | None:
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 10:
        number = int(text)
        if low <= number <= high:
            return number
    return None


@functools.lru_cache(maxsize=1 << 16)
def _reference(kind: str, value: str) -> str | None:
    """The normalised reference, or None when the model would refuse it (phone numbers are
    parsed by phonenumbers, which is slow: a file repeats its customers' references)."""
    if len(value) > _REF_MAX[kind]:
        return None
    try:
        return normalise(kind, value)
    except BadIdentity:
        return None


def _plain_order(values: dict[str, object]) -> order_store.Plain | None:
    external_id, ordered_at, store = values["external_id"], values["ordered_at"], values.get("store")
    total = _whole(values["total"], 0, INT4_MAX)
    channel, status = values.get("channel"), values.get("status", "completed")
    if (total is None or status not in _STATUSES or (channel is not None and channel not in _CHANNELS)
            or not isinstance(ordered_at, datetime) or not isinstance(external_id, str) or len(external_id) > ORDER_EXTERNAL_ID_MAX
            or (isinstance(store, str) and len(store) > ORDER_STORE_MAX)):
        return None
    refs: list[tuple[str, str]] = []
    for kind in CUSTOMER_REFS:  # in IdentityKind's precedence, as OrderCreate.refs() gives them
        if kind in values:
            normalised = _reference(kind, values[kind])  # type: ignore[arg-type]
            if normalised is None:
                return None
            refs.append((kind, normalised))
    if not refs:
        return None
    return order_store.Plain(external_id, ordered_at, total, channel, store, status, refs, [])  # type: ignore[arg-type]


@dataclass
class _Pending:
    """The order being read: its first row's cells, its lines so far, and whether any row of it is bad."""

    external_id: str
    first_row: int
    raw: tuple[str, ...]  # its order columns as read, to find a later row that says otherwise
    order: order_store.Plain | None
    items: list[Item] = field(default_factory=list)
    bad: bool = False


def order_batches(rows: Iterator[tuple[int, dict[str, str]]], zone: tzinfo, *, size: int = BATCH_ORDERS) -> Iterator[Batch]:
    """The rows of an orders file as batches of at most `size` orders, with their rows' errors."""
    batch = Batch()
    pending: _Pending | None = None
    seen: dict[str, int] = {}  # external id -> its first row, within this batch
    present: list[str] = []  # the order columns the header has
    order_columns: Callable[[dict[str, str]], tuple[str, ...]] | None = None

    def finish() -> None:
        nonlocal pending
        if pending is not None and not pending.bad and pending.order is not None:
            if len(pending.items) > ORDER_ITEMS_MAX:
                batch.errors.append(RowError(pending.first_row, None, f"order {pending.external_id} has more than {ORDER_ITEMS_MAX} lines"))
            else:
                pending.order.items = pending.items
                batch.orders.append(pending.order.finish())
        pending = None

    for row, cells in rows:
        external_id = cells.get("external_id", "").strip()
        if pending is None or external_id != pending.external_id:
            finish()
            if len(seen) >= size:
                yield batch
                batch, seen = Batch(), {}
        batch.rows += 1
        if "" in cells:  # the row itself could not be read
            batch.errors.append(RowError(row, None, cells[""]))
            if pending is not None:
                pending.bad = True
            continue
        if order_columns is None:  # every readable row has the header's columns (at least the three required)
            present = [name for name in ORDER_COLUMNS if name in cells]
            order_columns = operator.itemgetter(*present)
        if pending is None:
            order, problems = _order(cells, row, zone)
            pending = _Pending(external_id, row, order_columns(cells), order, bad=bool(problems))
            batch.errors.extend(problems)
            if external_id and external_id in seen:
                batch.errors.append(RowError(row, "external_id", f"order {external_id} was in row {seen[external_id]}: "
                                                                 "an order's lines must be consecutive rows"))
                pending.bad = True
            seen.setdefault(external_id, row)
        elif order_columns(cells) != pending.raw:  # (the same cells as read: the same order, the usual case)
            first = dict(zip(present, pending.raw))
            differs = next((name for name, value in _order_cells(cells).items() if first[name].strip() != value), None)
            if differs is not None:
                batch.errors.append(RowError(row, differs, f"differs from row {pending.first_row} of the same order"))
                pending.bad = True
        item, problems = _item(cells, row)
        batch.errors.extend(problems)
        if problems:
            pending.bad = True
        elif item is not None:
            pending.items.append(item)
    finish()
    if batch.rows:
        yield batch


# -- customer records ----------------------------------------------------------------------------

CUSTOMERS_HEADER = ("external_customer_id", "name", "kana", "email", "phone", "birthday", "gender", "prefecture",
                    "line_user_id", "tags")
TAG_SEPARATOR = "|"


def _record(cells: dict[str, str], row: int) -> tuple[CustomerRecordCreate | None, list[RowError]]:
    values: dict[str, object] = {name: value.strip() for name, value in cells.items() if value.strip()}
    if "birthday" in values:
        values["birthday"] = unicodedata.normalize("NFKC", str(values["birthday"])).replace("/", "-")
    if "tags" in values:
        values["tags"] = [tag for tag in str(values["tags"]).split(TAG_SEPARATOR) if tag.strip()]
    try:
        return CustomerRecordCreate.model_validate(values), []
    except ValidationError as error:
        return None, _problems(error, row)


def customer_batches(rows: Iterator[tuple[int, dict[str, str]]], *, size: int = BATCH_ORDERS) -> Iterator[Batch]:
    """The rows of a customers file (one customer a row) as batches of at most `size` records."""
    batch = Batch()
    seen: dict[str, int] = {}
    for row, cells in rows:
        if batch.rows >= size:
            yield batch
            batch, seen = Batch(), {}
        batch.rows += 1
        if "" in cells:
            batch.errors.append(RowError(row, None, cells[""]))
            continue
        record, problems = _record(cells, row)
        batch.errors.extend(problems)
        if record is None:
            continue
        if record.external_customer_id is not None:
            first = seen.setdefault(record.external_customer_id, row)
            if first != row:
                batch.errors.append(RowError(row, "external_customer_id", f"{record.external_customer_id} is already in row {first}"))
                continue
        batch.orders.append(record)
    if batch.rows:
        yield batch


# -- running it ----------------------------------------------------------------------------------

@dataclass
class ImportSummary:
    rows: int = 0
    records: int = 0  # orders or customer records read from good batches
    batches: int = 0
    skipped_batches: int = 0  # not stored: a row in them is bad
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0
    stored: Any = None  # orders.UpsertResult or customer_records.RecordsResult, summed over the batches

    MAX_KEPT = 1000  # errors kept for the report; the count goes on


@dataclass(frozen=True)
class FileKind:
    """What one kind of file holds: its columns, how its rows become batches, how a batch is stored."""

    name: str
    header: tuple[str, ...]
    required: tuple[str, ...]
    batches: Callable[[Iterator[tuple[int, dict[str, str]]], tzinfo], Iterator[Batch]]
    store: Callable[..., Awaitable[Any]]  # (session, batch items, now=, source=) -> a result with add()
    result: Callable[[], Any]
    # Good batches stored together, up to this many records in one transaction (the database work
    # costs per statement, not per row); `key` names a record, which appears once per store call.
    store_records: int = BATCH_ORDERS
    key: Callable[[Any], Hashable] | None = None


STORE_ORDERS = 10_000
ORDERS = FileKind("orders", ORDERS_HEADER, REQUIRED_ORDER_COLUMNS, order_batches, order_store.upsert, order_store.UpsertResult,
                  store_records=STORE_ORDERS, key=lambda order: order.external_id)
CUSTOMERS = FileKind("customers", CUSTOMERS_HEADER, (), lambda rows, _zone: customer_batches(rows),
                     customer_records.upsert, customer_records.RecordsResult)


class _ReadAhead:
    """The batches of a file, read in a thread up to `depth` batches ahead of the caller: the
    parsing of the next batches (Python) runs while the database works on the last ones."""

    _END = object()

    def __init__(self, batches: Iterator[Batch], depth: int) -> None:
        self._batches = batches
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="import-read-ahead", daemon=True)

    def _produce(self) -> None:
        try:
            for batch in self._batches:
                if self._stop.is_set():
                    return
                self._queue.put(batch)
            self._queue.put(self._END)
        except BaseException as error:  # noqa: BLE001 - handed to the caller, raised there
            self._queue.put(error)

    async def __aenter__(self) -> _ReadAhead:
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Free the producer if it waits for room (it puts at most one more batch, then sees stop).
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        await asyncio.to_thread(self._thread.join)

    async def next(self) -> Batch | None:
        item = await asyncio.to_thread(self._queue.get)
        if item is self._END:
            self._queue.put(self._END)  # asked again: still the end
            return None
        if isinstance(item, BaseException):
            raise item
        return item


async def run_import(
    kind: FileKind, path: Path, sessions: async_sessionmaker[AsyncSession] | None, *, zone: tzinfo,
    now: Callable[[], datetime], dry_run: bool, progress: Callable[[int], None] = lambda rows: None,
    on_error: Callable[[RowError], None] = lambda error: None,
) -> ImportSummary:
    """Read `path` and store each batch that has no bad row (nothing at all with `dry_run`, which
    needs no database: `sessions` may be None). `progress(rows)` as batches are done; `on_error`
    for each bad row as found. Raises ImportFileError when the file cannot be read at all.

    Good batches are stored several at a time (`kind.store_records` records, one transaction):
    a bad row still keeps exactly its own batch out, since bad batches never join a group; a
    database error rolls back the group it happened in, and the import stops there (a re-run
    stores what is missing and changes nothing else)."""
    info = inspect(path)
    rows = read_rows(path, info.encoding, known=kind.header, required=kind.required)
    summary = ImportSummary(stored=kind.result())
    source = f"import:{path.name}"[:64]
    group: list[Any] = []
    keys: set[Hashable] = set()
    group_rows = 0

    async def store() -> None:
        nonlocal group, keys, group_rows
        if group and not dry_run:
            assert sessions is not None
            async with transaction(sessions) as session:
                summary.stored.add(await kind.store(session, group, now=now(), source=source))
        if group_rows:
            progress(group_rows)
        group, keys, group_rows = [], set(), 0

    async with _ReadAhead(kind.batches(rows, zone), depth=2 * max(1, kind.store_records // BATCH_ORDERS)) as batches:
        while (batch := await batches.next()) is not None:
            summary.rows += batch.rows
            summary.batches += 1
            summary.error_count += len(batch.errors)
            for error in batch.errors:
                on_error(error)
                if len(summary.errors) < summary.MAX_KEPT:
                    summary.errors.append(error)
            if batch.errors:
                summary.skipped_batches += 1
                progress(batch.rows)
                continue
            summary.records += len(batch.orders)
            batch_keys = {kind.key(record) for record in batch.orders} if kind.key else set()
            if len(group) + len(batch.orders) > kind.store_records or not keys.isdisjoint(batch_keys):
                await store()  # full, or it names a record of the group again: that one goes in after
            group.extend(batch.orders)
            keys |= batch_keys
            group_rows += batch.rows
        await store()
    if not dry_run and summary.records:
        # Each batch kept its customers' metrics current; the spend deciles depend on everyone,
        # so they are recomputed once, after the whole file (storage/customer_metrics.py).
        assert sessions is not None
        async with transaction(sessions) as session:
            await customer_metrics.refresh_population(session)
            # The churn model's fit takes seconds to minutes on a large shop (bench/churn_model.py):
            # too long inside an import, so it is made due and a worker runs it within a minute.
            await customer_metrics.mark_churn_model_due(session, now=now())
    return summary
