"""Coupon codes a till clerk can read out, type back, or scan from a QR code.

Shape: ``KZN-7F3K-Q9MD-2XHC``

* ``KZN`` — the shop's short code, 2–5 letters A–Z.
* 11 random symbols (55 bits from :mod:`secrets`) in Crockford's base32
  alphabet, which has no I, L, O or U, so nothing is confused when read aloud
  or handwritten.
* 1 check symbol, from the same alphabet so that the code stays a uniform
  run of readable characters (Crockford's own mod-37 check needs five extra
  symbols such as ``*~$=``, which clerks cannot read out).

The check symbol is a weighted sum over GF(32) of the prefix and the random
symbols, each position weighted by a distinct power of a primitive element
(a one-symbol Reed–Solomon style parity). Because every weight is non-zero and
all weights are distinct (codes are far shorter than 31 symbols), it detects
*every* single-symbol substitution and *every* swap of two different symbols,
adjacent or not — in the prefix, the body or the check symbol itself — so
typos are caught before a database lookup. Luhn mod N would miss one
transposition pair.
"""

from __future__ import annotations

import io
import re
import secrets
import unicodedata
from typing import Literal

import segno

__all__ = [
    "ALPHABET",
    "RANDOM_SYMBOLS",
    "InvalidCode",
    "InvalidCodeReason",
    "generate_code",
    "normalize_code",
    "parse_code",
    "qr_png",
    "read_qr",
]

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
RANDOM_SYMBOLS = 11  # 55 bits of entropy
_BODY_LEN = RANDOM_SYMBOLS + 1  # plus the check symbol
_GROUP = 4

_VALUE = {c: i for i, c in enumerate(ALPHABET)}
# Crockford's decoding rules: the letters that look like digits read as them.
_VALUE.update({"O": 0, "I": 1, "L": 1})

_PREFIX_RE = re.compile(r"[A-Z]{2,5}")
# Separators a clerk or an IME may produce instead of an ASCII hyphen
# (ー is what a Japanese keyboard in kana mode types for "-").
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−ー_.]+")

InvalidCodeReason = Literal["malformed", "bad_check", "other_shop"]


class InvalidCode(ValueError):
    """A coupon code that must not be looked up; ``reason`` is machine-readable."""

    def __init__(self, reason: InvalidCodeReason) -> None:
        super().__init__(reason)
        self.reason: InvalidCodeReason = reason


# --- GF(32) arithmetic -----------------------------------------------------
_GF_POLY = 0b100101  # x^5 + x^2 + 1, primitive, so x generates all 31 non-zero elements


def _times_x(a: int) -> int:
    a <<= 1
    if a & 0b100000:
        a ^= _GF_POLY
    return a


def _check_value(values: list[int]) -> int:
    # Horner's rule: symbol i of n gets weight x^(n-i); the extra final
    # multiply keeps every weight != 1, which is the check symbol's own
    # weight, so swapping the last symbol with the check symbol is caught too.
    acc = 0
    for v in values:
        acc = _times_x(acc) ^ v
    return _times_x(acc)


def _prefix_values(prefix: str) -> list[int]:
    # A=1 … Z=26: never 0, so a letter prepended to the prefix changes the sum.
    return [ord(c) - 64 for c in prefix]


def _check_symbol(prefix: str, body_values: list[int]) -> str:
    return ALPHABET[_check_value(_prefix_values(prefix) + body_values)]


def _format(prefix: str, body: str) -> str:
    groups = [body[i:i + _GROUP] for i in range(0, len(body), _GROUP)]
    return "-".join([prefix, *groups])


def _validate_prefix(shop_prefix: str) -> str:
    if not isinstance(shop_prefix, str) or not _PREFIX_RE.fullmatch(shop_prefix):
        raise ValueError(f"shop prefix must be 2-5 letters A-Z, got {shop_prefix!r}")
    return shop_prefix


# --- public API ---------------------------------------------------------------
def generate_code(shop_prefix: str) -> str:
    """A new random coupon code for the shop, e.g. ``KZN-7F3K-Q9MD-2XHC``.

    Uniqueness is probabilistic (55 random bits); the database should still
    hold a unique index and the caller retry on the (astronomically rare)
    collision.
    """
    prefix = _validate_prefix(shop_prefix)
    bits = secrets.randbits(5 * RANDOM_SYMBOLS)
    values = [(bits >> (5 * i)) & 31 for i in range(RANDOM_SYMBOLS)]
    body = "".join(ALPHABET[v] for v in values) + _check_symbol(prefix, values)
    return _format(prefix, body)


