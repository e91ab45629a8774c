"""Privacy (issue 16 part 2): the privacy notice versions and one customer's consent ledger.

The rules are storage/consents.py's (the console's 「プライバシー」 page calls the same
functions): a version is published, never edited; the newest is the current one; publishing
sets the address the bot's consent question links; members who accepted an older version are
asked to accept the new one on their member info card.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from kizuna.storage import consents, customers
from kizuna.storage.db import transaction
from kizuna.storage.models import (
    PRIVACY_PURPOSE_MAX, PRIVACY_TEXT_MAX, PRIVACY_URL_MAX, PRIVACY_VERSION_MAX, ConsentAction, ConsentChannel, ConsentPurpose,
    Customer,
)
from kizuna.storage.roles import STAFF_ROLES, Role

from .http import NOT_BLANK, Endpoint, actor, id_param, json_answer, parse_body, path_id, services


class Purposes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    membership: str = Field(min_length=1, max_length=PRIVACY_PURPOSE_MAX, json_schema_extra=NOT_BLANK,
                            description="the membership itself: registration data, member coupons")
    marketing: str = Field(min_length=1, max_length=PRIVACY_PURPOSE_MAX, json_schema_extra=NOT_BLANK,
                           description="marketing messages (お知らせ)")
    analytics: str = Field(min_length=1, max_length=PRIVACY_PURPOSE_MAX, json_schema_extra=NOT_BLANK,
                           description="purchase and behaviour analysis")


class NoticeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=PRIVACY_VERSION_MAX, json_schema_extra=NOT_BLANK,
                         description="a label, unique (e.g. 2027-04); one line")
    url: str = Field(min_length=1, max_length=PRIVACY_URL_MAX, description="where the notice is published: an https:// address")
    text: str = Field(min_length=1, max_length=PRIVACY_TEXT_MAX, json_schema_extra=NOT_BLANK, description="the notice's text")
    purposes: Purposes = Field(description="what each purpose of use is, in this version")


class NoticeRead(BaseModel):
    id: int
    version: str
    url: str
    text: str
    purposes: dict[str, str]
    published_at: datetime
    published_by: str | None
    current: bool = Field(description="the newest published version: the one customers accept now")
    members: int = Field(description="registered customers whose latest accepted version this is")


class NoticeList(BaseModel):
    items: list[NoticeRead] = Field(description="newest first")
    members_on_older: int = Field(description="members who accepted an older version than the current one (asked again)")


class ConsentRow(BaseModel):
    id: int
    purpose: ConsentPurpose
    action: ConsentAction
    notice_id: int | None
    notice_version: str | None
    channel: ConsentChannel
    actor: str | None = Field(description="customer (in the chat), a staff e-mail, an API token's name, or a migration")
    at: datetime


class ConsentHistory(BaseModel):
    customer_id: int
    privacy_notice_id: int | None = Field(description="the version the customer last accepted")
    items: list[ConsentRow] = Field(description=f"newest first, at most {consents.HISTORY_LIMIT}")


async def _notice_list(session) -> NoticeList:
    counts = await consents.counts_per_notice(session)
    current = counts[0].notice.id if counts else None
    items = [NoticeRead(id=c.notice.id, version=c.notice.version, url=c.notice.url, text=c.notice.text, purposes=c.notice.purposes,
                        published_at=c.notice.published_at, published_by=c.notice.published_by, current=c.notice.id == current,
                        members=c.members) for c in counts]
    return NoticeList(items=items, members_on_older=await consents.members_on_older_notice(session))


async def list_notices(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        return json_answer(await _notice_list(session))


async def publish_notice(request: web.Request) -> web.Response:
    body = await parse_body(request, NoticeIn)
    async with transaction(services(request).sessions) as session:
        notice = await consents.publish_notice(session, version=body.version, url=body.url, text=body.text,
                                               purposes=body.purposes.model_dump(), now=services(request).clock(), actor=actor(request))
        notice_id = notice.id
    async with services(request).sessions() as session:
        listed = await _notice_list(session)
    return json_answer(next(item for item in listed.items if item.id == notice_id), status=201)


async def customer_consents(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    async with services(request).sessions() as session:
        customer = await customers.get_existing(session, customer_id)
        rows = await consents.history(session, customer_id)
    return json_answer(ConsentHistory(customer_id=customer_id, privacy_notice_id=customer.privacy_notice_id,
                                      items=[ConsentRow(**vars(row)) for row in rows]))


ENDPOINTS = [
    Endpoint("GET", "/privacy-notices", list_notices,
             "The privacy notice versions, newest first (the first is current), with how many members accepted each",
             roles=STAFF_ROLES, response=NoticeList),
    Endpoint("POST", "/privacy-notices", publish_notice,
             "Publish a new privacy notice version (201): it is current at once, the bot's consent question links its URL, "
             "and members who accepted an older version are asked to accept it on their member info card. Versions are never "
             "edited. 400 names the field at fault (url must be https://); audited.",
             roles=(Role.ADMIN,), request=NoticeIn, response=NoticeRead, statuses=(201,),
             errors={409: "version_taken: a version with this label is published already"}),
    Endpoint("GET", "/customers/{id}/consents", customer_consents,
             "One customer's consent ledger, newest first: every grant and withdrawal of each purpose (membership, marketing, "
             "analytics) with the notice version, the channel and who acted. Append-only; rows are kept 3 years.",
             roles=STAFF_ROLES, response=ConsentHistory, path_params=[id_param(Customer.id)]),
]
