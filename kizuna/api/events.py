"""Inbound webhook events: the parked ones, and retrying them."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from kizuna.storage import events
from kizuna.storage.models import EventStatus, InboundEvent
from kizuna.storage.roles import Role

from .http import (
    LIMIT, Endpoint, choice_query, cursor_param, id_param, int_query, json_answer, next_cursor, path_id, read_as, services,
    text_param,
)


class InboundEventRead(BaseModel):
    id: int
    webhook_event_id: str
    event_type: str
    source_key: str
    status: str
    attempts: int
    last_error: str | None
    payload: dict


class InboundEventPage(BaseModel):
    items: list[InboundEventRead]
    next_before: int | None


async def list_events(request: web.Request) -> web.Response:
    status = choice_query(request, "status")
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await events.list_events(session, status=EventStatus(status) if status else None, limit=limit,
                                        before_id=int_query(request, "before"))
    return json_answer(InboundEventPage(items=[read_as(InboundEventRead, row) for row in rows], next_before=next_cursor(rows, limit)))


async def retry_event(request: web.Request) -> web.Response:
    event_id = path_id(request)
    event = await events.retry_parked(services(request).sessions, services(request).queue, event_id)
    return json_answer(read_as(InboundEventRead, event))


ENDPOINTS = [
    Endpoint("GET", "/events", list_events,
             "Inbound webhook events, newest first; `status=parked` lists the ones whose handler kept failing",
             roles=(Role.ADMIN,), response=InboundEventPage,
             query=[text_param("status", enum=[status.value for status in EventStatus]), cursor_param("before", InboundEvent.id),
                    LIMIT]),
    Endpoint("POST", "/events/{id}/retry", retry_event, "Process a parked event again", roles=(Role.ADMIN,),
             response=InboundEventRead, path_params=[id_param(InboundEvent.id)],
             errors={409: "not_parked: only a parked event can be retried; "
                          "invalid_event: it was parked on arrival (invalid as LINE sent it)"}),
]