def _split(text: str) -> tuple[str, str]:
    """Return (prefix, body) in canonical characters, or raise ``malformed``."""
    if not isinstance(text, str):
        raise InvalidCode("malformed")
    # NFKC: full-width letters/digits from a Japanese IME become ASCII.
    compact = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).upper()
    prefix_len = len(compact) - _BODY_LEN
    if not 2 <= prefix_len <= 5:
        raise InvalidCode("malformed")
    prefix, raw_body = compact[:prefix_len], compact[prefix_len:]
    # The prefix is plain letters (a shop may be called "OIL"), so Crockford's
    # O→0 / I,L→1 substitutions apply to the body only.
    if not _PREFIX_RE.fullmatch(prefix):
        raise InvalidCode("malformed")
    try:
        body = "".join(ALPHABET[_VALUE[c]] for c in raw_body)
    except KeyError:  # U, punctuation, kana …
        raise InvalidCode("malformed") from None
    return prefix, body


def normalize_code(text: str) -> str:
    """Canonical grouped form of what a clerk typed or a scanner read.

    Case-insensitive; hyphens and spaces optional; full-width characters
    allowed; O reads as 0 and I/L as 1 in the random part. Raises
    ``InvalidCode("malformed")`` when the text cannot be a coupon code. The
    check symbol is *not* verified here: use :func:`parse_code`.
    """
    prefix, body = _split(text)
    return _format(prefix, body)


def parse_code(text: str, shop_prefix: str) -> str:
    """Validate a code for ``shop_prefix`` and return its canonical form.

    Raises :class:`InvalidCode` with reason ``"malformed"`` (not shaped like a
    code), ``"bad_check"`` (a typo: the check symbol does not match) or
    ``"other_shop"`` (a genuine-looking code of a different shop). The check is
    verified before the prefix, so a typo in the prefix is reported as a typo.
    """
    expected = _validate_prefix(shop_prefix)
    prefix, body = _split(text)
    values = [_VALUE[c] for c in body[:-1]]
    if _check_symbol(prefix, values) != body[-1]:
        raise InvalidCode("bad_check")
    if prefix != expected:
        raise InvalidCode("other_shop")
    return _format(prefix, body)


def qr_png(code: str, scale: int = 8) -> bytes:
    """PNG bytes of a QR code holding the canonical form of ``code``.

    Error correction level M (survives ~15 % damage: a crumpled receipt or a
    cracked phone screen) and the standard 4-module quiet zone so scanners
    find it next to other print. The canonical form uses only QR's
    alphanumeric character set, which keeps the symbol at version 1 (21×21).
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    canonical = normalize_code(code)
    qr = segno.make(canonical, error="m", boost_error=False, micro=False)
    out = io.BytesIO()
    qr.save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


# A camera frame the till's page sends: at most 640×480 grey pixels (300 KB), plenty for a
# version-1 symbol on a phone's screen, and a bound on what one request makes us decode.
MAX_FRAME = (640, 480)


def read_qr(pixels: bytes, width: int, height: int) -> str | None:
    """The text of the first QR code in a greyscale frame (one byte per pixel, row by row),
    or None. The console's redemption screen reads codes from the camera this way: the
    browser sends small grey frames and zxing-cpp decodes them here, so the page needs no
    decoder of its own (nor a CDN)."""
    import numpy
    import zxingcpp  # imported here: only the till's camera needs it

    if not (0 < width <= MAX_FRAME[0] and 0 < height <= MAX_FRAME[1]) or len(pixels) != width * height:
        raise ValueError(f"a frame is width × height bytes, at most {MAX_FRAME[0]}×{MAX_FRAME[1]}")
    frame = numpy.frombuffer(pixels, dtype=numpy.uint8).reshape(height, width)
    for found in zxingcpp.read_barcodes(frame, formats=zxingcpp.BarcodeFormat.QRCode):
        if found.text:
            return found.text
    return None
