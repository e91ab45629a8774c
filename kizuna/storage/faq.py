"""Inquiry storage: FAQ entries (and their CSV form), the revision counters, keyword
rules, business hours and matcher thresholds, and the unanswered-inquiries report.

Every change to FAQ entries bumps `inquiry_settings.faq_revision` in the same
transaction (`_bump`); every change to keyword rules, business hours or thresholds
bumps `config_revision`. Worker processes compare the stored revisions with the ones
their FAQ index was built from (see kizuna/flows/faq/inquiry.py).

CSV (UTF-8, a BOM is tolerated; header row `id,question,answer,alternates`, columns by
name in any order, optional `category` and `enabled`; alternates separated by `|`):
`parse_csv` checks the whole file and raises `CsvError` with every bad row (row 1 is
the header, as in a spreadsheet); nothing is written unless the whole file is good.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .errors import Conflict, Invalid, NotFound
from .models import (
    FAQ_ALTERNATE_MAX,
    FAQ_ALTERNATES_MAX,
    FAQ_ANSWER_MAX,
    FAQ_CATEGORY_MAX,
    FAQ_ID_MAX,
    FAQ_ID_PATTERN,
    FAQ_QUESTION_MAX,
    FaqEntry,
    InquirySettings,
    Interaction,
    KeywordRule,
    Shop,
)
from .types import utcnow

SETTINGS_ID = 1
SHOP_ID = 1
CSV_COLUMNS = ("id", "question", "answer", "alternates")
CSV_OPTIONAL = ("category", "enabled")
ALTERNATE_SEPARATOR = "|"
# Ids that would collide with the API's fixed paths under /api/v1/faq/.
RESERVED_IDS = frozenset({"export", "import", "unanswered", "settings"})
MAX_IMPORT_ROWS = 10_000
MAX_REPORTED_ERRORS = 50

_ID = re.compile(FAQ_ID_PATTERN)
_TRUE = {"1", "true", "yes", "y", "on", "はい", "有効", "○"}
_FALSE = {"0", "false", "no", "n", "off", "いいえ", "無効", "×"}


# -- FAQ entries: checks shared by the API and the CSV import -------------------------------


@dataclass(frozen=True)
class FaqFields:
    """One entry as given by an operator (a CSV row or an API body), already stripped."""

    id: str
    question: str
    answer: str
    alternates: tuple[str, ...] = ()
    category: str | None = None
    enabled: bool | None = None  # None: keep (update) or True (create)


def clean_alternates(values: Iterable[str]) -> tuple[str, ...]:
    """Stripped, empty ones dropped, duplicates removed (first kept)."""
    return tuple(dict.fromkeys(v.strip() for v in values if v and v.strip()))


def check_id(faq_id: str) -> str | None:
    if not faq_id:
        return "is missing"
    if len(faq_id) > FAQ_ID_MAX:
        return f"is longer than {FAQ_ID_MAX} characters"
    if not _ID.match(faq_id):
        return "may use only letters a-z, digits, '_', '-' and '.' (and must start with a letter or digit)"
    if faq_id.lower() in RESERVED_IDS:
        return f"{faq_id!r} is reserved"
    return None


def check_fields(entry: FaqFields) -> list[tuple[str, str]]:
    """Problems as (field, message); empty when the entry is good."""
    problems: list[tuple[str, str]] = []
    if (message := check_id(entry.id)) is not None:
        problems.append(("id", message))
    for name, value, limit in (("question", entry.question, FAQ_QUESTION_MAX), ("answer", entry.answer, FAQ_ANSWER_MAX)):
        if not value:
            problems.append((name, "is missing"))
        elif len(value) > limit:
            problems.append((name, f"is {len(value)} characters long; at most {limit}"))
    if len(entry.alternates) > FAQ_ALTERNATES_MAX:
        problems.append(("alternates", f"has {len(entry.alternates)} phrasings; at most {FAQ_ALTERNATES_MAX}"))
    for alternate in entry.alternates:
        if len(alternate) > FAQ_ALTERNATE_MAX:
            problems.append(("alternates", f"a phrasing is {len(alternate)} characters long; at most {FAQ_ALTERNATE_MAX}"))
            break
        if ALTERNATE_SEPARATOR in alternate:
            problems.append(("alternates", f"a phrasing contains {ALTERNATE_SEPARATOR!r}, the CSV separator"))
            break
    if entry.category is not None and len(entry.category) > FAQ_CATEGORY_MAX:
        problems.append(("category", f"is longer than {FAQ_CATEGORY_MAX} characters"))
    return problems


class FaqInvalid(Invalid):
    """An entry's field breaks a rule of `check_fields`."""


