"""The registration fields: one table drives the questions, the answers, the summary.

Each `Field` says which `Customer` column it fills, how a typed answer is read (a
parser from `validators`, raising `InvalidInput`), whether it may be skipped, and
which quick-reply answers it offers. The registration flow asks them in order; the
profile flow asks one of them again; the confirm card and the member-info card
show them. Texts are looked up by key from the field's step:
`registration_ask_<step>`, `registration_invalid_<step>`, `registration_label_<step>`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import phonenumbers

from kizuna.flows.engine import FlowContext, Input, step_data

from .validators import (
    InvalidInput,
    is_skip,
    parse_birthday,
    parse_birthday_param,
    parse_email,
    parse_gender,
    parse_name,
    parse_phone,
    parse_prefecture,
)

# Dates customers mean ("today", the picker's max) are Japanese dates. The shop's time
# zone is Asia/Tokyo for every shop today; +09:00 has no daylight saving.
JST = timezone(timedelta(hours=9), "JST")
BIRTHDAY_PICKER_DATA = "action=birthday"


def today(ctx: FlowContext) -> date:
    return ctx.now.astimezone(JST).date()


class NoAnswer(Exception):
    """The event is not an answer to this question (a sticker, a stale button): ask again."""


@dataclass(frozen=True)
class Choice:
    value: Any
    label: str  # text key of the quick-reply label (also how the value is shown)
    key: str = ""  # what its button sends (`step_data(state, key)`); default str(value)

    @property
    def data_value(self) -> str:
        return self.key or str(self.value)


@dataclass(frozen=True)
class Field:
    step: str  # state "registration.<step>" / "profile.<step>", postback "action=edit&field=<step>"
    column: str  # the Customer column it fills
    parse: Callable[[str, date], Any]  # typed text -> value; raises InvalidInput
    optional: bool = False  # 「スキップ」 leaves it empty
    choices: tuple[Choice, ...] = ()  # quick-reply answers, matched by their label too
    suggestions: tuple[str, ...] = ()  # quick-reply texts sent as typed (common prefectures)
    date_picker: bool = False  # offer LINE's date picker; the value is a date
    free_text: bool = False  # any letters parse, so a question must be caught first
    in_profile: bool = True  # changeable from member info (marketing has its own buttons)

    @property
    def ask_key(self) -> str:
        return f"registration_ask_{self.step}"

    @property
    def invalid_key(self) -> str:
        return f"registration_invalid_{self.step}"

    @property
    def label_key(self) -> str:
        return f"registration_label_{self.step}"

    # -- to and from flow data (JSON) ---------------------------------------------------

    def dump(self, value: Any) -> Any:
        return value.isoformat() if isinstance(value, date) else value

    def load(self, value: Any) -> Any:
        return date.fromisoformat(value) if self.date_picker and isinstance(value, str) else value


# -- parsers the validators do not have -------------------------------------------------

_YES = {"はい", "うけとる", "受け取る", "受けとる", "希望する", "ほしい", "欲しい", "yes", "y", "ok", "sure"}
_NO = {"いいえ", "いらない", "受け取らない", "うけとらない", "不要", "希望しない", "no", "n", "nothanks"}


def comparable(text: str) -> str:
    """Letters and digits only, NFKC, lower case: what choice matching compares."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if unicodedata.category(c)[0] in "LN")


def parse_yes_no(text: str, _today: date | None = None) -> bool:
    key = comparable(text)
    if key in {comparable(w) for w in _YES}:
        return True
    if key in {comparable(w) for w in _NO}:
        return False
    raise InvalidInput("「受け取る」か「受け取らない」でお答えください。")


_QUESTION_ENDINGS = ("ですか", "ますか", "でしょうか", "ませんか", "のか", "かな")


def looks_like_question(text: str) -> bool:
    """「駐車場はありますか」 is all letters, so parse_name would take it as a name."""
    s = unicodedata.normalize("NFKC", text).strip().rstrip("。.!！ ")
    return s.endswith(("?", "？")) or s.endswith(_QUESTION_ENDINGS)


# -- the table --------------------------------------------------------------------------

FIELDS: tuple[Field, ...] = (
    Field("name", "full_name", lambda text, _today: parse_name(text), free_text=True),
    Field("birthday", "birthday", parse_birthday, date_picker=True),
    Field(
        "gender", "gender", lambda text, _today: parse_gender(text),
        choices=tuple(Choice(g, f"registration_gender_{g}") for g in ("female", "male", "other", "unanswered")),
    ),
    Field(
        "prefecture", "prefecture", lambda text, _today: parse_prefecture(text),
        suggestions=("東京都", "神奈川県", "埼玉県", "千葉県", "大阪府", "愛知県", "兵庫県", "福岡県", "北海道"),
    ),
    Field("phone", "phone", lambda text, _today: parse_phone(text), optional=True),
    Field("email", "email", lambda text, _today: parse_email(text), optional=True),
    Field(
        "marketing", "marketing_opt_in", parse_yes_no, in_profile=False,
        choices=(Choice(True, "registration_marketing_on", "on"), Choice(False, "registration_marketing_off", "off")),
    ),
)
BY_STEP = {field.step: field for field in FIELDS}
PROFILE_FIELDS = tuple(field for field in FIELDS if field.in_profile)


# -- asking -------------------------------------------------------------------------------


SKIP = "skip"  # the value of the 「スキップ」 button


