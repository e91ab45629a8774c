"""Validators for what a customer types into the LINE chat while registering.

Each ``parse_*`` function takes the raw message text and returns a normalised
value, or raises :class:`InvalidInput` carrying a short, friendly Japanese
re-prompt (what is wrong + an example) that the flow can send back as is.

Customers type on phones with Japanese IMEs, so every validator tolerates
full-width digits and letters, half-width katakana, stray spaces (including
the full-width space) and the IME's 「ー」 where a hyphen was meant.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Literal

from email_validator import EmailNotValidError, validate_email

from kizuna.storage import prefectures
from kizuna.storage.identity_values import BadIdentity, normalise_phone

__all__ = [
    "Gender",
    "InvalidInput",
    "NAME_MAX_LENGTH",
    "KANA_MAX_LENGTH",
    "MAX_AGE",
    "fold_digits",
    "is_skip",
    "parse_birthday",
    "parse_birthday_param",
    "parse_email",
    "parse_gender",
    "parse_name",
    "parse_name_kana",
    "parse_phone",
    "parse_prefecture",
]

NAME_MAX_LENGTH = 40
# Readings of long foreign names in katakana run longer than their spelling.
KANA_MAX_LENGTH = 60
MAX_AGE = 120

Gender = Literal["female", "male", "other", "unanswered"]


class InvalidInput(ValueError):
    """The customer's text cannot be used; ``message_ja`` is the re-prompt to send."""

    def __init__(self, message_ja: str) -> None:
        super().__init__(message_ja)
        self.message_ja = message_ja


# --- shared normalisation ----------------------------------------------------
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
# Dash look-alikes. 「ー」 is what a kana-mode keyboard types for "-", so
# 090ー1234ー5678 and 1990ー01ー31 are common.
_DASHES = "-‐‑‒–—―−－ー"
_DASH_RE = re.compile(f"[{_DASHES}]")
_SPACES_RE = re.compile(r"\s+")


def fold_digits(text: str) -> str:
    """Full-width digits (０–９) to ASCII digits; everything else unchanged."""
    return text.translate(_FULLWIDTH_DIGITS)


def _nfkc(text: str) -> str:
    # NFKC turns full-width ASCII into ASCII, half-width katakana into
    # full-width (composing ｶﾞ into ガ), U+3000 into a space and ㍻ into 平成.
    return unicodedata.normalize("NFKC", fold_digits(text or ""))


def _collapse_spaces(text: str) -> str:
    return _SPACES_RE.sub(" ", text).strip()


def _to_katakana(text: str) -> str:
    out = []
    for c in text:
        if "ぁ" <= c <= "ゖ" or c in "ゝゞ":
            out.append(chr(ord(c) + 0x60))
        else:
            out.append(c)
    return "".join(out)


def _to_hiragana(text: str) -> str:
    out = []
    for c in text:
        if "ァ" <= c <= "ヶ" or c in "ヽヾ":
            out.append(chr(ord(c) - 0x60))
        else:
            out.append(c)
    return "".join(out)


# --- name ---------------------------------------------------------------------
_NAME_EXAMPLE = "「山田 花子」のように"
# Punctuation that occurs in real names: ジョン・スミス, Jean-Luc, O'Brien,
# J. Smith, ジャン＝ポール. Everything else outside letters is refused.
_NAME_PUNCT = set(" ・-‐'’.=,")
_URL_RE = re.compile(
    r"(://|www\.|[a-z0-9-]+\.(com|net|org|jp|io|co|info|biz|me|app|dev|ly|xyz|html?)\b)",
    re.IGNORECASE,
)


def _is_name_char(c: str) -> bool:
    cat = unicodedata.category(c)
    # L*: letters of any script (kanji, kana, latin, hangul…, and ー/々 which
    # are Lm); M*: combining marks incl. ideographic variation selectors.
    return cat[0] in "LM" or c in _NAME_PUNCT


