"""名寄せ (issue 14): the merge candidates that orders, customer records and registrations found
(two customers one record matched), and an admin's decision on each: merge (the customer on
LINE stays; timeline, orders, identities, tags, coupons and conversations move), dismiss (not
one person), or undo a merge within 7 days. The rules are storage/merges.py's; every decision is
audited. Admins only.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel

from kizuna.storage import identities, merges
from kizuna.storage.db import transaction
from kizuna.storage.models import CustomerMerge, MergeCandidate, MergeStatus
from kizuna.storage.roles import Role

from .http import (
    LIMIT, Endpoint, actor, choice_query, cursor_param, id_param, int_query, json_answer, next_cursor, path_id, read_as,
    services, text_param,
)

ADMIN = (Role.ADMIN,)


class MergeCandidateRead(BaseModel):
    id: int
    customer_id: int
    other_customer_id: int
    kind: str  # what matched the other customer: line_user_id, external_customer_id, email, phone
    value: str
    source: str
    status: str
    created_at: datetime
    decided_at: datetime | None


class MergeCandidatePage(BaseModel):
    items: list[MergeCandidateRead]
    next_after: int | None


class CustomerMergeRead(BaseModel):
    id: int
    customer_id: int  # the customer kept
    merged_customer_id: int
    candidate_id: int | None
    moved: dict
    filled: dict
    merged_at: datetime
    merged_by: str
    undone_at: datetime | None
    undone_by: str | None


async def list_merge_candidates(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    async with services(request).sessions() as session:
        rows = await identities.merge_candidates(session, status=choice_query(request, "status") or MergeStatus.PENDING,
                                                 limit=limit, after_id=int_query(request, "after"))
    return json_answer(MergeCandidatePage(items=[read_as(MergeCandidateRead, row) for row in rows], next_after=next_cursor(rows, limit)))


async def merge_candidate(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        record = await merges.merge(session, path_id(request), actor=actor(request), now=services(request).clock())
    return json_answer(read_as(CustomerMergeRead, record))


async def dismiss_candidate(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        candidate = await merges.dismiss(session, path_id(request), actor=actor(request), now=services(request).clock())
    return json_answer(read_as(MergeCandidateRead, candidate))


async def undo_merge(request: web.Request) -> web.Response:
    async with transaction(services(request).sessions) as session:
        record = await merges.undo(session, path_id(request), actor=actor(request), now=services(request).clock())
    return json_answer(read_as(CustomerMergeRead, record))


ENDPOINTS = [
    Endpoint("GET", "/merge-candidates", list_merge_candidates,
             "Pairs of customers that one record matched (名寄せ), oldest first (cursor paging with `after`); pending by default",
             roles=ADMIN, response=MergeCandidatePage,
             query=[text_param("status", enum=[status.value for status in MergeStatus]), cursor_param("after", MergeCandidate.id), LIMIT]),
    Endpoint("POST", "/merge-candidates/{id}/merge", merge_candidate,
             "Merge the pair: the customer on LINE (else the older) stays and takes the other's timeline, orders, identities, "
             "tags, coupons and conversations; undoable for 7 days",
             roles=ADMIN, response=CustomerMergeRead, path_params=[id_param(MergeCandidate.id)],
             errors={409: "not_pending (decided already), both_on_line (two LINE accounts), already_merged"}),
    Endpoint("POST", "/merge-candidates/{id}/dismiss", dismiss_candidate, "Not one person: the pair leaves the list",
             roles=ADMIN, response=MergeCandidateRead, path_params=[id_param(MergeCandidate.id)],
             errors={409: "not_pending: decided already"}),
    Endpoint("POST", "/customer-merges/{id}/undo", undo_merge,
             "Undo a merge (within 7 days): what moved goes back; what arrived since stays with the customer kept",
             roles=ADMIN, response=CustomerMergeRead, path_params=[id_param(CustomerMerge.id)],
             errors={409: "already_undone, undo_expired (older than 7 days)"}),
]
