"""Breach scoping (issue 16 part 6, APPI): which customers a staff account or an API token read
or exported in a period, from the audit log (storage/audit_reads.py). Admins only. Customers
are given by id (pseudonymous): the names are for the console's report, not the API."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from kizuna.storage import audit_reads
from kizuna.storage.roles import Role

from .http import Endpoint, invalid_field, json_answer, services, text_param

ADMIN = (Role.ADMIN,)


class ActorRead(BaseModel):
    kind: str  # staff | token
    id: int
    name: str  # the staff member's e-mail, or the token's name


class CustomerReadsRead(BaseModel):
    customer_id: int
    times: int  # reads and exports of this customer in the period
    first_at: datetime
    last_at: datetime
    ip_addresses: list[str]
    actions: list[str]  # customer.viewed, conversation.viewed, customer.read, timeline.read, export, ...


class ReadsReport(BaseModel):
    actor: ActorRead
    since: datetime
    until: datetime
    entries: int  # audit entries (views, reads, exports) that read customers in the period
    customers: list[CustomerReadsRead]


def _moment(request: web.Request, name: str) -> datetime:
    raw = request.query.get(name)
    if raw is None:
        raise invalid_field(name, "is required (ISO 8601 with a UTC offset, e.g. 2026-12-01T00:00:00+09:00)")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid_field(name, "must be ISO 8601, e.g. 2026-12-01T00:00:00+09:00") from None
    if value.tzinfo is None:
        raise invalid_field(name, "needs a UTC offset (e.g. +09:00 or Z)")
    return value


async def audit_reads_report(request: web.Request) -> web.Response:
    kind, actor_id = audit_reads.parse_actor(request.query.get("actor"))
    since, until = _moment(request, "since"), _moment(request, "until")
    async with services(request).sessions() as session:
        who = await audit_reads.resolve(session, kind, actor_id)
        result = await audit_reads.report(session, who, since=since, until=until)
    return json_answer(ReadsReport(
        actor=ActorRead(kind=who.kind, id=who.id, name=who.name), since=result.since, until=result.until, entries=result.entries,
        customers=[CustomerReadsRead(customer_id=row.customer_id, times=row.times, first_at=row.first_at, last_at=row.last_at,
                                     ip_addresses=sorted(row.ips), actions=sorted(row.actions)) for row in result.customers],
    ))


ENDPOINTS = [
    Endpoint("GET", "/audit/reads", audit_reads_report,
             "Breach scoping (APPI): which customer records a staff account or an API token read or exported in a period, "
             "by customer id (pseudonymous), with how often, when and from which addresses",
             roles=ADMIN, response=ReadsReport,
             query=[
                 {**text_param("actor", description="staff:<staff id> or token:<API token id>", pattern=r"^(staff|token):[1-9][0-9]{0,8}$"),
                  "required": True},
                 {**text_param("since", description="start of the period (included), RFC 3339 with offset", format="date-time"),
                  "required": True},
                 {**text_param("until", description="end of the period (excluded), after `since`, at most 400 days later",
                               format="date-time"), "required": True},
             ],
             errors={404: "no such staff account or API token"}),
]