def parse_name(text: str) -> str:
    """A person's name in kanji, kana or latin letters, normalised.

    NFKC, whitespace collapsed to single spaces, trimmed; 1–40 characters.
    Digits, URLs, emoji and symbols are refused.
    """
    name = _collapse_spaces(_nfkc(text))
    if not name:
        raise InvalidInput(f"お名前を{_NAME_EXAMPLE}入力してください。")
    if _URL_RE.search(name):
        raise InvalidInput(f"URLはお名前として登録できません。{_NAME_EXAMPLE}入力してください。")
    if name.replace(" ", "").isdigit():
        raise InvalidInput(f"数字だけのお名前は登録できません。{_NAME_EXAMPLE}入力してください。")
    if any(c.isdigit() for c in name):
        raise InvalidInput(f"お名前に数字は使えません。{_NAME_EXAMPLE}入力してください。")
    if not all(_is_name_char(c) for c in name):
        raise InvalidInput(
            f"お名前に絵文字や記号は使えません。{_NAME_EXAMPLE}入力してください。"
        )
    if not any(unicodedata.category(c)[0] == "L" and c not in "ー々" for c in name):
        raise InvalidInput(f"お名前を{_NAME_EXAMPLE}入力してください。")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(f"お名前は{NAME_MAX_LENGTH}文字以内で入力してください。")
    return name


# --- furigana -----------------------------------------------------------------
_KANA_EXAMPLE = "「ヤマダ ハナコ」のように"
# A hyphen typed after kana (ﾀﾛ-) is a long-vowel mark the customer could not
# find on a half-width keyboard.
_KANA_DASH_RE = re.compile(f"(?<=[ァ-ヺー])[{_DASHES}]")


def _is_katakana_char(c: str) -> bool:
    return "ァ" <= c <= "ヺ" or c in "ーヽヾ・ "


def parse_name_kana(text: str) -> str:
    """Furigana in hiragana or katakana (full or half width) → full-width katakana."""
    kana = _collapse_spaces(_to_katakana(_nfkc(text)))
    kana = _KANA_DASH_RE.sub("ー", kana)
    if not kana:
        raise InvalidInput(f"フリガナを{_KANA_EXAMPLE}入力してください。")
    if not all(_is_katakana_char(c) for c in kana) or not any("ァ" <= c <= "ヺ" for c in kana):
        raise InvalidInput(
            f"フリガナはカタカナかひらがなで、{_KANA_EXAMPLE}入力してください。"
        )
    if len(kana) > KANA_MAX_LENGTH:
        raise InvalidInput(f"フリガナは{KANA_MAX_LENGTH}文字以内で入力してください。")
    return kana


# --- birthday -----------------------------------------------------------------
_BIRTHDAY_EXAMPLE = "生年月日は 1990/01/31 のように入力してください。"

# (name, one-letter abbreviation, first day). 元年 is year 1. Meiji's first day
# is the proclamation date in the Gregorian calendar; dates before 1873 were
# lunisolar anyway and are far beyond MAX_AGE.
_ERAS: tuple[tuple[str, str, date], ...] = (
    ("明治", "M", date(1868, 10, 23)),
    ("大正", "T", date(1912, 7, 30)),
    ("昭和", "S", date(1926, 12, 25)),
    ("平成", "H", date(1989, 1, 8)),
    ("令和", "R", date(2019, 5, 1)),
)
_ERA_BY_KEY = {key: i for i, (name, abbr, _) in enumerate(_ERAS) for key in (name, abbr)}

_ERA_RE = re.compile(
    r"(?P<era>明治|大正|昭和|平成|令和|[MTSHR])\s*(?P<y>元|\d{1,2})\s*(?:年|[/.\-])\s*"
    r"(?P<m>\d{1,2})\s*(?:月|[/.\-])\s*(?P<d>\d{1,2})\s*日?",
    re.IGNORECASE,
)
_WESTERN_RE = re.compile(
    r"(?:西暦)?\s*(?P<y>\d{4})\s*(?:年|[/.\-])\s*(?P<m>\d{1,2})\s*(?:月|[/.\-])\s*(?P<d>\d{1,2})\s*日?"
)
_COMPACT_RE = re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})")
_BORN_SUFFIX_RE = re.compile(r"\s*(生まれ|生)\s*$")