class FaqExists(Conflict):
    def __init__(self, faq_id: str) -> None:
        super().__init__("exists", f"an FAQ entry with id {faq_id!r} exists")


# -- CSV -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowError:
    row: int | None  # record number, the header is row 1 (None: the file as a whole)
    message: str
    field: str | None = None
    line: int | None = None  # physical line where the record starts, when it differs

    def __str__(self) -> str:
        if self.row is None:
            return (f"line {self.line}: " if self.line else "") + f"the file {self.message}"
        where = f"row {self.row}"
        if self.line is not None and self.line != self.row:
            where += f" (line {self.line})"
        return f"{where}: {self.field + ' ' if self.field else ''}{self.message}"

    def as_dict(self) -> dict:
        return {"row": self.row, "line": self.line, "field": self.field, "message": self.message}


class CsvError(ValueError):
    """The file cannot be imported; `errors` names every bad row (at most 50 are kept)."""

    def __init__(self, errors: Sequence[RowError], total: int | None = None) -> None:
        self.errors = list(errors)[:MAX_REPORTED_ERRORS]
        self.total = total if total is not None else len(errors)
        more = f" (and {self.total - len(self.errors)} more)" if self.total > len(self.errors) else ""
        super().__init__("; ".join(str(e) for e in self.errors[:5]) + (" ..." if len(self.errors) > 5 else "") + more)


@dataclass
class ParsedCsv:
    entries: list[FaqFields]
    has_category: bool
    has_enabled: bool
    warnings: list[str] = field(default_factory=list)  # rows read with a repair (see _rejoin_thousands)


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = "save it as \"CSV UTF-8\""
        try:
            data.decode("cp932")
            hint = "it looks like Shift_JIS; save it as \"CSV UTF-8\""
        except UnicodeDecodeError:
            pass
        raise CsvError([RowError(None, f"is not UTF-8 text ({hint})", line=line)]) from None


def parse_csv(data: bytes) -> ParsedCsv:
    """Check a whole CSV file; raise CsvError listing every bad row."""
    text = _decode(data)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise CsvError([RowError(None, "contains a NUL character (is it a spreadsheet file rather than CSV?)", line=line)])
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    errors: list[RowError] = []
    warnings: list[RowError] = []
    entries: list[FaqFields] = []
    first_row: dict[str, int] = {}
    columns: dict[str, int] = {}
    row_number = 0
    line_start = 1
    try:
        for record in reader:
            row_number += 1
            start, line_start = line_start, reader.line_num + 1
            if row_number == 1:
                columns = _header(record)
                continue
            if not record or all(not cell.strip() for cell in record):
                continue  # blank line
            if len(entries) + len(errors) >= MAX_IMPORT_ROWS:
                errors.append(RowError(row_number, f"the file has more than {MAX_IMPORT_ROWS} entries", line=start))
                break
            if len(record) > len(columns):
                repaired = _rejoin_thousands(record, len(columns))
                if repaired is None:
                    errors.append(RowError(row_number, f"has {len(record)} columns; the header has {len(columns)} "
                                                       "(put a value that contains a comma in double quotes)", line=start))
                    continue
                warnings.append(RowError(row_number, "has an unquoted comma in a number (like 5,500); "
                                                     "it was read as part of the number", line=start))
                record = repaired
            entry, problems = _entry(record, columns)
            for name, message in problems:
                errors.append(RowError(row_number, message, field=name, line=start))
            if entry is None:
                continue
            if entry.id and entry.id in first_row:
                errors.append(RowError(row_number, f"{entry.id!r} is already used in row {first_row[entry.id]}", field="id", line=start))
                continue
            if entry.id:
                first_row[entry.id] = row_number
            if not problems:
                entries.append(entry)
    except csv.Error as exc:
        errors.append(RowError(row_number + 1, f"is not valid CSV: {exc}", line=line_start))
    except _HeaderError as exc:
        raise CsvError([RowError(1, str(exc))]) from None
    if row_number == 0:
        raise CsvError([RowError(None, "is empty; the first row must be the header " + ",".join(CSV_COLUMNS))])
    if errors:
        raise CsvError(errors)
    if not entries:
        raise CsvError([RowError(None, "has a header but no FAQ entries")])
    return ParsedCsv(entries, "category" in columns, "enabled" in columns, [str(w) for w in warnings])


