"""Cart events from the shop's EC site (issue 14): one event, or up to 1,000 in a batch, each a
row on its customer's timeline (`cart.added`, `cart.removed`, `cart.checkout_started`,
`cart.abandoned`). The customer is found as an order's is (storage/matching.py).

Idempotent on the shop's `external_id`: an event sent again changes nothing. The rules are
storage/cart_events.py's (`store`). A batch is stored whole or not at all; a 400 names the first
bad field with its place, `events[3].kind`.

Roles: admin, marketer, and `pos` tokens (the shop's systems), as for orders.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, RootModel

from kizuna.storage import cart_events
from kizuna.storage.db import transaction
from kizuna.storage.models import CartEventBatchCreate, CartEventCreate

from .http import TOKEN, Endpoint, json_answer, parse_one_or_many, services
from .orders import SENDERS


class CartEventsIn(RootModel[CartEventBatchCreate | CartEventCreate]):
    """One cart event object, or `{"events": [...]}` with 1 to 1,000 of them. Rules beyond the
    schema: at least one customer reference per event (line_user_id, external_customer_id, email,
    phone), each a value of its kind; `sku` for `added` and `removed`; each external_id once per
    batch."""


class CartEventsResult(BaseModel):
    created: int
    unchanged: int
    customers_created: int
    merge_candidates: int


async def post_cart_events(request: web.Request) -> web.Response:
    sent = await parse_one_or_many(request, CartEventCreate, CartEventBatchCreate, "events")
    source = f"token:{request[TOKEN].name}"
    async with transaction(services(request).sessions) as session:
        result = await cart_events.store(session, sent, now=services(request).clock(), source=source)
    return json_answer(CartEventsResult(**vars(result)))


ENDPOINTS = [
    Endpoint("POST", "/cart-events", post_cart_events,
             "Send cart events (added, removed, checkout_started, abandoned): one event, or {\"events\": [...]} with up "
             "to 1,000 (stored all or none), each on its customer's timeline as cart.<kind>; idempotent on external_id "
             "(an event sent again changes nothing)",
             roles=SENDERS, request=CartEventsIn, response=CartEventsResult),
]