def _age_on(birthday: date, today: date) -> int:
    return today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))


def _check_plausible(birthday: date, today: date) -> date:
    if birthday > today:
        raise InvalidInput(f"未来の日付は登録できません。{_BIRTHDAY_EXAMPLE}")
    if _age_on(birthday, today) > MAX_AGE:
        raise InvalidInput(f"生年月日をご確認ください。{_BIRTHDAY_EXAMPLE}")
    return birthday


def _make_date(y: int, m: int, d: int, shown: str) -> date:
    try:
        return date(y, m, d)
    except ValueError:
        raise InvalidInput(f"{shown}という日付はありません。{_BIRTHDAY_EXAMPLE}") from None


def _from_era(era_key: str, year_text: str, m: int, d: int) -> date:
    index = _ERA_BY_KEY[era_key if era_key in _ERA_BY_KEY else era_key.upper()]
    name, _, start = _ERAS[index]
    era_year = 1 if year_text == "元" else int(year_text)
    shown = f"{name}{'元' if era_year == 1 else era_year}年{m}月{d}日"
    if era_year < 1:
        raise InvalidInput(f"{shown}という日付はありません。{_BIRTHDAY_EXAMPLE}")
    result = _make_date(start.year + era_year - 1, m, d, shown)
    end = _ERAS[index + 1][2] if index + 1 < len(_ERAS) else None
    # 平成31年5月1日 or 昭和64年1月10日 never existed; rather than silently
    # shift the era, ask again (a wrong era is the likelier mistake).
    if result < start or (end is not None and result >= end):
        raise InvalidInput(f"{shown}という日付はありません。{_BIRTHDAY_EXAMPLE}")
    return result


def parse_birthday(text: str, today: date) -> date:
    """A birthday typed in the chat.

    Accepts 1990/1/31, 1990-01-31, 1990.1.31, 1990年1月31日, 19900131,
    full-width digits, and Japanese eras: 平成2年1月31日, 昭和63年…, 令和元年…,
    H2.1.31 / S63/5/5, ㍻2年… . Refuses impossible dates (2/30), dates that
    do not exist in the given era, future dates and ages over 120.
    """
    s = _DASH_RE.sub("-", _nfkc(text)).strip()
    s = _BORN_SUFFIX_RE.sub("", s)
    if m := _ERA_RE.fullmatch(s):
        born = _from_era(m["era"], m["y"], int(m["m"]), int(m["d"]))
    elif m := (_WESTERN_RE.fullmatch(s) or _COMPACT_RE.fullmatch(s)):
        y, mo, d = int(m["y"]), int(m["m"]), int(m["d"])
        born = _make_date(y, mo, d, f"{y}年{mo}月{d}日")
    else:
        raise InvalidInput(_BIRTHDAY_EXAMPLE)
    return _check_plausible(born, today)


_PICKER_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_birthday_param(value: str, today: date | None = None) -> date:
    """The ``date`` param of a LINE datetime-picker postback ("YYYY-MM-DD").

    The picker's own ``min``/``max`` should already bound the choice; pass
    ``today`` to apply the same future / too-old checks as :func:`parse_birthday`.
    """
    if not isinstance(value, str) or not _PICKER_RE.fullmatch(value):
        raise InvalidInput(_BIRTHDAY_EXAMPLE)
    try:
        born = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(_BIRTHDAY_EXAMPLE) from None
    return born if today is None else _check_plausible(born, today)