_ENDS_WITH_DIGIT = re.compile(r"\d$")
_THOUSANDS = re.compile(r"\d{3}(?!\d)")


def _rejoin_thousands(record: list[str], width: int) -> list[str] | None:
    """A hand-written CSV often has an unquoted thousands separator ("税込5,500円以上"),
    which splits one value in two. Rejoin cells split exactly there (a digit, a comma,
    three digits) until the record has the header's width; None if that is not enough."""
    cells = list(record)
    index = 0
    while len(cells) > width and index < len(cells) - 1:
        if _ENDS_WITH_DIGIT.search(cells[index]) and _THOUSANDS.match(cells[index + 1]):
            cells[index : index + 2] = [cells[index] + "," + cells[index + 1]]
        else:
            index += 1
    return cells if len(cells) == width else None


class _HeaderError(Exception):
    pass


def _header(record: list[str]) -> dict[str, int]:
    names = [name.strip().lstrip("\ufeff").lower() for name in record]
    known = (*CSV_COLUMNS, *CSV_OPTIONAL)
    unknown = [name for name in names if name not in known]
    missing = [name for name in CSV_COLUMNS if name not in names]
    duplicate = sorted({name for name in names if names.count(name) > 1})
    if missing or unknown or duplicate:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            parts.append("unknown " + ", ".join(repr(name) for name in unknown))
        if duplicate:
            parts.append("repeated " + ", ".join(duplicate))
        raise _HeaderError(
            f"bad header ({'; '.join(parts)}): it must name the columns {','.join(CSV_COLUMNS)} "
            f"(optionally also {','.join(CSV_OPTIONAL)})"
        )
    return {name: index for index, name in enumerate(names)}


def _entry(record: list[str], columns: dict[str, int]) -> tuple[FaqFields | None, list[tuple[str, str]]]:
    def cell(name: str) -> str | None:
        index = columns.get(name)
        if index is None:
            return None
        return record[index].strip() if index < len(record) else ""

    problems: list[tuple[str, str]] = []
    enabled: bool | None = None
    raw_enabled = cell("enabled")
    if raw_enabled:
        folded = raw_enabled.lower()
        if folded in _TRUE:
            enabled = True
        elif folded in _FALSE:
            enabled = False
        else:
            problems.append(("enabled", f"must be true or false, not {raw_enabled!r}"))
    category = cell("category")
    entry = FaqFields(
        id=cell("id") or "",
        question=cell("question") or "",
        answer=cell("answer") or "",
        alternates=clean_alternates((cell("alternates") or "").split(ALTERNATE_SEPARATOR)),
        category=category or None,
        enabled=enabled,
    )
    return entry, check_fields(entry) + problems


