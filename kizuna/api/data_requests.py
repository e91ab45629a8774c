"""Data-subject requests (issue 16 parts 3 and 5): a customer's export, correction, stop and
resume, erase; the request ledger; the third-party provision records. Admin only: each of these
reads or changes everything about a person. The rules are in flows/data_rights.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from kizuna.flows import data_rights
from kizuna.storage import data_requests
from kizuna.storage.models import (
    PROVISION_TEXT_MAX, Customer, DataRequest, DataRequestKind, DataRequestStatus, ProvisionRecord, RequestChannel,
)
from kizuna.storage.roles import Role

from .http import (
    LIMIT, Endpoint, actor, column_max, int_param, choice_query, cursor_param, id_param, int_query, json_answer, next_cursor, parse_body, path_id,
    read_as, services, text_param,
)

ADMIN = (Role.ADMIN,)


class DataRequestRead(BaseModel):
    id: int
    kind: DataRequestKind
    customer_id: int
    status: DataRequestStatus
    requested_at: datetime
    deadline_at: datetime = Field(description="requested_at + 14 days: APPI asks for an answer without delay; two weeks is common practice")
    completed_at: datetime | None
    overdue: bool = Field(description="still open after its deadline")
    outcome: str | None
    actor: str
    channel: RequestChannel


class DataRequestPage(BaseModel):
    items: list[DataRequestRead]
    next_before: int | None


class ProvisionRead(BaseModel):
    id: int
    at: datetime
    actor: str
    scope: str
    customer_ids: list[int]
    customer_count: int
    format: str
    recipient: str
    purpose: str
    data_request_id: int | None


class ProvisionPage(BaseModel):
    items: list[ProvisionRead]
    next_before: int | None


class RequestIn(BaseModel):
    """How the customer asked (default `api`)."""

    model_config = {"extra": "forbid"}

    channel: RequestChannel = RequestChannel.API


class Changes(BaseModel):
    """Registered details to correct (at least one), read as the registration reads the customer's
    own answers: a name, a birthday (e.g. 1990-01-31), a gender (female, male, other, unanswered), a
    prefecture of Japan, a phone number, an e-mail; null or "" clears one. A value that does not read
    as its kind is refused (400 naming it) and nothing is changed."""

    model_config = {"extra": "forbid", "json_schema_extra": {"minProperties": 1}}

    full_name: str | None = Field(default=None, max_length=200)
    birthday: str | None = Field(default=None, max_length=40)
    gender: str | None = Field(default=None, max_length=40)
    prefecture: str | None = Field(default=None, max_length=40)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=254)


class CorrectionIn(RequestIn):
    changes: Changes


class CustomerExport(BaseModel):
    """The customer's whole record, one section per table (customer, identities, timeline, orders, ...)."""

    model_config = {"extra": "allow"}

    format_version: int
    exported_at: datetime
    customer: dict[str, Any]


def _read(row: DataRequest, now: datetime) -> DataRequestRead:
    return DataRequestRead(**{name: getattr(row, name) for name in DataRequestRead.model_fields if name != "overdue"},
                           overdue=data_requests.is_overdue(row, now))


async def export_customer(request: web.Request) -> web.StreamResponse:
    format = request.query.get("format", "json")
    choice_query(request, "format")
    exported = await data_rights.export(
        services(request).sessions, path_id(request), format=format, actor=actor(request), channel=RequestChannel.API,
        now=services(request).clock(), recipient=request.query.get("recipient"), purpose=request.query.get("purpose"),
    )
    return web.Response(body=exported.body, content_type=exported.content_type, headers={
        "Content-Disposition": f'attachment; filename="{exported.filename}"', "X-Data-Request-Id": str(exported.request.id)})


async def erase_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, RequestIn)
    row = await data_rights.erase(services(request).sessions, path_id(request), actor=actor(request), channel=body.channel,
                                  now=services(request).clock())
    return json_answer(_read(row, services(request).clock()))


async def stop_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, RequestIn)
    row = await data_rights.stop(services(request).sessions, path_id(request), actor=actor(request), channel=body.channel,
                                 now=services(request).clock())
    return json_answer(_read(row, services(request).clock()))


async def resume_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, RequestIn)
    row = await data_rights.resume(services(request).sessions, path_id(request), actor=actor(request), channel=body.channel,
                                   now=services(request).clock())
    return json_answer(_read(row, services(request).clock()))


