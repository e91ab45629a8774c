"""Text normalisation for Japanese as customers actually type it on LINE.

Everything here is generic Japanese (no shop vocabulary) and pure Python.

* :func:`normalize` -- what the matcher feeds to the tokenizer: Unicode NFKC
  (full-width ASCII -> ASCII, half-width katakana -> full-width), lower case,
  emoji / pictographs / kaomoji symbols / laughter (``www``, ``(笑)``) removed,
  repeated punctuation collapsed, elongation marks (``ー``, ``〜``, ``～``,
  small vowels such as ``ありがとぉ``) reduced, whitespace collapsed.
* :func:`fold_kana` -- a *matching key* for readings: katakana -> hiragana,
  small kana -> big kana, ``ヴ`` -> ``ぶ``, long-vowel marks dropped.  Two
  spellings of the same word (``シャンプー``/``しゃんぷう``/``ｼｬﾝﾌﾟｰ``) fold to
  the same key.
* :func:`strip_sentence_endings` -- removes the polite/casual sentence tails
  (``ですか``, ``でしょうか``, ``かな``, ``の?``, ``って``, ``ください`` ...) so that
  they do not dominate a character-level comparison.  The tokenizer-based
  matcher drops these through part-of-speech filtering instead; this function
  serves the character-only paths (and the benchmark's baseline).
* :func:`char_ngrams` -- character n-grams of a string.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "normalize",
    "fold_kana",
    "strip_sentence_endings",
    "char_ngrams",
    "is_hiragana",
    "is_katakana",
    "is_kanji",
    "SENTENCE_BREAK",
]

# ---------------------------------------------------------------------------
# character classes

_HIRA_START, _HIRA_END = 0x3041, 0x3096
_KATA_START, _KATA_END = 0x30A1, 0x30F6


def is_hiragana(ch: str) -> bool:
    return _HIRA_START <= ord(ch) <= _HIRA_END or ch in "ゝゞ"


def is_katakana(ch: str) -> bool:
    return _KATA_START <= ord(ch) <= 0x30FA or ch in "ヽヾ"


def is_kanji(ch: str) -> bool:
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or ch in "々〆"


# Characters that are symbols rather than words: emoji, pictographs, dingbats,
# arrows, box drawing, kaomoji parts.  Unicode categories So (other symbol),
# Sk (modifier symbol, e.g. skin tones / ^), Cs/Co (surrogates / private use),
# Cf (format: zero-width joiner ...), Mn variation selectors.
_DROP_CATEGORIES = {"So", "Sk", "Cs", "Co", "Cf"}
_KEEP_SYMBOLS = set("〜~ー-・&%+#@/:.")

_LAUGH_RE = re.compile(r"(?:(?<![a-z])w{2,}(?![a-z]))|[(（]\s*(?:笑|汗|泣|涙|爆)\s*[)）]|(?<=[ぁ-んァ-ヶ一-龥])笑+(?=\s|$|[。、!?])")
_MULTI_SPACE_RE = re.compile(r"\s+")
_NEWLINES_RE = re.compile(r"\s*[\r\n]+\s*")
_REPEAT_PUNCT_RE = re.compile(r"([!?。、,.・…])\1+")
_LONG_VOWEL_RUN_RE = re.compile(r"[ーｰ−‐―─━]{2,}")
# a wave dash after kana is an elongation ("ありがと〜", "すご〜い"); between
# digits it is a range ("10〜20") and is kept; elsewhere it separates words.
_WAVE_AFTER_KANA_RE = re.compile(r"(?<=[ぁ-ゖァ-ヺ])[〜~～]+")
_WAVE_RE = re.compile(r"(?<![0-9])[〜~～](?![0-9])")
# elongation at the end of a hiragana word: ありがとー / おしえてー / ですかぁ / ねっ
_TRAILING_ELONGATION_RE = re.compile(r"(?<=[ぁ-ゖ])(?:[ーぁぃぅぇぉっ])+(?=$|[\s!?。、,.…・])")
_ELLIPSIS_RE = re.compile(r"[…‥]+|\.{3,}")

SENTENCE_BREAK = "。!?\n"


def normalize(text: str) -> str:
    """Normalise a customer message (see module docstring).  Idempotent."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text)
    t = t.lower()
    t = _ELLIPSIS_RE.sub("。", t)
    t = _LAUGH_RE.sub(" ", t)
    out = []
    for ch in t:
        if ch in _KEEP_SYMBOLS:
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat in _DROP_CATEGORIES:
            out.append(" ")
            continue
        if cat == "Mn" and 0xFE00 <= ord(ch) <= 0xFE0F:  # variation selectors
            continue
        if ch in "()[]{}<>「」『』【】〈〉《》〔〕\"'`*_=|\\^;":
            out.append(" ")
            continue
        if ch in "♪☆★♡♥○●◎◇◆□■△▲▽▼※":  # decorative (some are So, some not)
            out.append(" ")
            continue
        out.append(ch)
    t = "".join(out)
    t = _LAUGH_RE.sub(" ", t)
    t = t.replace("ｰ", "ー")
    t = _LONG_VOWEL_RUN_RE.sub("ー", t)
    t = _WAVE_AFTER_KANA_RE.sub("ー", t)
    t = _WAVE_RE.sub(" ", t)
    t = _LONG_VOWEL_RUN_RE.sub("ー", t)
    t = _TRAILING_ELONGATION_RE.sub("", t)
    t = _REPEAT_PUNCT_RE.sub(r"\1", t)
    t = re.sub(r"[!?]{2,}", "?", t)
    t = _NEWLINES_RE.sub("。", t.strip())
    t = re.sub(r"([。!?、])。", r"\1", t)
    t = _MULTI_SPACE_RE.sub(" ", t).strip()
    # a wave dash turned into ー at a word end after kana ("ありがと〜" -> "ありがとー")
    t = _TRAILING_ELONGATION_RE.sub("", t)
    return t


