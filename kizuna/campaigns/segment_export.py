"""A segment's members as CSV (issue 14 §5): the one export the console and the REST API share.

- Audited: the export is recorded (`Action.EXPORT`) in its own transaction before the first
  byte goes out, so a download that is cut short is still on the record.
- Streamed: members are read a page at a time (by id, a fresh session each), so memory stays
  flat on a segment of a million customers.
- Formula-safe: names are typed by customers (LINE display names) and by the shop's systems;
  a cell that starts with = + - @, a tab or a carriage return would be run as a formula by
  Excel or Google Sheets (CSV injection), so it is prefixed with ' (OWASP's advice).
- UTF-8 with a BOM, CRLF line ends: what Excel in Japan needs to open it without mojibake.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import audit, audit_reads, data_requests
from kizuna.storage.db import transaction
from kizuna.storage.errors import Invalid
from kizuna.storage.models import PROVISION_TEXT_MAX
from kizuna.storage.types import utcnow

from . import rules, segments

PAGE = 1000
BOM = "\ufeff"
COLUMNS = ("id", "line_user_id", "display_name", "full_name", "registered", "followed", "blocked", "frequency", "monetary",
           "last_order_at", "recency_days", "rfm_r", "rfm_f", "rfm_m", "decile", "f2", "ltv")
_RISKY = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """A cell's text, never read as a formula (see the module's docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if isinstance(value, str) and text.startswith(_RISKY):
        return "'" + text
    return text


def _row(member: segments.Member) -> list[str]:
    customer, metrics = member.customer, member.metrics
    values = (customer.id, customer.line_user_id, customer.display_name, customer.full_name, customer.registered,
              customer.followed, customer.blocked, metrics.frequency, metrics.monetary, metrics.last_order_at,
              metrics.recency_days, metrics.rfm_r, metrics.rfm_f, metrics.rfm_m, metrics.decile, metrics.f2, metrics.ltv)
    return [safe_cell(value) for value in values]


def _lines(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def filename(segment_id: int) -> str:
    return f"segment-{segment_id}.csv"  # ASCII: the name is the shop's text, not for a header


# A provision record's defaults when the exporter names no recipient or purpose (issue 16 part 5):
# a segment's CSV is usually for the shop's own people (analysis, a mailing by the shop itself).
DEFAULT_RECIPIENT = "社内（自社利用）"
DEFAULT_PURPOSE = "マーケティング分析"


def provision_texts(recipient: str | None, purpose: str | None) -> tuple[str, str]:
    """The recipient and purpose as recorded: blank means the default; at most 200 characters, no
    control characters (Invalid naming the field)."""
    out = []
    for field, value, default in (("recipient", recipient, DEFAULT_RECIPIENT), ("purpose", purpose, DEFAULT_PURPOSE)):
        if len(value or "") > PROVISION_TEXT_MAX or any(unicodedata.category(char) == "Cc" for char in value or ""):
            raise Invalid(field, f"at most {PROVISION_TEXT_MAX} characters, no control characters")
        # (NFKC may lengthen a little: ㍻ is 平成; the column holds PROVISION_TEXT_MAX)
        text = " ".join(unicodedata.normalize("NFKC", value or "").split())[:PROVISION_TEXT_MAX]
        out.append(text or default)
    return out[0], out[1]


async def start(session: AsyncSession, segment_id: int, *, actor: audit.Actor, via: str, now: datetime | None = None,
                recipient: str | None = None, purpose: str | None = None) -> None:
    """Check the segment exists (NotFound) and its rule is one the language accepts (Invalid:
    refused before anything is sent, not half-way through), and record the export: in the audit
    log with the customers it holds (one INSERT … SELECT of the segment's own query, as of `now`:
    breach scoping, storage/audit_reads.py), and as a third-party provision record (to whom, why,
    how many customers); the caller commits."""
    recipient, purpose = provision_texts(recipient, purpose)
    segment = await segments.get(session, segment_id)
    rules.check(segment.rule)
    now = now or utcnow()
    count = (await segments.preview(session, segment.rule, now=now, sample=0)).count
    entry = audit.record(session, actor, audit.Action.EXPORT, target=f"segment:{segment.id} {segment.name}", at=now,
                         format="csv", via=via)
    await audit_reads.read_selected(session, entry, await segments.audience(session, segment.rule, now=now))
    data_requests.record_provision(session, data_requests.Provision(
        scope=f"segment:{segment.id}", format="csv", recipient=recipient, purpose=purpose, customer_count=count,
    ), actor=actor.label, now=now)


async def stream(sessions: async_sessionmaker[AsyncSession], segment_id: int, *, now: datetime) -> AsyncIterator[bytes]:
    """The CSV's bytes: the BOM and the header, then a chunk per page of members."""
    yield BOM.encode("utf-8") + _lines([list(COLUMNS)])
    after = None
    while True:
        async with sessions() as session:
            page = await segments.members(session, segment_id, now=now, limit=PAGE, after=after)
        if not page:
            return
        yield _lines([_row(member) for member in page])
        if len(page) < PAGE:
            return
        after = page[-1].customer.id


async def export(sessions: async_sessionmaker[AsyncSession], segment_id: int, *, now: datetime, actor: audit.Actor,
                 via: str, recipient: str | None = None, purpose: str | None = None) -> AsyncIterator[bytes]:
    """Record the export (committed before anything is sent), then the stream."""
    async with transaction(sessions) as session:
        await start(session, segment_id, actor=actor, via=via, now=now, recipient=recipient, purpose=purpose)
    return stream(sessions, segment_id, now=now)
