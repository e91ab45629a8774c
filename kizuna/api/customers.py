"""Customers and their timelines; customer records from the shop's EC site and POS."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, RootModel

from kizuna.storage import audit, audit_reads, customer_records, customers, interactions
from kizuna.storage.db import transaction
from kizuna.storage.models import (
    Customer, CustomerRead, CustomerRecordBatchCreate, CustomerRecordCreate, Interaction, InteractionRead,
)
from kizuna.storage.roles import STAFF_ROLES, Role

from .http import (
    LIMIT, TOKEN, Endpoint, actor, cursor_param, id_param, int_query, json_answer, next_cursor, parse_one_or_many, path_id, read_as,
    services, text_param,
)

# The shop's systems send customer records as they send orders.
SENDERS = (Role.ADMIN, Role.MARKETER, Role.POS)


class CustomerPage(BaseModel):
    items: list[CustomerRead]
    next_after: int | None


class InteractionPage(BaseModel):
    items: list[InteractionRead]
    next_before: int | None


async def list_customers(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    after = int_query(request, "after")
    async with transaction(services(request).sessions) as session:
        rows = await customers.list_page(session, line_user_id=request.query.get("line_user_id"), limit=limit, after_id=after)
        # Every read of customer data is on the record (breach scoping: storage/audit_reads.py).
        await audit_reads.read(session, actor(request), audit.Action.CUSTOMERS_LISTED, [row.id for row in rows],
                               at=services(request).clock())
    return json_answer(CustomerPage(items=[read_as(CustomerRead, row) for row in rows], next_after=next_cursor(rows, limit)))


async def get_customer(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        customer = await customers.get_existing(session, path_id(request))
        await audit_reads.read(session, actor(request), audit.Action.CUSTOMER_READ, [customer.id], target=f"customer:{customer.id}",
                               at=services(request).clock())
    return json_answer(read_as(CustomerRead, customer))


async def list_interactions(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    limit = int_query(request, "limit")
    async with transaction(services(request).sessions) as session:
        await customers.get_existing(session, customer_id)
        rows = await interactions.latest(session, customer_id, limit=limit, before_id=int_query(request, "before"))
        await audit_reads.read(session, actor(request), audit.Action.TIMELINE_READ, [customer_id], target=f"customer:{customer_id}",
                               at=services(request).clock())
    return json_answer(InteractionPage(items=[read_as(InteractionRead, row) for row in rows], next_before=next_cursor(rows, limit)))


class CustomerRecordsIn(RootModel[CustomerRecordBatchCreate | CustomerRecordCreate]):
    """One customer record, or `{"customers": [...]}` with 1 to 1,000. Rules beyond the schema: at
    least one reference (external_customer_id, line_user_id, email, phone), each a value of its
    kind; a prefecture of Japan (any common spelling); each external_customer_id once per batch."""


class CustomerRecordsResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    merge_candidates: int


async def upsert_customers(request: web.Request) -> web.Response:
    records = await parse_one_or_many(request, CustomerRecordCreate, CustomerRecordBatchCreate, "customers")
    async with transaction(services(request).sessions) as session:
        result = await customer_records.upsert(session, records, now=services(request).clock(),
                                               source=f"token:{request[TOKEN].name}")
    return json_answer(CustomerRecordsResult(**vars(result)))


ENDPOINTS = [
    Endpoint("POST", "/customers", upsert_customers,
             "Send customer records from the shop's systems: one, or {\"customers\": [...]} with up to 1,000 (all or none); "
             "matched by their references; a LINE member's own details are only filled in, never replaced",
             roles=SENDERS, request=CustomerRecordsIn, response=CustomerRecordsResult),
    Endpoint("GET", "/customers", list_customers, "List customers (oldest first, cursor paging with `after`)",
             roles=STAFF_ROLES, response=CustomerPage,
             query=[text_param("line_user_id"), cursor_param("after", Customer.id), LIMIT]),
    Endpoint("GET", "/customers/{id}", get_customer, "One customer", roles=STAFF_ROLES, response=CustomerRead,
             path_params=[id_param(Customer.id)]),
    Endpoint("GET", "/customers/{id}/interactions", list_interactions,
             "A customer's timeline, newest first (cursor paging with `before`)",
             roles=STAFF_ROLES, response=InteractionPage,
             path_params=[id_param(Customer.id)], query=[cursor_param("before", Interaction.id), LIMIT]),
]