async def correct_customer(request: web.Request) -> web.Response:
    body = await parse_body(request, CorrectionIn)
    row = await data_rights.correct(services(request).sessions, path_id(request), body.changes.model_dump(exclude_unset=True),
                                    actor=actor(request),
                                    channel=body.channel, now=services(request).clock())
    return json_answer(_read(row, services(request).clock()))


async def list_data_requests(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await data_requests.page(session, limit=limit, before_id=int_query(request, "before"),
                                        customer_id=int_query(request, "customer_id"), kind=choice_query(request, "kind"),
                                        status=choice_query(request, "status"))
    now = services(request).clock()
    return json_answer(DataRequestPage(items=[_read(row, now) for row in rows], next_before=next_cursor(rows, limit)))


async def get_data_request(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        row = await data_requests.get(session, path_id(request))
    return json_answer(_read(row, services(request).clock()))


async def list_provisions(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await data_requests.provisions(session, limit=limit, before_id=int_query(request, "before"))
    return json_answer(ProvisionPage(items=[read_as(ProvisionRead, row) for row in rows], next_before=next_cursor(rows, limit)))


_CUSTOMER = [id_param(Customer.id)]
_CONFLICTS = {409: "the customer was erased already (already_erased, erased), was merged into another (merged), "
                   "or is already stopped / not stopped (already_stopped, not_stopped)"}
# Free text that is stored and shown: no control characters (C0, DEL, C1), as the service checks.
_TEXT = {"maxLength": PROVISION_TEXT_MAX, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}

ENDPOINTS = [
    Endpoint("GET", "/customers/{id}/export", export_customer,
             "A customer's whole record (profile, identities, timeline, orders, coupons, conversations, campaigns, sequences, "
             "flow state, consent fields ...): JSON, or with format=csv a zip of one CSV per section (UTF-8 with BOM). "
             "Recorded in the request ledger (X-Data-Request-Id), as a provision record (recipient, purpose: default the "
             "customer, answering their disclosure request) and in the audit log.",
             roles=ADMIN, response=(CustomerExport, "application/zip"), path_params=_CUSTOMER,
             query=[text_param("format", enum=list(data_rights.EXPORT_FORMATS)), text_param("recipient", **_TEXT),
                    text_param("purpose", **_TEXT)]),
    Endpoint("POST", "/customers/{id}/erase", erase_customer,
             "Erase the customer: anonymised everywhere (personal fields, identities, timeline texts, conversation bodies, "
             "sent messages, raw webhook payloads, flow state, media); aggregates that name nobody stay. Synchronous: "
             "200 with the ledger row, status done. Their LINE user id no longer links to the old data.",
             roles=ADMIN, request=RequestIn, response=DataRequestRead, path_params=_CUSTOMER, errors=_CONFLICTS),
    Endpoint("POST", "/customers/{id}/stop", stop_customer,
             "Stop using the customer's data: no campaign, sequence step or trigger reaches them until resumed",
             roles=ADMIN, request=RequestIn, response=DataRequestRead, path_params=_CUSTOMER, errors=_CONFLICTS),
    Endpoint("POST", "/customers/{id}/resume", resume_customer, "Lift a stop: later campaigns and triggers reach them again",
             roles=ADMIN, request=RequestIn, response=DataRequestRead, path_params=_CUSTOMER, errors=_CONFLICTS),
    Endpoint("POST", "/customers/{id}/correct", correct_customer,
             "Correct registered details on the customer's request (recorded in the ledger; the audit log names the fields)",
             roles=ADMIN, request=CorrectionIn, response=DataRequestRead, path_params=_CUSTOMER, errors=_CONFLICTS),
    Endpoint("GET", "/data-requests", list_data_requests, "The request ledger, newest first (cursor paging with `before`)",
             roles=ADMIN, response=DataRequestPage,
             query=[cursor_param("before", DataRequest.id), int_param("customer_id", minimum=1, maximum=column_max(Customer.id), description="only this customer's requests"),
                    text_param("kind", enum=[k.value for k in DataRequestKind]),
                    text_param("status", enum=[s.value for s in DataRequestStatus]), LIMIT]),
    Endpoint("GET", "/data-requests/{id}", get_data_request, "One request of the ledger", roles=ADMIN,
             response=DataRequestRead, path_params=[id_param(DataRequest.id)]),
    Endpoint("GET", "/provision-records", list_provisions,
             "Third-party provision records: every export of customer data (who, which records, to whom, why, when), newest first",
             roles=ADMIN, response=ProvisionPage, query=[cursor_param("before", ProvisionRecord.id), LIMIT]),
]
