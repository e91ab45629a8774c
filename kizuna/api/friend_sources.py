"""Friend-add sources (流入経路, issue 14 §5): list them with their counts, create one.

Thin: the rules (first source wins, what counts as a follow and a block) are
storage/friend_sources.py's; the public link `/f/{code}` and the LINE Login callback are
bot/friend_links.py's. Roles: admin and marketer.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from kizuna.storage import friend_sources
from kizuna.storage.db import transaction
from kizuna.storage.models import FRIEND_SOURCE_NAME_MAX, TAG_MAX, FriendSource
from kizuna.storage.roles import MARKETING

from .http import NOT_BLANK, Endpoint, actor, bool_param, bool_query, json_answer, optional, parse_body, services


# What a tag may not hold, as far as a pattern can say it (storage/tags.normalize refuses all of
# Unicode category C): C0/C1 controls, soft hyphen, the zero-width and direction marks, BOM,
# private use.
TAG_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f\\u00ad\\u0600-\\u0605\\u061c\\u06dd\\u070f\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u206f\\ufeff\\ufff9-\\ufffb\\ue000-\\uf8ff]*$"


class FriendSourceIn(BaseModel):
    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=FRIEND_SOURCE_NAME_MAX, description="what the source is (「店頭POP」, 「Instagram」)",
                      **NOT_BLANK)
    tag: str | None = optional(
        max_length=TAG_MAX, pattern=TAG_PATTERN,
        description=f"a tag added to every friend who comes through the source: 1 to {TAG_MAX} characters after NFKC, "
                    "no control or format characters (Unicode category C); blank means none")


class FriendSourceRead(BaseModel):
    id: int
    code: str = Field(description="the random slug of the source's link")
    name: str
    tag: str | None
    url: str = Field(description="the link to print or share (also as a QR code): it goes through LINE Login with the add-friend option")
    archived: bool
    created_at: datetime
    clicks: int = Field(description="opens of the link")
    follows: int = Field(description="friends the source brought (first source wins)")
    blocks: int = Field(description="of them, the ones who block the account now")
    friends: int = Field(description="follows - blocks")


class FriendSourceList(BaseModel):
    items: list[FriendSourceRead]


def _read(request: web.Request, source: FriendSource, follows: int = 0, blocks: int = 0) -> FriendSourceRead:
    return FriendSourceRead(
        id=source.id, code=source.code, name=source.name, tag=source.tag, url=f"{services(request).public_url}/f/{source.code}",
        archived=source.archived, created_at=source.created_at, clicks=source.clicks, follows=follows, blocks=blocks,
        friends=follows - blocks,
    )


async def list_friend_sources(request: web.Request) -> web.Response:
    include_archived = bool_query(request, "archived")
    async with services(request).sessions() as session:
        rows = await friend_sources.stats(session, include_archived=bool(include_archived))
    return json_answer(FriendSourceList(items=[_read(request, row.source, row.follows, row.blocks) for row in rows]))


async def create_friend_source(request: web.Request) -> web.Response:
    body = await parse_body(request, FriendSourceIn)
    async with transaction(services(request).sessions) as session:
        source = await friend_sources.create(session, body.name, body.tag, actor=actor(request))
    return json_answer(_read(request, source), status=201)


ENDPOINTS = [
    Endpoint("GET", "/friend-sources", list_friend_sources,
             "Friend-add sources (流入経路), newest first, with clicks, follows, blocks and friends now",
             roles=MARKETING, response=FriendSourceList, query=[bool_param("archived", default=False)]),
    Endpoint("POST", "/friend-sources", create_friend_source,
             "Create a source (201): a name and an optional tag; the answer has its link (`url`) to print or share",
             roles=MARKETING, request=FriendSourceIn, response=FriendSourceRead, statuses=(201,)),
]
