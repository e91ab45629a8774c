"""Bot texts: the defaults in code and the operators' edits."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from kizuna.storage import texts
from kizuna.storage.db import transaction
from kizuna.storage.roles import Role

from .http import NOT_BLANK, Endpoint, actor, json_answer, parse_body, services, text_param


class BotTextRead(BaseModel):
    key: str
    locale: str
    text: str
    default: str
    edited: bool


class BotTextList(BaseModel):
    items: list[BotTextRead]


class BotTextUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=texts.MAX_TEXT, json_schema_extra=NOT_BLANK)


async def list_texts(request: web.Request) -> web.Response:
    async with services(request).sessions() as session:
        items = await texts.all_texts(session)
    return json_answer(BotTextList(items=[BotTextRead(**item) for item in items]))


async def put_text(request: web.Request) -> web.Response:
    key, locale = request.match_info["key"], request.match_info["locale"]
    texts.check_exists(key, locale)  # before the body: there is nothing to edit
    update = await parse_body(request, BotTextUpdate)
    async with transaction(services(request).sessions) as session:
        item = await texts.set_text(session, key, locale, update.text, actor=actor(request))
    return json_answer(BotTextRead(**item))


ENDPOINTS = [
    Endpoint("GET", "/texts", list_texts, "Bot texts (defaults and edits) in every locale", roles=(Role.ADMIN,),
             response=BotTextList),
    Endpoint("PUT", "/texts/{key}/{locale}", put_text, "Edit one bot text (404 for a key or locale there is no text for)",
             roles=(Role.ADMIN,), request=BotTextUpdate, response=BotTextRead,
             path_params=[text_param("key", "path"), text_param("locale", "path", enum=list(texts.LOCALES))]),
]
