"""How a customer identity is written down, in one place: the REST API, the CSV import, the
registration flow and the migration's backfill all store the form given here, so the same
person matches whatever system typed the value.

- everything: NFKC (full-width ０９０ and ＡＢＣ become ASCII, a U+3000 space a space), trimmed;
- e-mail: lower-cased as a whole (shops' systems disagree on the local part's case; matching a
  person matters more here than RFC 5321's case-sensitive local part);
- phone: E.164 by `phonenumbers`, read as Japanese when it has no country code
  (090-1234-5678 → +819012345678);
- LINE user id and the shop's external customer id: as given after NFKC (they are opaque ids).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

import phonenumbers

IDENTITY_VALUE_MAX = 254  # an e-mail address's limit; the longest of the kinds


class IdentityKind(StrEnum):
    """A way to recognise a person. The order here is the precedence when one record matches
    two different customers: the order attaches to the customer of the first kind that matched."""

    LINE_USER_ID = "line_user_id"
    EXTERNAL_CUSTOMER_ID = "external_customer_id"
    EMAIL = "email"
    PHONE = "phone"


PRECEDENCE = tuple(IdentityKind)

# Dash look-alikes, 「ー」 included: a kana-mode keyboard types it for "-" (090ー1234ー5678).
_DASHES = re.compile("[‐‑‒–—―−－ー]")
# What phone numbers are written with: phonenumbers would otherwise read letters as keypad digits.
_PHONE_CHARS = re.compile(r"\+?[\d\s\-().]+")
# Enough of an address to be one: something@domain.tld, no spaces. Deliverability is not ours
# to judge for records another system already holds.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_LINE_USER_ID = re.compile(r"U[0-9a-f]{32}")


class BadIdentity(ValueError):
    """A value that cannot be an identity of its kind; the message says why, in English."""


def _text(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip()


def normalise_email(value: str) -> str:
    text = _text(value).replace("。", ".").lower()  # 。 for . is a common IME slip
    if len(text) > IDENTITY_VALUE_MAX or not _EMAIL.fullmatch(text):
        raise BadIdentity("not an e-mail address")
    return text


def normalise_phone(value: str) -> str:
    text = _DASHES.sub("-", _text(value))
    if not _PHONE_CHARS.fullmatch(text):
        raise BadIdentity("not a phone number")
    try:
        number = phonenumbers.parse(text, "JP")
    except phonenumbers.NumberParseException:
        raise BadIdentity("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise BadIdentity("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_line_user_id(value: str) -> str:
    text = _text(value)
    if not _LINE_USER_ID.fullmatch(text):
        raise BadIdentity("not a LINE user id (U and 32 hex digits)")
    return text


def normalise_external_id(value: str) -> str:
    text = _text(value)
    if not text or len(text) > 64:
        raise BadIdentity("must be 1 to 64 characters")
    return text


_NORMALISERS = {
    IdentityKind.LINE_USER_ID: normalise_line_user_id,
    IdentityKind.EXTERNAL_CUSTOMER_ID: normalise_external_id,
    IdentityKind.EMAIL: normalise_email,
    IdentityKind.PHONE: normalise_phone,
}


def normalise(kind: IdentityKind | str, value: str) -> str:
    """`value` as stored for `kind`; BadIdentity when it cannot be one."""
    return _NORMALISERS[IdentityKind(kind)](value)