def to_csv(entries: Iterable[FaqEntry]) -> str:
    """The export: the import's format, plus the category and enabled columns."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow((*CSV_COLUMNS, *CSV_OPTIONAL))
    for entry in entries:
        writer.writerow((entry.id, entry.question, entry.answer, ALTERNATE_SEPARATOR.join(entry.alternates or ()),
                         entry.category or "", "true" if entry.enabled else "false"))
    return out.getvalue()


# -- the settings row and the revision counters ----------------------------------------------


def _dialect_insert(session: AsyncSession):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


async def _ensure_settings_row(session: AsyncSession) -> None:
    insert = _dialect_insert(session)
    await session.execute(
        insert(InquirySettings)
        .values(id=SETTINGS_ID, faq_revision=0, config_revision=0, holidays=[], thresholds={}, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["id"])
    )


async def _bump(session: AsyncSession, *, faq: bool = False, config: bool = False, **values) -> None:
    """Bump the counters (and set `values`) on the settings row, in the caller's transaction.
    The UPDATE also serialises concurrent FAQ writers on PostgreSQL (row lock)."""
    await _ensure_settings_row(session)
    changes: dict = dict(values, updated_at=utcnow())
    if faq:
        changes["faq_revision"] = InquirySettings.faq_revision + 1
    if config:
        changes["config_revision"] = InquirySettings.config_revision + 1
    await session.execute(
        sa.update(InquirySettings).where(InquirySettings.id == SETTINGS_ID).values(**changes)
        .execution_options(synchronize_session=False)
    )


# Questions left unanswered in a row after which the customer is handed to a person (0: never).
# Kept in the `thresholds` JSON column beside the matcher's overrides, under this key (no
# migration); `read_settings` gives it apart, so `Settings.thresholds` is the matcher's alone.
UNANSWERED_HANDOFF_KEY = "unanswered_handoff_after"
DEFAULT_UNANSWERED_HANDOFF_AFTER = 2


@dataclass(frozen=True)
class Settings:
    faq_revision: int = 0
    config_revision: int = 0
    weekly_hours: dict | None = None
    holidays: tuple[str, ...] = ()
    thresholds: dict = field(default_factory=dict)
    unanswered_handoff_after: int = DEFAULT_UNANSWERED_HANDOFF_AFTER


async def read_settings(session: AsyncSession) -> Settings:
    """The settings row in one primary-key read (defaults if the row is missing)."""
    row = (await session.execute(
        sa.select(InquirySettings.faq_revision, InquirySettings.config_revision, InquirySettings.weekly_hours,
                  InquirySettings.holidays, InquirySettings.thresholds)
        .where(InquirySettings.id == SETTINGS_ID)
    )).first()
    if row is None:
        return Settings()
    thresholds = dict(row[4] or {})
    handoff_after = thresholds.pop(UNANSWERED_HANDOFF_KEY, None)
    return Settings(int(row[0]), int(row[1]), row[2] or None, tuple(row[3] or ()), thresholds,
                    DEFAULT_UNANSWERED_HANDOFF_AFTER if handoff_after is None else int(handoff_after))


async def faq_revision(session: AsyncSession) -> int:
    return (await read_settings(session)).faq_revision


async def set_business_hours(session: AsyncSession, weekly: dict | None, holidays: Sequence[str]) -> None:
    await _bump(session, config=True, weekly_hours=weekly, holidays=list(holidays))


async def _stored_thresholds(session: AsyncSession) -> dict:
    """The `thresholds` column as stored, locked until the commit (PostgreSQL) so that two
    changes of different settings in it never undo each other."""
    await _ensure_settings_row(session)
    value = (await session.execute(
        sa.select(InquirySettings.thresholds).where(InquirySettings.id == SETTINGS_ID).with_for_update()
    )).scalar_one_or_none()
    return dict(value or {})


async def set_thresholds(session: AsyncSession, thresholds: dict) -> None:
    """Replace the matcher's overrides (the unanswered-questions rule is kept)."""
    stored = await _stored_thresholds(session)
    kept = {UNANSWERED_HANDOFF_KEY: stored[UNANSWERED_HANDOFF_KEY]} if UNANSWERED_HANDOFF_KEY in stored else {}
    await _bump(session, config=True, thresholds={**dict(thresholds), **kept})


async def set_unanswered_handoff_after(session: AsyncSession, value: int) -> None:
    """Set the unanswered-questions rule (checked by flows/faq/settings.py)."""
    stored = await _stored_thresholds(session)
    await _bump(session, config=True, thresholds={**stored, UNANSWERED_HANDOFF_KEY: int(value)})


async def shop_timezone(session: AsyncSession) -> str:
    value = (await session.execute(sa.select(Shop.timezone).where(Shop.id == SHOP_ID))).scalar_one_or_none()
    return value or "Asia/Tokyo"


# -- FAQ entries -------------------------------------------------------------------------------


async def list_entries(
    session: AsyncSession, *, enabled: bool | None = None, category: str | None = None,
    after: str | None = None, limit: int | None = None,
) -> list[FaqEntry]:
    """In id order; `after` and `limit` page through them."""
    statement = sa.select(FaqEntry).order_by(FaqEntry.id)
    if enabled is not None:
        statement = statement.where(FaqEntry.enabled == enabled)
    if category is not None:
        statement = statement.where(FaqEntry.category == category)
    if after is not None:
        statement = statement.where(FaqEntry.id > after)
    if limit is not None:
        statement = statement.limit(limit)
    return list((await session.execute(statement)).scalars())


async def get_entry(session: AsyncSession, faq_id: str) -> FaqEntry | None:
    return await session.get(FaqEntry, faq_id)


