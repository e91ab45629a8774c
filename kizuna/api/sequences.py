"""Step sequences (ステップ配信): create one, edit it, read it with its per-step figures, pause and resume.
The rules are campaigns/sequences.py's (the console will call the same functions)."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from kizuna.campaigns import sequences
from kizuna.storage import sequences as store
from kizuna.storage.db import transaction
from kizuna.storage.models import StepSequence
from kizuna.storage.roles import MARKETING

from .http import TOKEN, Endpoint, id_param, json_answer, parse_body, path_id, services


class StepRead(BaseModel):
    index: int
    delay_minutes: int
    delay_from: str
    messages: list[dict]
    coupon_id: int | None
    reached: int  # enrolments that got to this step
    sent: int  # handed to the outbox (sent once each, with its retry key)
    exited: dict[str, int]  # left while waiting for this step, by reason


class SendWindowRead(BaseModel):
    start: str
    end: str
    timezone: str


class SequenceRead(BaseModel):
    id: int
    name: str
    status: str
    trigger: str
    trigger_value: str | None
    exit_on: list[str]
    exit_tag: str | None
    cancel_on: list[str]
    send_window: SendWindowRead | None
    name_fallback: str
    enrolled: int
    active: int
    completed: int
    exited: dict[str, int]
    steps: list[StepRead]
    created_at: datetime
    updated_at: datetime


class SequenceList(BaseModel):
    items: list[SequenceRead]


async def _read(session, sequence: StepSequence) -> SequenceRead:
    figures = await store.figures(session, sequence)
    window = (SendWindowRead(start=sequence.window_start, end=sequence.window_end, timezone=sequence.timezone)
              if sequence.window_start and sequence.window_end else None)
    cancel_on = list(sequence.cancel_on or []) + ([store.ORDER] if sequence.exit_on_order else [])
    return SequenceRead(
        id=sequence.id, name=sequence.name, status=sequence.status, trigger=sequence.trigger, trigger_value=sequence.trigger_value,
        exit_on=sequences.exit_conditions(sequence), exit_tag=sequence.exit_on_tag_removed, cancel_on=cancel_on,
        send_window=window, name_fallback=sequence.name_fallback, enrolled=figures.enrolled, active=figures.active,
        completed=figures.completed, exited=figures.exited,
        steps=[StepRead(index=index, delay_minutes=step["delay_minutes"], delay_from=step["delay_from"], messages=step["messages"],
                        coupon_id=step.get("coupon_id"), reached=counts.reached, sent=counts.sent, exited=counts.exited)
               for index, (step, counts) in enumerate(zip(sequence.steps, figures.steps))],
        created_at=sequence.created_at, updated_at=sequence.updated_at,
    )


async def create_sequence(request: web.Request) -> web.Response:
    body = await parse_body(request, sequences.SequenceCreate)
    async with transaction(services(request).sessions) as session:
        sequence = await sequences.create(session, body, created_by=f"token:{request[TOKEN].name}", now=services(request).clock())
        answer = await _read(session, sequence)
    return json_answer(answer, status=201)


async def list_sequences(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        items = [await _read(session, sequence) for sequence in await store.list_all(session)]
    return json_answer(SequenceList(items=items))


async def get_sequence(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        answer = await _read(session, await store.get(session, path_id(request)))
    return json_answer(answer)


async def update_sequence(request: web.Request) -> web.Response:
    body = await parse_body(request, sequences.SequenceCreate)
    async with transaction(services(request).sessions) as session:
        sequence, _completed = await sequences.update(session, path_id(request), body, now=services(request).clock())
        answer = await _read(session, sequence)
    return json_answer(answer)


async def pause_sequence(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        answer = await _read(session, await sequences.pause(session, path_id(request), now=services(request).clock()))
    return json_answer(answer)


async def resume_sequence(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        answer = await _read(session, await sequences.resume(session, path_id(request), now=services(request).clock()))
    return json_answer(answer)


_ID = [id_param(StepSequence.id)]

ENDPOINTS = [
    Endpoint("POST", "/sequences", create_sequence,
             "Create a step sequence (201): a trigger (registered, first_order, tag_added, friend_source, api_event; "
             "segment_entered: the segment looked at every 10 minutes), exit conditions, cancel_on event types, a send window and "
             "1-20 steps of 1-5 messages ({name} personalised) with an optional coupon. 400 names the invalid field.",
             roles=MARKETING, request=sequences.SequenceCreate, response=SequenceRead, statuses=(201,)),
    Endpoint("GET", "/sequences", list_sequences, "Every step sequence with its figures", roles=MARKETING, response=SequenceList),
    Endpoint("GET", "/sequences/{id}", get_sequence,
             "A step sequence with its figures: enrolled, active, completed, exited by reason; per step reached, sent and exited",
             roles=MARKETING, response=SequenceRead, path_params=_ID),
    Endpoint("PUT", "/sequences/{id}", update_sequence,
             "Replace a sequence's settings and steps (checked as on create; 400 names the invalid field). Enrolled "
             "customers keep their place: who was sent N steps gets the new step N+1 next, at the time already set; who is "
             "past the new last step is completed. A changed trigger applies to new entries only.",
             roles=MARKETING, request=sequences.SequenceCreate, response=SequenceRead, path_params=_ID),
    Endpoint("POST", "/sequences/{id}/pause", pause_sequence,
             "Pause: nothing is enrolled or sent; due steps wait (never dropped) until resumed",
             roles=MARKETING, response=SequenceRead, path_params=_ID),
    Endpoint("POST", "/sequences/{id}/resume", resume_sequence, "Resume a paused sequence: steps that fell due meanwhile go out now",
             roles=MARKETING, response=SequenceRead, path_params=_ID),
]
