"""Tags (issue 14 §5): a customer's tags, the tags in use, and a tag for every customer of a
saved segment at once.

One customer's tags go through the console's own service (flows/support.py `SupportDesk`
add_tag / remove_tag: audited as `customer.edited`, a live update to pages showing the
customer). Every staff role may, as in the console's customer panel.

In bulk: `POST /segments/{id}/tags` with `{"tag", "action": "add" | "remove"}`, marketing's
(as segments are). By a saved segment, not by a rule sent along: the audit entry then names
the segment a marketer can open to see who was meant, the console's form sits on that
segment's page, and there is one way to do it. The change is one set-based statement
(storage/tags.py `bulk_change`) over the segment's compiled select (campaigns/segments.py
`audience`), audited once with its counts; no timeline row per customer (see bulk_change).
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from kizuna.campaigns import segments
from kizuna.storage import customers, tags
from kizuna.storage.db import transaction
from kizuna.storage.models import TAG_MAX, Customer, Segment
from kizuna.storage.roles import MARKETING, STAFF_ROLES

from .http import NOT_BLANK, Endpoint, actor, found, id_param, json_answer, parse_body, path_id, services, text_param

TAG_RULES = ("normalised before it is stored or compared: NFKC (full-width ＶＩＰ is VIP), spaces squeezed; "
             f"1 to {TAG_MAX} characters after that, no control characters; at most {tags.MAX_TAGS_PER_CUSTOMER} per customer")


class TagIn(BaseModel):
    model_config = {"extra": "forbid"}

    tag: str = Field(min_length=1, max_length=TAG_MAX, description=f"the tag, {TAG_RULES}", **NOT_BLANK)


class CustomerTags(BaseModel):
    customer_id: int
    tags: list[str] = Field(description="oldest first")


class TagCount(BaseModel):
    tag: str
    customers: int


class TagList(BaseModel):
    items: list[TagCount] = Field(description="most used first")


class BulkTagIn(BaseModel):
    model_config = {"extra": "forbid"}

    tag: str = Field(min_length=1, max_length=TAG_MAX, description=f"the tag, {TAG_RULES}", **NOT_BLANK)
    action: Literal["add", "remove"]


class BulkTagResult(BaseModel):
    segment_id: int
    tag: str = Field(description="the tag as stored (normalised)")
    action: Literal["add", "remove"]
    matched: int = Field(description="customers in the segment now")
    changed: int = Field(description="customers tagged (add) or untagged (remove) by this request; 0 when run again. "
                                     f"Adding leaves out those who had the tag and those with {tags.MAX_TAGS_PER_CUSTOMER} tags")


async def _customer_tags(request: web.Request, customer_id: int) -> CustomerTags:
    async with services(request).sessions() as session:
        await customers.get_existing(session, customer_id)
        return CustomerTags(customer_id=customer_id, tags=await tags.of_customer(session, customer_id))


async def list_customer_tags(request: web.Request) -> web.Response:
    return json_answer(await _customer_tags(request, path_id(request)))


async def add_customer_tag(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    body = await parse_body(request, TagIn)
    added = await services(request).support.add_tag(customer_id, actor(request), body.tag)
    return json_answer(await _customer_tags(request, customer_id), status=201 if added else 200)


async def remove_customer_tag(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    found(await services(request).support.remove_tag(customer_id, actor(request), request.match_info["tag"]), "tag on this customer")
    return web.Response(status=204)


async def list_tags(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        rows = await tags.in_use(session)
    return json_answer(TagList(items=[TagCount(tag=tag, customers=count) for tag, count in rows]))


async def tag_segment(request: web.Request) -> web.Response:
    segment_id = path_id(request)
    body = await parse_body(request, BulkTagIn)
    now = services(request).clock()
    async with transaction(services(request).sessions) as session:
        segment = await segments.get(session, segment_id)
        audience = await segments.audience(session, segment.rule, now=now)
        result = await tags.bulk_change(session, audience, body.tag, body.action, target=f"segment:{segment.id} {segment.name}",
                                        actor=actor(request), now=now)
    return json_answer(BulkTagResult(segment_id=segment_id, tag=result.tag, action=body.action, matched=result.matched,
                                     changed=result.changed))


ENDPOINTS = [
    Endpoint("GET", "/customers/{id}/tags", list_customer_tags, "A customer's tags, oldest first",
             roles=STAFF_ROLES, response=CustomerTags, path_params=[id_param(Customer.id)]),
    Endpoint("POST", "/customers/{id}/tags", add_customer_tag,
             "Tag a customer: 201 when added, 200 when they had the tag already (nothing changes). "
             "Audited; pages showing the customer update. 400 names `tag` when it breaks the tag rules.",
             roles=STAFF_ROLES, request=TagIn, response=CustomerTags, path_params=[id_param(Customer.id)], statuses=(201, 200)),
    Endpoint("DELETE", "/customers/{id}/tags/{tag}", remove_customer_tag,
             "Untag a customer (204); 404 when they do not have the tag (the tag is normalised first). Audited.",
             roles=STAFF_ROLES, path_params=[id_param(Customer.id), text_param("tag", "path", description=TAG_RULES)],
             statuses=(204,)),
    Endpoint("GET", "/tags", list_tags, "The tags in use with how many customers have each, most used first (at most 1,000)",
             roles=STAFF_ROLES, response=TagList),
    Endpoint("POST", "/segments/{id}/tags", tag_segment,
             "Tag (action add) or untag (action remove) every customer of the saved segment now, in one statement; "
             "returns how many it changed (0 when run again). Audited once with the counts (tag.bulk_added / "
             "tag.bulk_removed); no timeline row per customer. 400 names `tag` when it breaks the tag rules.",
             roles=MARKETING, request=BulkTagIn, response=BulkTagResult, path_params=[id_param(Segment.id)]),
]