async def ask(ctx: FlowContext, field: Field, current: Any = None, *, state: str) -> None:
    """Send the field's question with its quick-reply answers: buttons of `state` (see
    engine.step_data), each showing its label as the customer's line."""
    items: list[dict] = []
    if field.date_picker:
        initial = current if isinstance(current, date) else date(1990, 1, 1)
        items.append({"type": "action", "action": {
            "type": "datetimepicker", "label": await ctx.text("registration_birthday_picker"),
            "data": f"{BIRTHDAY_PICKER_DATA}&state={state}", "mode": "date", "initial": initial.isoformat(),
            "max": today(ctx).isoformat(), "min": "1900-01-01",
        }})
    for choice in field.choices:
        items.append(answer_item(await ctx.text(choice.label), state, choice.data_value))
    if ctx.locale == "ja":  # the suggestions are Japanese names; English speakers type
        items.extend(answer_item(text, state, text) for text in field.suggestions)
    if field.optional:
        items.append(answer_item(await ctx.text("registration_skip"), state, SKIP))
    await ctx.reply_text(field.ask_key, quick_reply=items or None)


def answer_item(label: str, state: str, value: str) -> dict:
    """A quick reply that answers `state`'s question with `value` (the label shows in the chat)."""
    return postback_item(label, step_data(state, value), label)


def postback_item(label: str, data: str, display_text: str | None = None) -> dict:
    return {"type": "action", "action": {"type": "postback", "label": label[:20], "data": data, "displayText": display_text or label}}


# -- reading an answer ---------------------------------------------------------------------

SKIPPED = None


async def read(ctx: FlowContext, field: Field, event: Input) -> Any:
    """The value the customer gave (typed, or tapped on a button of this question);
    InvalidInput with the re-prompt, or NoAnswer."""
    if event.kind == "postback":
        if field.date_picker and event.action.get("action") == "birthday":
            return parse_birthday_param((event.params or {}).get("date", ""), today(ctx))
        if event.value is not None:
            if field.optional and event.value == SKIP:
                return SKIPPED
            for choice in field.choices:
                if event.value == choice.data_value:
                    return choice.value
            if event.value in field.suggestions:
                return field.parse(event.value, today(ctx))
        raise NoAnswer
    if event.kind != "text" or not (event.text or "").strip():
        raise NoAnswer
    text = event.text
    if field.optional and (is_skip(text) or comparable(text) == comparable(await ctx.text("registration_skip"))):
        return SKIPPED
    for choice in field.choices:  # an operator may have renamed a button
        if comparable(text) == comparable(await ctx.text(choice.label)):
            return choice.value
    if field.free_text and looks_like_question(text):
        raise InvalidInput(_hint(field, today(ctx)))
    return field.parse(text, today(ctx))


def _hint(field: Field, day: date) -> str:
    """The field's own hint for an answer that is not one: its parser's message for an
    empty answer ("お名前を「山田 花子」のように入力してください。")."""
    try:
        field.parse("", day)
    except InvalidInput as error:
        return error.message_ja
    return ""


async def invalid(ctx: FlowContext, field: Field, error: InvalidInput) -> str:
    return await ctx.text(field.invalid_key, error=error.message_ja)


# -- showing values ---------------------------------------------------------------------


async def show(ctx: FlowContext, field: Field, value: Any) -> str:
    """A value as the customer reads it in a summary."""
    if value is None:
        return await ctx.text("registration_value_empty")
    if field.column == "marketing_opt_in":
        return await ctx.text("registration_marketing_on" if value else "registration_marketing_off")
    for choice in field.choices:
        if choice.value == value:
            return await ctx.text(choice.label)
    if isinstance(value, date):
        return await ctx.text("registration_birthday_format", year=value.year, month=value.month, day=value.day)
    if field.column == "phone":
        try:
            return phonenumbers.format_number(phonenumbers.parse(value), phonenumbers.PhoneNumberFormat.NATIONAL)
        except phonenumbers.NumberParseException:
            return str(value)
    return str(value)


async def summary_rows(ctx: FlowContext, values: dict[str, Any], fields: tuple[Field, ...] = FIELDS) -> list[tuple[str, str]]:
    """(label, shown value) per field; `values` by column."""
    return [(await ctx.text(field.label_key), await show(ctx, field, values.get(field.column))) for field in fields]


def summary_bubble(title: str, rows: list[tuple[str, str]], *, lead: str | None = None, buttons: Sequence[dict] = ()) -> dict:
    """A Flex bubble: a title, an optional sentence, one row per field, buttons below."""
    body: list[dict] = []
    if lead:
        body.append({"type": "text", "text": lead, "wrap": True, "size": "sm"})
        body.append({"type": "separator", "margin": "md"})
    for label, value in rows:
        body.append({"type": "box", "layout": "baseline", "spacing": "sm", "margin": "md", "contents": [
            {"type": "text", "text": label, "size": "sm", "color": "#888888", "flex": 3, "wrap": True},
            {"type": "text", "text": value, "size": "sm", "flex": 5, "wrap": True},
        ]})
    bubble: dict = {
        "type": "bubble",
        "header": {"type": "box", "layout": "vertical", "contents": [{"type": "text", "text": title, "weight": "bold", "size": "lg", "wrap": True}]},
        "body": {"type": "box", "layout": "vertical", "contents": body},
    }
    if buttons:
        bubble["footer"] = {"type": "box", "layout": "vertical", "spacing": "sm", "contents": list(buttons)}
    return bubble


def button(label: str, action: dict, *, primary: bool = False) -> dict:
    return {"type": "button", "style": "primary" if primary else "secondary", "height": "sm", "action": {"label": label[:40], **action}}


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()