# --- gender -------------------------------------------------------------------
_GENDER_WORDS: dict[str, Gender] = {}
for _gender, _words in (
    ("female", ("女性", "女", "おんな", "じょせい", "女子", "female", "f", "woman", "women", "girl")),
    ("male", ("男性", "男", "おとこ", "だんせい", "男子", "male", "m", "man", "men", "boy")),
    ("other", ("その他", "そのた", "そのほか", "他", "ほか", "other", "others",
               "ノンバイナリー", "のんばいなりー", "nonbinary", "x")),
    ("unanswered", ("回答しない", "かいとうしない", "答えない", "こたえない", "回答しません",
                    "答えません", "答えたくない", "こたえたくない", "回答したくない",
                    "言いたくない", "いいたくない", "無回答", "回答なし", "未回答",
                    "秘密", "ひみつ", "内緒", "ないしょ", "prefernottosay", "noanswer",
                    "unanswered")),
):
    for _w in _words:
        _GENDER_WORDS[_to_hiragana(unicodedata.normalize("NFKC", _w)).lower()] = _gender  # type: ignore[assignment]

_POLITE_TAIL_RE = re.compile(r"(です|でーす|だよ)$")


def _gender_key(text: str) -> str:
    s = _to_hiragana(_nfkc(text)).lower()
    # Keep letters only: drops spaces, punctuation and any emoji a quick-reply
    # label (「👩 女性」) or the customer added.
    s = "".join(c for c in s if unicodedata.category(c)[0] == "L")
    return _POLITE_TAIL_RE.sub("", s)


def parse_gender(text: str) -> Gender:
    """女性 / 男性 / その他 / 回答しない and obvious variants (女, male, 答えない…)."""
    found = _GENDER_WORDS.get(_gender_key(text))
    if found is None:
        raise InvalidInput("性別は「女性」「男性」「その他」「回答しない」からお選びください。")
    return found


# --- prefecture ---------------------------------------------------------------
def parse_prefecture(text: str) -> str:
    """A prefecture in any common spelling → its canonical name (「東京都」)."""
    found = prefectures.lookup(_nfkc(text))
    if found is None:
        raise InvalidInput("都道府県名を「東京都」「大阪」のように入力してください。")
    return found.name


# --- phone --------------------------------------------------------------------
_PHONE_EXAMPLE = "電話番号は 090-1234-5678 のように入力してください。"


def parse_phone(text: str) -> str:
    """A Japanese (or +country) phone number → E.164, e.g. ``+819012345678``: the same form as a
    phone identity (storage/identity_values.py), so an order with this number finds the customer."""
    try:
        return normalise_phone(fold_digits(text or ""))
    except BadIdentity as error:
        if str(error) == "not a valid phone number":  # it reads as a number, just not a real one
            raise InvalidInput(f"電話番号をご確認ください。{_PHONE_EXAMPLE}") from None
        raise InvalidInput(_PHONE_EXAMPLE) from None


# --- e-mail -------------------------------------------------------------------
_EMAIL_EXAMPLE = "メールアドレスは hanako@example.com のように入力してください。"


def parse_email(text: str) -> str:
    """An e-mail address, syntax-checked (no DNS lookup); the domain is lowercased."""
    # 。 for . is a common IME slip (gmail。com); NFKC already fixes ＠ and ．.
    s = _nfkc(text).strip().replace("。", ".")
    if not s:
        raise InvalidInput(_EMAIL_EXAMPLE)
    try:
        # allow_smtputf8=False: a Japanese local part (山田@…) cannot be
        # delivered through ordinary mail providers, so refuse it now.
        result = validate_email(s, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        raise InvalidInput(f"メールアドレスの形式が正しくありません。{_EMAIL_EXAMPLE}") from None
    return result.normalized


# --- optional steps -----------------------------------------------------------
_SKIP_WORDS = {
    _to_hiragana(unicodedata.normalize("NFKC", w)).lower()
    for w in (
        "スキップ", "飛ばす", "とばす", "なし", "無し", "ナシ", "特になし", "特に無し",
        "とくになし", "skip", "-",
    )
}


def is_skip(text: str) -> bool:
    """Whether the customer wants to skip an optional step (スキップ, なし, skip, 「-」…)."""
    s = _DASH_RE.sub("-", _to_hiragana(_nfkc(text)).lower())
    s = "".join(s.split()).rstrip("。.!！")
    return s in _SKIP_WORDS
