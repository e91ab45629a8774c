"""Bot texts: defaults in code (Japanese first, English available), operator edits in the database."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

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


async def get_text(session: AsyncSession, key: str, locale: str) -> str:
    if key not in DEFAULTS:
        raise KeyError(f"unknown bot text {key!r}")
    edited = await session.get(BotText, (key, locale))
    if edited is not None:
        return edited.text
    return DEFAULTS[key].get(locale) or DEFAULTS[key]["ja"]


def _item(key: str, locale: str, edited: str | None) -> dict:
    default = DEFAULTS[key].get(locale, "")
    return {"key": key, "locale": locale, "text": default if edited is None else edited, "default": default,
            "edited": edited is not None}


async def all_texts(session: AsyncSession) -> list[dict]:
    edits = {(t.key, t.locale): t.text for t in (await session.execute(sa.select(BotText))).scalars()}
    return [_item(key, locale, edits.get((key, locale))) for key in DEFAULTS for locale in LOCALES]


def check_exists(key: str, locale: str) -> None:
    """Raise NotFound unless there is a bot text `key` in `locale` (what an operator can edit)."""
    if key not in DEFAULTS or locale not in LOCALES:
        raise NotFound(f"no such bot text (locales: {', '.join(LOCALES)})")


async def set_text(session: AsyncSession, key: str, locale: str, text: str) -> dict:
    """An operator's edit; the text as `all_texts` lists it. Raises NotFound or Invalid("text")."""
    check_exists(key, locale)
    if not text.strip() or len(text) > MAX_TEXT:
        raise Invalid("text", f"must be 1 to {MAX_TEXT} characters, not blank")
    edited = await session.get(BotText, (key, locale))
    if edited is None:
        session.add(BotText(key=key, locale=locale, text=text))
    else:
        edited.text = text
        edited.updated_at = utcnow()
    await session.flush()
    return _item(key, locale, text)