def folded(text: str) -> str:
    """Text as search compares it: full/half width and case folded, outer spaces dropped."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


async def search_entries(
    session: AsyncSession, query: str | None, *, enabled: bool | None = None, limit: int | None = None
) -> list[FaqEntry]:
    """Entries whose id, question, answer, phrasings or category contain every word of
    `query` (folded), in id order: the FAQ editor's search, and staff picking an answer to
    send by hand (`enabled=True`). An FAQ is hundreds of entries, not millions: one read,
    filtered here (SQLite keeps the phrasings as escaped JSON, which LIKE cannot search)."""
    words = folded(query or "").split()
    found = [
        entry for entry in await list_entries(session, enabled=enabled)
        if all(word in folded("\n".join((entry.id, entry.question, entry.answer, entry.category or "", *(entry.alternates or ()))))
               for word in words)
    ]
    return found[:limit] if limit is not None else found


async def categories(session: AsyncSession) -> list[str]:
    statement = sa.select(FaqEntry.category).where(FaqEntry.category.is_not(None)).distinct().order_by(FaqEntry.category)
    return list((await session.execute(statement)).scalars())


async def unused_id(session: AsyncSession, prefix: str = "faq") -> str:
    """An id no entry has yet (faq-35, ...): what the console offers for a new entry."""
    taken = set((await session.execute(sa.select(FaqEntry.id))).scalars())
    number = len(taken) + 1
    while f"{prefix}-{number}" in taken:
        number += 1
    return f"{prefix}-{number}"


def _raise_problems(entry: FaqFields) -> None:
    problems = check_fields(entry)
    if problems:
        raise FaqInvalid(*problems[0])


def audit_target(faq_id: str) -> str:
    """How the audit log names an entry: `faq:<id>`."""
    return f"faq:{faq_id}"


async def create_entry(session: AsyncSession, fields: FaqFields, *, actor: audit.Actor | None = None) -> FaqEntry:
    fields = _stripped(fields)
    _raise_problems(fields)
    if await session.get(FaqEntry, fields.id) is not None:
        raise FaqExists(fields.id)
    now = utcnow()
    entry = FaqEntry(id=fields.id, question=fields.question, answer=fields.answer, alternates=list(fields.alternates),
                     category=fields.category, enabled=True if fields.enabled is None else fields.enabled,
                     created_at=now, updated_at=now)
    session.add(entry)
    try:
        await session.flush()
    except IntegrityError:  # created by another request since the check above
        raise FaqExists(fields.id) from None
    await _bump(session, faq=True)
    audit.record_by(session, actor, audit.Action.FAQ_CREATED, target=audit_target(entry.id), question=entry.question)
    return entry


def _stripped(fields: FaqFields) -> FaqFields:
    return FaqFields(
        id=fields.id.strip(), question=fields.question.strip(), answer=fields.answer.strip(),
        alternates=clean_alternates(fields.alternates), category=(fields.category or "").strip() or None,
        enabled=fields.enabled,
    )


async def update_entry(
    session: AsyncSession, faq_id: str, changes: dict, *, actor: audit.Actor | None = None
) -> FaqEntry | None:
    """Change the given fields (question, answer, alternates, category, enabled)."""
    entry = await session.get(FaqEntry, faq_id, with_for_update=True)
    if entry is None:
        return None
    merged = FaqFields(
        id=entry.id,
        question=changes.get("question", entry.question) or "",
        answer=changes.get("answer", entry.answer) or "",
        alternates=tuple(changes["alternates"]) if changes.get("alternates") is not None else tuple(entry.alternates or ()),
        category=changes.get("category", entry.category),
        enabled=changes["enabled"] if changes.get("enabled") is not None else entry.enabled,
    )
    merged = _stripped(merged)
    _raise_problems(merged)
    changed = _apply(entry, merged, with_category=True)
    if changed:
        entry.updated_at = utcnow()
        await session.flush()
        await _bump(session, faq=True)
        audit.record_by(session, actor, audit.Action.FAQ_UPDATED, target=audit_target(entry.id), changed=", ".join(changed))
    return entry


async def add_alternate(session: AsyncSession, faq_id: str, text: str, *, actor: audit.Actor | None = None) -> FaqEntry:
    """Teach an entry a customer's phrasing (an unanswered question, as asked): it becomes
    one more alternate, under the same checks as any edit. Raises NotFound or FaqInvalid."""
    entry = await session.get(FaqEntry, faq_id, with_for_update=True, populate_existing=True)
    if entry is None:
        raise NotFound("no such FAQ entry")
    phrasing = text.strip()
    if not phrasing:
        raise FaqInvalid("alternates", "the phrasing is empty")
    if phrasing in (entry.alternates or ()) or phrasing == entry.question:
        return entry  # known already: nothing to learn
    merged = _stripped(FaqFields(entry.id, entry.question, entry.answer, (*(entry.alternates or ()), phrasing),
                                 entry.category, entry.enabled))
    _raise_problems(merged)
    entry.alternates = list(merged.alternates)
    entry.updated_at = utcnow()
    await session.flush()
    await _bump(session, faq=True)
    audit.record_by(session, actor, audit.Action.FAQ_UPDATED, target=audit_target(entry.id), alternate_added=phrasing)
    return entry


def _apply(entry: FaqEntry, fields: FaqFields, *, with_category: bool) -> list[str]:
    """Copy `fields` onto `entry`; the names of the fields that changed."""
    new = {
        "question": fields.question,
        "answer": fields.answer,
        "alternates": list(fields.alternates),
        "enabled": True if fields.enabled is None else fields.enabled,
    }
    if with_category:
        new["category"] = fields.category
    changed = []
    for name, value in new.items():
        if getattr(entry, name) != value:
            setattr(entry, name, value)
            changed.append(name)
    return changed


async def delete_entry(session: AsyncSession, faq_id: str, *, actor: audit.Actor | None = None) -> bool:
    result = await session.execute(sa.delete(FaqEntry).where(FaqEntry.id == faq_id))
    if result.rowcount:
        await _bump(session, faq=True)
        audit.record_by(session, actor, audit.Action.FAQ_DELETED, target=audit_target(faq_id))
        return True
    return False


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)  # not in the file, --replace
    kept: list[str] = field(default_factory=list)  # not in the file, left as they were
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.disabled)

    def lines(self) -> list[str]:
        out = [f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"]
        out += [f"warning: {warning}" for warning in self.warnings]
        if self.disabled:
            out.append(f"{len(self.disabled)} not in the file were disabled: {', '.join(self.disabled[:20])}"
                       + (" ..." if len(self.disabled) > 20 else ""))
        if self.kept:
            out.append(f"{len(self.kept)} not in the file were kept as they are (use --replace to disable them): "
                       + ", ".join(self.kept[:20]) + (" ..." if len(self.kept) > 20 else ""))
        return out


async def import_entries(
    session: AsyncSession, parsed: ParsedCsv, *, replace: bool = False, actor: audit.Actor | None = None
) -> ImportReport:
    """Create or update every entry of the file by id, in the caller's transaction.

    An entry in the file is enabled unless the file has an `enabled` column saying
    otherwise; its category is changed only when the file has a `category` column.
    Entries not in the file are kept, or disabled with `replace`."""
    existing = {entry.id: entry for entry in await list_entries(session)}
    report = ImportReport(warnings=list(parsed.warnings))
    now = utcnow()
    for fields in parsed.entries:
        entry = existing.pop(fields.id, None)
        if entry is None:
            session.add(FaqEntry(id=fields.id, question=fields.question, answer=fields.answer,
                                 alternates=list(fields.alternates), category=fields.category,
                                 enabled=True if fields.enabled is None else fields.enabled,
                                 created_at=now, updated_at=now))
            report.created.append(fields.id)
        elif _apply(entry, fields, with_category=parsed.has_category):
            entry.updated_at = now
            report.updated.append(fields.id)
        else:
            report.unchanged.append(fields.id)
    for entry in existing.values():
        if replace and entry.enabled:
            entry.enabled = False
            entry.updated_at = now
            report.disabled.append(entry.id)
        elif not replace:
            report.kept.append(entry.id)
    if report.changed:
        await session.flush()
        await _bump(session, faq=True)
        audit.record_by(session, actor, audit.Action.FAQ_IMPORTED, target="faq", created=len(report.created),
                        updated=len(report.updated), disabled=len(report.disabled), replace=replace)
    return report


# -- keyword rules ---------------------------------------------------------------------------


async def list_rules(session: AsyncSession, *, enabled_only: bool = False) -> list[KeywordRule]:
    """In the order they are checked: priority (high first), then id."""
    statement = sa.select(KeywordRule).order_by(KeywordRule.priority.desc(), KeywordRule.id)
    if enabled_only:
        statement = statement.where(KeywordRule.enabled.is_(True))
    return list((await session.execute(statement)).scalars())


async def get_rule(session: AsyncSession, rule_id: int) -> KeywordRule | None:
    return await session.get(KeywordRule, rule_id)


async def create_rule(session: AsyncSession, values: dict) -> KeywordRule:
    now = utcnow()
    rule = KeywordRule(**values, created_at=now, updated_at=now)
    session.add(rule)
    await session.flush()
    await _bump(session, config=True)
    return rule


async def update_rule(session: AsyncSession, rule: KeywordRule, changes: dict) -> KeywordRule:
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.updated_at = utcnow()
    await session.flush()
    await _bump(session, config=True)
    return rule


async def delete_rule(session: AsyncSession, rule_id: int) -> bool:
    result = await session.execute(sa.delete(KeywordRule).where(KeywordRule.id == rule_id))
    if result.rowcount:
        await _bump(session, config=True)
        return True
    return False


# -- questions left unanswered in a row (the handoff rule) -----------------------------------

# Timeline rows that end a run of unanswered questions (anything the bot did answer, a
# person taking over, a flow) besides the unanswered ones themselves. Small talk
# (「了解です」 after an apology) neither ends nor extends a run.
_RUN_KINDS = ("inquiry.answered", "inquiry.disambiguated", "inquiry.unanswered", "inquiry.feedback",
              "inquiry.complaint", "conversation.bot_handoff", "conversation.resolved", "conversation.handed_back",
              "flow.started")


async def unanswered_in_a_row(session: AsyncSession, customer_id: int, *, since: datetime, limit: int) -> int:
    """How many of the customer's latest inquiries since `since` in a row the FAQ could not
    answer (outcome "none"), counting back at most `limit`. Reads the latest timeline rows
    of the customer (index on customer_id, id)."""
    if limit <= 0:
        return 0
    rows = (await session.execute(
        sa.select(Interaction.kind, Interaction.payload)
        .where(Interaction.customer_id == customer_id, Interaction.direction == "sys", Interaction.kind.in_(_RUN_KINDS),
               Interaction.created_at >= since)
        .order_by(Interaction.id.desc())
        .limit(limit)
    )).all()
    count = 0
    for kind, payload in rows:
        if kind != "inquiry.unanswered" or (payload or {}).get("outcome") != "none":
            break
        count += 1
    return count


# -- the unanswered-inquiries report ---------------------------------------------------------


@dataclass(frozen=True)
class UnansweredQuestion:
    text: str
    count: int
    customers: int
    last_asked_at: datetime


async def _taught(session: AsyncSession) -> set[str]:
    """The questions and phrasings of the enabled entries, folded."""
    rows = await session.execute(sa.select(FaqEntry.question, FaqEntry.alternates).where(FaqEntry.enabled.is_(True)))
    return {folded(text) for question, alternates in rows for text in (question, *(alternates or ()))}


async def unanswered(session: AsyncSession, *, since: datetime, limit: int) -> list[UnansweredQuestion]:
    """Inquiries the bot could not answer since `since`, the same text grouped, most
    frequent first (then most recent). Scans the timeline rows of that kind. A text an
    enabled entry now has as its question or a phrasing is left out: it has been taught
    (in the console, one click), and the list is what is left to do."""
    taught = await _taught(session)
    last = sa.func.max(Interaction.created_at)
    count = sa.func.count()
    rows = (await session.execute(
        sa.select(Interaction.text, count, sa.func.count(sa.distinct(Interaction.customer_id)), last)
        .where(Interaction.kind == "inquiry.unanswered", Interaction.created_at >= since, Interaction.text.is_not(None))
        .group_by(Interaction.text)
        .order_by(count.desc(), last.desc())
        .limit(limit + len(taught))  # room for the taught ones, dropped below
    )).all()
    # max() keeps the column's type, so `at` comes back an aware UTC datetime on both backends.
    left = [UnansweredQuestion(text, int(n), int(people), at) for text, n, people, at in rows if folded(text) not in taught]
    return left[:limit]
