"""Bot texts: defaults in code (Japanese first, English available), operator edits in the database.

A text with `{placeholders}` (`{url}`, `{date}` ...) is filled in by the bot: an edit may
use those its default has, and no others (an unknown one would fail every message).

A text whose key ends in `_url` (`privacy_policy_url`) is a link the bot sends, not prose: an
edit must be one http(s) URL, and a locale the shop has not edited uses the Japanese edit
(one shop, one privacy policy: setting it once is enough), then its own default.
"""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .errors import Invalid, NotFound
from .models import BotText
from .types import utcnow

DEFAULTS: dict[str, dict[str, str]] = {
    "greeting": {
        "ja": "友だち追加ありがとうございます！\nご質問はこのトークで、いつでもお気軽にお送りください。",
        "en": "Thank you for adding us as a friend!\nFeel free to ask us anything in this chat.",
    },
    "greeting_again": {
        "ja": "再び友だち追加していただき、ありがとうございます！\nご質問はこのトークで、いつでもお気軽にお送りください。",
        "en": "Thank you for adding us again!\nFeel free to ask us anything in this chat.",
    },
    "flow_timed_out": {
        "ja": "前回のお手続きは、一定時間が経過したため終了しました。お手数ですが、もう一度はじめからお願いいたします。",
        "en": "Your previous request timed out. Please start again from the beginning.",
    },
    "flow_cancelled": {
        "ja": "お手続きを中止しました。またいつでもお気軽にどうぞ。",
        "en": "Cancelled. You can start again any time.",
    },
    "flow_stale_button": {
        "ja": "こちらのボタンは受付を終了しました。お手数ですが、下の質問にお答えください。",
        "en": "This button is no longer in use. Please answer the question below.",
    },
    "flow_stale_ended": {
        "ja": "こちらのボタンは受付を終了しました。お手数ですが、もう一度はじめからお手続きください。",
        "en": "This button is no longer in use. Please start again from the beginning.",
    },
    "handoff_requested": {
        "ja": "担当者におつなぎします。順番にご返信しますので、このままお待ちください。",
        "en": "We're connecting you with a person. They will reply in turn; please wait a moment.",
    },
    "received": {
        "ja": "メッセージありがとうございます。担当者へのお問い合わせは、「担当者」とお送りください。",
        "en": "Thanks for your message. To talk to a person, send “agent”.",
    },
    "received_sticker": {
        "ja": "スタンプありがとうございます！ご質問があれば、いつでもお気軽にメッセージでお送りください。",
        "en": "Thanks for the sticker! Send us a message any time you have a question.",
    },
    "received_media": {
        "ja": "お送りいただき、ありがとうございます。画像やファイルには自動でお答えできないため、ご用件を文字でお送りいただくか、「担当者」とお送りください。",
        "en": "Thank you. We can't answer photos and files automatically: please type your question, or send “agent” to talk to a person.",
    },
}

LOCALES = ("ja", "en")
MAX_TEXT = 5000  # LINE's limit for one text message
MAX_URL = 1000
URL_SUFFIX = "_url"
# What LINE turns into a link: http(s), a host, nothing that ends the link early.
_URL = re.compile(r"https?://[^\s<>\"]+", re.IGNORECASE)


def utf16_length(text: str) -> int:
    """Length as LINE counts it: UTF-16 code units (an emoji outside the BMP is 2)."""
    return len(text.encode("utf-16-le")) // 2


def register(defaults: dict[str, dict[str, str]]) -> None:
    """Add a module's default texts (flows keep their texts beside their code).

    Every text needs Japanese; a key registered twice with different texts is a bug."""
    for key, by_locale in defaults.items():
        if "ja" not in by_locale:
            raise ValueError(f"bot text {key!r} has no Japanese default")
        if key in DEFAULTS and DEFAULTS[key] != by_locale:
            raise ValueError(f"bot text {key!r} is registered twice")
        DEFAULTS[key] = by_locale


def locale_for(language: str | None) -> str:
    """LINE's profile language ("ja", "en", "zh-Hant", ...) to one of ours; Japanese first."""
    if language and language.split("-")[0] in LOCALES:
        return language.split("-")[0]
    return "ja"


def is_url(key: str) -> bool:
    return key.endswith(URL_SUFFIX)


def _effective(key: str, locale: str, edits: dict[tuple[str, str], str]) -> str:
    """The text the bot sends: the shop's edit; for a URL, else the Japanese edit; else the default."""
    if (key, locale) in edits:
        return edits[(key, locale)]
    if is_url(key) and (key, "ja") in edits:
        return edits[(key, "ja")]
    return DEFAULTS[key].get(locale) or DEFAULTS[key]["ja"]


