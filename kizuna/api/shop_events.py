"""Events from the shop's systems (`POST /api/v1/events`): cart_abandoned, order_shipped, … Each
starts the step sequences whose trigger is that event type (after their first step's delay) and
ends the customer's enrolments in sequences that list the type in `cancel_on`. Idempotent with
an optional `event_id`. (api/events.py is another thing: LINE's inbound webhook events.)

The customer is found by their references as an order's is (storage/matching.py); a reference
nobody holds makes a customer known only by it (who, not being on LINE, is enrolled in nothing).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from kizuna.storage import automations, matching
from kizuna.storage import sequences as store
from kizuna.storage.db import transaction
from kizuna.storage.models import API_EVENT_ID_MAX, API_EVENT_TYPE_MAX, AutomationTrigger, CustomerReferences

from .http import TOKEN, Endpoint, json_answer, parse_body, services
from .orders import SENDERS


class EventCustomer(CustomerReferences):
    model_config = {"extra": "forbid"}


class ShopEventIn(BaseModel):
    model_config = {"extra": "forbid"}

    customer: EventCustomer
    type: str = Field(min_length=1, max_length=API_EVENT_TYPE_MAX, pattern=r"^[A-Za-z0-9_.:-]+$",
                      examples=["cart_abandoned", "order_shipped"])
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = Field(default=None, min_length=1, max_length=API_EVENT_ID_MAX, pattern=r"\S",
                                 description="the shop's idempotency key: an event sent again changes nothing")


class ShopEventResult(BaseModel):
    id: int
    event_id: str | None
    type: str
    customer_id: int
    created: bool  # False: received before with this event_id; nothing changed
    enrolled: int  # sequences the customer entered
    cancelled: int  # enrolments it ended (cancel_on)


async def post_event(request: web.Request) -> web.Response:
    body = await parse_body(request, ShopEventIn)
    now = services(request).clock()
    source = f"token:{request[TOKEN].name}"
    async with transaction(services(request).sessions) as session:
        found = await matching.resolve(
            session, [matching.Record("event", body.customer.refs(), body.customer.line_user_id, f"event:{body.event_id or body.type}")],
            now=now, source=f"events:{source}",
        )
        outcome = await store.receive_event(session, customer_id=found.customer_of["event"], type=body.type, data=body.data,
                                            event_id=body.event_id, now=now)
        if outcome.created:  # automation rules on api_event, in the event's transaction
            await automations.record(session, AutomationTrigger.API_EVENT, [outcome.event.customer_id], value=body.type,
                                     ref_id=outcome.event.id, data=body.data, now=now)
    event = outcome.event
    return json_answer(ShopEventResult(id=event.id, event_id=event.event_id, type=event.type, customer_id=event.customer_id,
                                       created=outcome.created, enrolled=outcome.enrolled, cancelled=outcome.cancelled),
                       status=201 if outcome.created else 200)


ENDPOINTS = [
    Endpoint("POST", "/events", post_event,
             "Send an event from the shop's systems ({customer: {line_user_id|external_customer_id|email|phone}, type, data, "
             "event_id}): starts the step sequences triggered by its type, ends enrolments of sequences that list it in "
             "cancel_on. 201 stored; 200 an event_id received before (nothing changed).",
             roles=SENDERS, request=ShopEventIn, response=ShopEventResult, statuses=(201, 200)),
]
