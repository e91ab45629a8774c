"""Orders from the shop's EC site and POS (issue 14): one order, or up to 1,000 in a batch.

Idempotent on the shop's `external_id`: an order sent again unchanged changes nothing, a changed
one is updated (its lines replaced). The rules are storage/orders.py's (`upsert`), which the
CSV import (`kizuna import orders`) calls too. A batch is stored whole or not at all; a 400
names the first bad field with its place, `orders[3].items[0].quantity`.

Roles: admin, marketer, and `pos` tokens (the shop's systems).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, RootModel

from kizuna.storage import orders
from kizuna.storage.db import transaction
from kizuna.storage.models import OrderBatchCreate, OrderCreate
from kizuna.storage.roles import Role

from .http import TOKEN, Endpoint, json_answer, parse_one_or_many, services

SENDERS = (Role.ADMIN, Role.MARKETER, Role.POS)


class OrdersIn(RootModel[OrderBatchCreate | OrderCreate]):
    """One order object, or `{"orders": [...]}` with 1 to 1,000 of them. Rules beyond the schema:
    at least one customer reference per order (line_user_id, external_customer_id, email, phone),
    each a value of its kind (an e-mail address, a phone number, a LINE user id `U` + 32 hex
    digits); each external_id once per batch."""


class OrdersResult(BaseModel):
    created: int
    updated: int
    unchanged: int
    customers_created: int
    merge_candidates: int


async def post_orders(request: web.Request) -> web.Response:
    sent = await parse_one_or_many(request, OrderCreate, OrderBatchCreate, "orders")
    source = f"token:{request[TOKEN].name}"
    async with transaction(services(request).sessions) as session:
        result = await orders.upsert(session, sent, now=services(request).clock(), source=source)
    return json_answer(OrdersResult(**vars(result)))


ENDPOINTS = [
    Endpoint("POST", "/orders", post_orders,
             "Send orders: one order, or {\"orders\": [...]} with up to 1,000 (stored all or none); "
             "idempotent on external_id (unchanged: nothing happens; changed: updated, lines replaced)",
             roles=SENDERS, request=OrdersIn, response=OrdersResult),
]
