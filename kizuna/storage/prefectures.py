"""The 47 prefectures of Japan and a forgiving lookup for what customers type.

Codes are the JIS X 0401 codes (1 = 北海道 … 47 = 沖縄県), the same numbering
used by government data and most address APIs, so they can be stored as-is.

Pure standard library on purpose: ``kizuna.storage`` may not depend on any
other kizuna package.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Prefecture", "PREFECTURES", "by_code", "by_name", "lookup"]


@dataclass(frozen=True, slots=True)
class Prefecture:
    code: int  # JIS X 0401
    name: str  # canonical, with suffix: 東京都
    short_name: str  # without suffix: 東京 (北海道 keeps 道, as it is always written so)
    kana: str  # hiragana of short_name: とうきょう
    romaji: str  # Hepburn without macrons: tokyo

    @property
    def suffix(self) -> str:
        return self.name[len(self.short_name):]


# (code, name, kana of the short name, romaji)
_DATA: tuple[tuple[int, str, str, str], ...] = (
    (1, "北海道", "ほっかいどう", "hokkaido"),
    (2, "青森県", "あおもり", "aomori"),
    (3, "岩手県", "いわて", "iwate"),
    (4, "宮城県", "みやぎ", "miyagi"),
    (5, "秋田県", "あきた", "akita"),
    (6, "山形県", "やまがた", "yamagata"),
    (7, "福島県", "ふくしま", "fukushima"),
    (8, "茨城県", "いばらき", "ibaraki"),
    (9, "栃木県", "とちぎ", "tochigi"),
    (10, "群馬県", "ぐんま", "gunma"),
    (11, "埼玉県", "さいたま", "saitama"),
    (12, "千葉県", "ちば", "chiba"),
    (13, "東京都", "とうきょう", "tokyo"),
    (14, "神奈川県", "かながわ", "kanagawa"),
    (15, "新潟県", "にいがた", "niigata"),
    (16, "富山県", "とやま", "toyama"),
    (17, "石川県", "いしかわ", "ishikawa"),
    (18, "福井県", "ふくい", "fukui"),
    (19, "山梨県", "やまなし", "yamanashi"),
    (20, "長野県", "ながの", "nagano"),
    (21, "岐阜県", "ぎふ", "gifu"),
    (22, "静岡県", "しずおか", "shizuoka"),
    (23, "愛知県", "あいち", "aichi"),
    (24, "三重県", "みえ", "mie"),
    (25, "滋賀県", "しが", "shiga"),
    (26, "京都府", "きょうと", "kyoto"),
    (27, "大阪府", "おおさか", "osaka"),
    (28, "兵庫県", "ひょうご", "hyogo"),
    (29, "奈良県", "なら", "nara"),
    (30, "和歌山県", "わかやま", "wakayama"),
    (31, "鳥取県", "とっとり", "tottori"),
    (32, "島根県", "しまね", "shimane"),
    (33, "岡山県", "おかやま", "okayama"),
    (34, "広島県", "ひろしま", "hiroshima"),
    (35, "山口県", "やまぐち", "yamaguchi"),
    (36, "徳島県", "とくしま", "tokushima"),
    (37, "香川県", "かがわ", "kagawa"),
    (38, "愛媛県", "えひめ", "ehime"),
    (39, "高知県", "こうち", "kochi"),
    (40, "福岡県", "ふくおか", "fukuoka"),
    (41, "佐賀県", "さが", "saga"),
    (42, "長崎県", "ながさき", "nagasaki"),
    (43, "熊本県", "くまもと", "kumamoto"),
    (44, "大分県", "おおいた", "oita"),
    (45, "宮崎県", "みやざき", "miyazaki"),
    (46, "鹿児島県", "かごしま", "kagoshima"),
    (47, "沖縄県", "おきなわ", "okinawa"),
)

_SUFFIX_KANA = {"都": "と", "道": "", "府": "ふ", "県": "けん"}
_SUFFIX_ROMAJI = {"都": ("to",), "道": (), "府": ("fu",), "県": ("ken",)}


def _make(code: int, name: str, kana: str, romaji: str) -> Prefecture:
    # 北海道's 道 is part of how everyone writes it; "北海" alone is not a name.
    short = name if name == "北海道" else name[:-1]
    return Prefecture(code=code, name=name, short_name=short, kana=kana, romaji=romaji)


PREFECTURES: tuple[Prefecture, ...] = tuple(_make(*row) for row in _DATA)

_BY_CODE = {p.code: p for p in PREFECTURES}
_BY_NAME = {p.name: p for p in PREFECTURES}

_NON_LETTERS = re.compile(r"[^a-z]")
_ROMAJI_NOISE = re.compile(r"(prefecture|pref)$")


def _fold_romaji(text: str) -> str:
    """tōkyō / Toukyou / TOKYO-to / oosaka → tokyoto / osaka style keys."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    letters = _NON_LETTERS.sub("", ascii_only)
    letters = _ROMAJI_NOISE.sub("", letters)
    # Wāpuro spellings of long vowels (toukyou, oosaka) are as common as
    # the passport-style ones; folding both sides keeps the table small.
    for long, short in (("ou", "o"), ("oo", "o"), ("uu", "u")):
        letters = letters.replace(long, short)
    return letters