# ---------------------------------------------------------------------------
# kana folding

_SMALL_TO_BIG = str.maketrans(
    {
        "ぁ": "あ", "ぃ": "い", "ぅ": "う", "ぇ": "え", "ぉ": "お",
        "っ": "つ", "ゃ": "や", "ゅ": "ゆ", "ょ": "よ", "ゎ": "わ",
        "ゕ": "か", "ゖ": "け", "ゔ": "ぶ", "ゐ": "い", "ゑ": "え",
    }
)


_VU_RE = re.compile(r"[ヴゔ]([ァィゥェォぁぃぅぇぉ]?)")
_VU_MAP = {"": "ぶ", "ァ": "ば", "ィ": "び", "ゥ": "ぶ", "ェ": "べ", "ォ": "ぼ",
           "ぁ": "ば", "ぃ": "び", "ぅ": "ぶ", "ぇ": "べ", "ぉ": "ぼ"}
_VOWEL_OF: dict[str, str] = {}
for _row in ("あかさたなはまやらわがざだばぱぁゃゎ", "いきしちにひみりぎじぢびぴぃ",
             "うくすつぬふむゆるぐずづぶぷぅゅっ", "えけせてねへめれげぜでべぺぇ", "おこそとのほもよろをごぞどぼぽぉょ"):
    for _c in _row:
        _VOWEL_OF[_c] = "あいうえお"[("あかさたなはまやらわがざだばぱぁゃゎ", "いきしちにひみりぎじぢびぴぃ",
                                       "うくすつぬふむゆるぐずづぶぷぅゅっ", "えけせてねへめれげぜでべぺぇ",
                                       "おこそとのほもよろをごぞどぼぽぉょ").index(_row)]


def fold_kana(text: str) -> str:
    """Reading key: katakana->hiragana, small->big kana, ヴ->ば行, and a long
    vowel mark spelled as the vowel it lengthens (``シャンプー``, ``しゃんぷう``
    and ``ｼｬﾝﾌﾟｰ`` all give ``しやんぷう``; ``チョー`` gives ``ちよう`` like the
    reading ``チョウ``).

    Non-kana characters are kept (after NFKC + lower-casing), so the key of a
    kanji word is still usable as a surface key.
    """
    t = unicodedata.normalize("NFKC", text).lower()
    t = _VU_RE.sub(lambda mo: _VU_MAP[mo.group(1)], t)
    chars: list[str] = []
    for ch in t:
        o = ord(ch)
        if _KATA_START <= o <= _KATA_END:
            ch = chr(o - 0x60)
        elif ch == "ヷ":
            ch = "わ"
        elif ch == "ヺ":
            ch = "を"
        if ch in "ー〜~":
            if chars and chars[-1] in _VOWEL_OF:
                # long o / long e are spelled おう / えい in readings (そうりょう)
                ch = {"お": "う", "え": "い"}.get(_VOWEL_OF[chars[-1]], _VOWEL_OF[chars[-1]])
            else:
                continue
        elif ch == "-":
            continue
        chars.append(ch)
    return "".join(chars).translate(_SMALL_TO_BIG)


# ---------------------------------------------------------------------------
# sentence endings

# Generic Japanese sentence tails: polite/casual question and request endings.
# Ordered longest first; applied repeatedly at the end of a sentence.
_ENDINGS = sorted(
    {
        "ですか", "ますか", "でしょうか", "ますでしょうか", "ですかね", "ますかね",
        "でしょう", "かな", "かなあ", "のか", "んですか", "んですが", "んだけど",
        "ですが", "ですけど", "けど", "ですね", "ますね", "ですよね", "よね",
        "ください", "下さい", "ほしいです", "です", "ます", "ました", "でした",
        "の", "か", "ね", "よ", "な", "って", "っけ",
    },
    key=len,
    reverse=True,
)
_END_PUNCT_RE = re.compile(r"[\s!?。、,.]+$")


def strip_sentence_endings(text: str) -> str:
    """Remove trailing politeness / question particles from each sentence.

    ``"送料はいくらですか?"`` -> ``"送料はいくら"``; ``"返品できる?"`` is left
    alone apart from the ``?`` (``できる`` carries meaning).
    """
    parts = re.split(r"[。!?\n]+", normalize(text))
    out = []
    for p in parts:
        p = _END_PUNCT_RE.sub("", p.strip())
        changed = True
        while changed and p:
            changed = False
            for e in _ENDINGS:
                if p.endswith(e) and len(p) > len(e):
                    p = p[: -len(e)]
                    changed = True
                    break
        if p:
            out.append(p)
    return "。".join(out)


def char_ngrams(text: str, n: int = 2) -> list[str]:
    """Character n-grams of *text* with whitespace removed; a shorter text
    yields itself as its single gram (so one-character words still match)."""
    t = "".join(text.split())
    if not t:
        return []
    if len(t) <= n:
        return [t]
    return [t[i : i + n] for i in range(len(t) - n + 1)]
