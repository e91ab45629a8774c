"""Canned responses: replies staff pick instead of typing (Chatwoot's word), kept by admins.

`fill` puts the customer's name where the text says `{name}`, by plain replacement (never
str.format: the text is an operator's, the name a customer's, and neither may reach
anything else). A customer without a usable name gets a polite word instead, and
「{name}様」 then reads 「お客様」, not 「お客様様」.
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, texts
from .errors import Conflict, Invalid, NotFound
from .models import CANNED_SHORTCUT_MAX, CANNED_TITLE_MAX, CannedResponse, Customer
from .types import utcnow

NAME = "{name}"
# Honorifics written after {name}: with the fallback they are already part of it.
HONORIFICS = ("様", "さま", "さん", " 様", " さん")
FALLBACK = {"ja": "お客様", "en": "there"}
MAX_CANNED = 500


def check(shortcut: str, title: str, text: str) -> tuple[str, str, str]:
    """The cleaned fields; Invalid naming the first one at fault."""
    shortcut = unicodedata.normalize("NFKC", shortcut or "").strip().lstrip("/")
    title, text = (title or "").strip(), (text or "").strip()
    if not shortcut:
        raise Invalid("shortcut", "write a shortcut")
    if len(shortcut) > CANNED_SHORTCUT_MAX or any(char.isspace() or unicodedata.category(char).startswith("C") for char in shortcut):
        raise Invalid("shortcut", f"a shortcut is one word of at most {CANNED_SHORTCUT_MAX} characters")
    if not title or len(title) > CANNED_TITLE_MAX:
        raise Invalid("title", f"a title has 1 to {CANNED_TITLE_MAX} characters")
    if not text or texts.utf16_length(text) > texts.MAX_TEXT:
        raise Invalid("text", f"a text has 1 to {texts.MAX_TEXT} characters")
    return shortcut, title, text


def customer_name(customer: Customer) -> str | None:
    """The name to address the customer by: the registered full name, else the LINE name."""
    for name in (customer.full_name if customer.registered else None, customer.display_name):
        name = " ".join((name or "").split())
        if name:
            return name
    return None


def fill(text: str, customer: Customer) -> str:
    name = customer_name(customer)
    if name is not None:
        return text.replace(NAME, name)
    fallback = FALLBACK.get(texts.locale_for(customer.language), FALLBACK["ja"])
    for honorific in HONORIFICS:
        text = text.replace(NAME + honorific, fallback)
    return text.replace(NAME, fallback)


async def list_all(session: AsyncSession) -> list[CannedResponse]:
    return list((await session.execute(sa.select(CannedResponse).order_by(CannedResponse.shortcut))).scalars())


async def get(session: AsyncSession, canned_id: int) -> CannedResponse:
    canned = await session.get(CannedResponse, canned_id)
    if canned is None:
        raise NotFound("no such canned response")
    return canned


async def _taken(session: AsyncSession, shortcut: str, but: int | None = None) -> bool:
    statement = sa.select(CannedResponse.id).where(CannedResponse.shortcut == shortcut)
    if but is not None:
        statement = statement.where(CannedResponse.id != but)
    return (await session.execute(statement)).first() is not None


async def create(session: AsyncSession, *, shortcut: str, title: str, text: str, actor: audit.Actor) -> CannedResponse:
    shortcut, title, text = check(shortcut, title, text)
    if await _taken(session, shortcut):
        raise Conflict("shortcut_taken", "another canned response has this shortcut")
    if (await session.execute(sa.select(sa.func.count()).select_from(CannedResponse))).scalar_one() >= MAX_CANNED:
        raise Conflict("too_many", f"at most {MAX_CANNED} canned responses")
    canned = CannedResponse(shortcut=shortcut, title=title, text=text)
    try:
        async with session.begin_nested():  # the unique shortcut decides a race
            session.add(canned)
            await session.flush()
    except sa.exc.IntegrityError:
        raise Conflict("shortcut_taken", "another canned response has this shortcut") from None
    audit.record(session, actor, audit.Action.SETTINGS_CHANGED, target=f"canned:{canned.id}", canned_response=shortcut, change="created")
    return canned


async def update(session: AsyncSession, canned_id: int, *, shortcut: str, title: str, text: str, actor: audit.Actor) -> CannedResponse:
    canned = await get(session, canned_id)
    shortcut, title, text = check(shortcut, title, text)
    if await _taken(session, shortcut, but=canned_id):
        raise Conflict("shortcut_taken", "another canned response has this shortcut")
    if (canned.shortcut, canned.title, canned.text) == (shortcut, title, text):
        return canned
    canned.shortcut, canned.title, canned.text, canned.updated_at = shortcut, title, text, utcnow()
    await session.flush()
    audit.record(session, actor, audit.Action.SETTINGS_CHANGED, target=f"canned:{canned.id}", canned_response=shortcut, change="updated")
    return canned


async def delete(session: AsyncSession, canned_id: int, *, actor: audit.Actor) -> None:
    canned = await get(session, canned_id)
    await session.delete(canned)
    audit.record(session, actor, audit.Action.SETTINGS_CHANGED, target=f"canned:{canned_id}", canned_response=canned.shortcut, change="deleted")