def _katakana_to_hiragana(text: str) -> str:
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in text)


def _fold_japanese(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(text.split())
    return _katakana_to_hiragana(text)


def _build_index() -> dict[str, Prefecture]:
    index: dict[str, Prefecture] = {}

    def add(key: str, pref: Prefecture) -> None:
        other = index.setdefault(key, pref)
        # Exact-match lookups are only safe while no key is shared (京都 must
        # never resolve to 東京都); fail at import rather than guess at runtime.
        if other is not pref:
            raise RuntimeError(f"prefecture key {key!r} is ambiguous: {other.name} / {pref.name}")

    for p in PREFECTURES:
        suffix = p.suffix or p.name[-1]
        for key in (p.name, p.short_name, p.kana, p.kana + _SUFFIX_KANA[suffix]):
            add(_fold_japanese(key), p)
        for key in (p.romaji, *(p.romaji + s for s in _SUFFIX_ROMAJI[suffix])):
            add(_fold_romaji(key), p)
    return index


_INDEX = _build_index()
# Longest first so that an address such as 「神奈川県横浜市」 matches its prefecture.
_NAMES_LONGEST_FIRST = sorted(_BY_NAME, key=len, reverse=True)


def by_code(code: int) -> Prefecture:
    """The prefecture with JIS code ``code`` (1–47); KeyError otherwise."""
    return _BY_CODE[code]


def by_name(name: str) -> Prefecture:
    """The prefecture whose canonical name is exactly ``name``; KeyError otherwise."""
    return _BY_NAME[name]


def lookup(text: str) -> Prefecture | None:
    """Find a prefecture from free text, or None.

    Accepts the canonical name (東京都), the name without suffix (東京),
    hiragana/katakana in full or half width (とうきょう, ﾄｳｷｮｳ), and romaji
    (tokyo, Tōkyō, toukyou, tokyo-to). Matching is exact after normalisation,
    never by substring, so 京都 is 京都府 and not 東京都. As a convenience an
    address that *starts* with a canonical name (大阪府大阪市…) is accepted.
    """
    if not text:
        return None
    folded = _fold_japanese(text)
    if not folded:
        return None
    found = _INDEX.get(folded)
    if found is not None:
        return found
    if all(ord(c) < 0x2000 for c in folded):  # Latin script, macrons included
        found = _INDEX.get(_fold_romaji(folded))
        if found is not None:
            return found
    for name in _NAMES_LONGEST_FIRST:
        if folded.startswith(name):
            return _BY_NAME[name]
    return None
