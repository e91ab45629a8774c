"""Breach scoping (issue 16 part 6, APPI Art. 26): which customers' records each staff account or
API token read or exported, and when, from where.

A read is an audit entry (who, when, from which address, what) plus one `audit_customer_reads`
row per customer it read: one row for a customer page, a page's ids for a list, and for a
segment export its members by one INSERT … SELECT of the segment's own query (a 100k export is
one statement, not 100k inserts, and not a JSON blob the report would have to unpack).

The report groups one actor's reads in a period by customer: how often, first and last time,
from which addresses, by which actions. Customers are named by id (pseudonymous); names are
looked up only for the admin who asks (`names`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .errors import Invalid, NotFound
from .models import ApiToken, AuditCustomerRead, AuditEntry, Customer, Staff

REPORT_MAX_DAYS = 400  # a period longer than this is refused (a report, not a dump of the log)


async def read(session: AsyncSession, actor: audit.Actor, action: audit.Action, customer_ids: Iterable[int], *,
               target: str | None = None, at: datetime | None = None, **details) -> AuditEntry | None:
    """An audit entry for reading `customer_ids` and one read row each (one multi-row INSERT), in
    the caller's transaction. Nothing when no customer was read (an empty page)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return None
    entry = audit.record(session, actor, action, target=target, at=at, **details)
    await session.flush()
    await session.execute(sa.insert(AuditCustomerRead), [{"audit_entry_id": entry.id, "customer_id": customer_id} for customer_id in ids])
    return entry


async def read_selected(session: AsyncSession, entry: AuditEntry, customer_ids: sa.Select) -> int:
    """The customers of `customer_ids` (a select of one column of ids, e.g. a segment's compiled
    rule) as read by `entry`, with one INSERT … SELECT; how many."""
    await session.flush()
    ids = customer_ids.subquery("read_ids")
    column = list(ids.c)[0]
    result = await session.execute(
        sa.insert(AuditCustomerRead).from_select(
            ["audit_entry_id", "customer_id"], sa.select(sa.literal(entry.id, sa.BigInteger), column).distinct()
        )
    )
    return result.rowcount


# -- the report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    """The actor a report is about: a staff account (by id) or an API token (by its label)."""

    kind: str  # staff | token
    id: int
    label: str  # what the audit log calls them: the e-mail, or "token:<name>"
    name: str  # for people: the e-mail or the token's name


@dataclass
class CustomerReads:
    customer_id: int
    times: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    ips: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)
    name: str | None = None  # only when asked for (the admin's view)


@dataclass
class Report:
    who: Who
    since: datetime
    until: datetime
    customers: list[CustomerReads]
    entries: int  # audit entries (views, exports) in the period


def parse_actor(value: object) -> tuple[str, int]:
    """"staff:<id>" or "token:<id>" (the report's `actor`)."""
    kind, _, raw = str(value or "").partition(":")
    if kind not in ("staff", "token") or not raw.isdigit() or not 1 <= int(raw) <= 2**31 - 1:
        raise Invalid("actor", "must be staff:<id> or token:<id>")
    return kind, int(raw)


async def resolve(session: AsyncSession, kind: str, actor_id: int) -> Who:
    if kind == "staff":
        account = await session.get(Staff, actor_id)
        if account is None:
            raise NotFound("no such staff account")
        return Who("staff", account.id, account.email, account.email)
    token = await session.get(ApiToken, actor_id)
    if token is None:
        raise NotFound("no such API token")
    # The API writes "token:<name>" (api/http.py `actor`): two tokens of one name share it.
    return Who("token", token.id, f"token:{token.name}", token.name)


def check_period(since: datetime, until: datetime) -> None:
    if until <= since:
        raise Invalid("until", "must be after since")
    if (until - since).days > REPORT_MAX_DAYS:
        raise Invalid("since", f"the period is at most {REPORT_MAX_DAYS} days")


def _by(who: Who) -> sa.ColumnElement:
    if who.kind == "staff":
        return AuditEntry.actor_staff_id == who.id
    return sa.and_(AuditEntry.actor == who.label, AuditEntry.actor_staff_id.is_(None))


async def report(session: AsyncSession, who: Who, *, since: datetime, until: datetime, names: bool = False) -> Report:
    """What `who` read or exported in [since, until), by customer (lowest id first)."""
    check_period(since, until)
    in_period = sa.and_(_by(who), AuditEntry.at >= since, AuditEntry.at < until)
    grouped = (
        sa.select(AuditCustomerRead.customer_id, AuditEntry.ip, AuditEntry.action, sa.func.count(),
                  sa.func.min(AuditEntry.at), sa.func.max(AuditEntry.at))
        .join(AuditEntry, AuditEntry.id == AuditCustomerRead.audit_entry_id)
        .where(in_period)
        .group_by(AuditCustomerRead.customer_id, AuditEntry.ip, AuditEntry.action)
    )
    found: dict[int, CustomerReads] = {}
    for customer_id, ip, action, times, first_at, last_at in (await session.execute(grouped)).all():
        row = found.setdefault(customer_id, CustomerReads(customer_id))
        row.times += times
        row.first_at = first_at if row.first_at is None else min(row.first_at, first_at)
        row.last_at = last_at if row.last_at is None else max(row.last_at, last_at)
        if ip:
            row.ips.add(ip)
        row.actions.add(action)
    entries = (await session.execute(
        sa.select(sa.func.count(sa.distinct(AuditCustomerRead.audit_entry_id)))
        .join(AuditEntry, AuditEntry.id == AuditCustomerRead.audit_entry_id).where(in_period)
    )).scalar_one()
    customers = [found[key] for key in sorted(found)]
    if names and customers:
        await _add_names(session, customers)
    return Report(who, since, until, customers, int(entries))


async def _add_names(session: AsyncSession, customers: list[CustomerReads]) -> None:
    by_id = {row.customer_id: row for row in customers}
    ids = list(by_id)
    for start in range(0, len(ids), 1000):
        statement = sa.select(Customer.id, Customer.full_name, Customer.display_name).where(Customer.id.in_(ids[start:start + 1000]))
        for customer_id, full_name, display_name in (await session.execute(statement)).all():
            by_id[customer_id].name = full_name or display_name


CSV_COLUMNS = ("customer_id", "times", "first_at", "last_at", "ip_addresses", "actions")
_RISKY = ("=", "+", "-", "@", "\t", "\r")  # a cell Excel would run as a formula (as campaigns/segment_export.py)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return "'" + text if isinstance(value, str) and text.startswith(_RISKY) else text


def to_csv(result: Report, *, names: bool = False) -> bytes:
    """The report as CSV for the authorities: UTF-8 with a BOM and CRLF (Excel in Japan), a
    header of who and which period, then one line per customer; names only when asked."""
    import csv
    import io

    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["actor", _cell(result.who.label), "since", result.since.isoformat(), "until", result.until.isoformat(),
                     "entries", result.entries])
    writer.writerow([*CSV_COLUMNS, *(("name",) if names else ())])
    for row in result.customers:
        writer.writerow([row.customer_id, row.times, _cell(row.first_at), _cell(row.last_at), " ".join(sorted(row.ips)),
                         " ".join(sorted(row.actions)), *((_cell(row.name),) if names else ())])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