async def _edits(session: AsyncSession, key: str | None = None) -> dict[tuple[str, str], str]:
    statement = sa.select(BotText)
    if key is not None:
        statement = statement.where(BotText.key == key)
    return {(t.key, t.locale): t.text for t in (await session.execute(statement)).scalars()}


async def get_text(session: AsyncSession, key: str, locale: str) -> str:
    if key not in DEFAULTS:
        raise KeyError(f"unknown bot text {key!r}")
    if not is_url(key):  # the common case: one primary-key read
        edited = await session.get(BotText, (key, locale))
        return edited.text if edited is not None else DEFAULTS[key].get(locale) or DEFAULTS[key]["ja"]
    return _effective(key, locale, await _edits(session, key))


def _item(key: str, locale: str, edits: dict[tuple[str, str], str]) -> dict:
    return {"key": key, "locale": locale, "text": _effective(key, locale, edits), "default": DEFAULTS[key].get(locale, ""),
            "edited": (key, locale) in edits}


async def all_texts(session: AsyncSession) -> list[dict]:
    edits = await _edits(session)
    return [_item(key, locale, edits) for key in DEFAULTS for locale in LOCALES]


async def texts_of(session: AsyncSession, key: str) -> list[dict]:
    """One text in every locale, as `all_texts` lists it. Raises NotFound."""
    check_exists(key, "ja")
    edits = await _edits(session, key)
    return [_item(key, locale, edits) for locale in LOCALES]


def check_exists(key: str, locale: str) -> None:
    """Raise NotFound unless there is a bot text `key` in `locale` (what an operator can edit)."""
    if key not in DEFAULTS or locale not in LOCALES:
        raise NotFound(f"no such bot text (locales: {', '.join(LOCALES)})")


def check_url(text: str) -> str:
    """A URL text as stored (outer spaces dropped); Invalid("text") unless it is one http(s)
    URL with a host, which LINE shows as a link."""
    url = text.strip()
    if len(url) > MAX_URL or not _URL.fullmatch(url) or not urlsplit(url).hostname:
        raise Invalid("text", f"must be one http:// or https:// URL (at most {MAX_URL} characters), e.g. https://example.jp/privacy")
    return url


def placeholders(key: str) -> list[str]:
    """The `{names}` the bot fills into this text (those of its defaults)."""
    names: dict[str, None] = {}
    for default in DEFAULTS[key].values():
        names.update((name, None) for _, name, _, _ in string.Formatter().parse(default) if name)
    return list(names)


def check_placeholders(key: str, text: str) -> None:
    """Invalid("text") when the bot could not fill the edit in: a placeholder its default does
    not have, or a lone brace. (A text without placeholders is sent as it is: braces are fine.)"""
    known = placeholders(key)
    if not known:
        return
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError:
        raise Invalid("text", "a { or } without its pair: write {{ or }} for a brace itself") from None
    unknown = [name for name in used if name not in known]
    if unknown:
        raise Invalid("text", f"{{{unknown[0]}}} is not filled in by the bot; this text can use "
                              + ", ".join(f"{{{name}}}" for name in known))


def audit_target(key: str, locale: str) -> str:
    return f"text:{key}/{locale}"


async def set_text(session: AsyncSession, key: str, locale: str, text: str, *, actor: audit.Actor | None = None) -> dict:
    """An operator's edit; the text as `all_texts` lists it. Raises NotFound or Invalid("text")."""
    check_exists(key, locale)
    if not text.strip() or len(text) > MAX_TEXT:
        raise Invalid("text", f"must be 1 to {MAX_TEXT} characters, not blank")
    if is_url(key):
        text = check_url(text)
    check_placeholders(key, text)
    edited = await session.get(BotText, (key, locale))
    old = edited.text if edited is not None else None
    if edited is None:
        session.add(BotText(key=key, locale=locale, text=text))
    else:
        edited.text = text
        edited.updated_at = utcnow()
    await session.flush()
    if old != text:
        audit.record_by(session, actor, audit.Action.TEXT_CHANGED, target=audit_target(key, locale),
                        old=audit.excerpt(old if old is not None else DEFAULTS[key].get(locale)), new=audit.excerpt(text))
    return _item(key, locale, await _edits(session, key))


async def reset_text(session: AsyncSession, key: str, locale: str, *, actor: audit.Actor | None = None) -> dict:
    """Drop the shop's edit: the default applies again. Raises NotFound."""
    check_exists(key, locale)
    edited = await session.get(BotText, (key, locale))
    if edited is not None:
        old = edited.text
        await session.delete(edited)
        await session.flush()
        audit.record_by(session, actor, audit.Action.TEXT_RESET, target=audit_target(key, locale), old=audit.excerpt(old))
    return _item(key, locale, await _edits(session, key))
