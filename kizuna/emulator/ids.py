"""Identifier formats the LINE platform uses, generated locally.

The bot may check shapes (a user id is ``U`` + 32 lowercase hex digits, a webhook event id is a
ULID), so the emulator produces the same shapes rather than arbitrary strings.
"""

from __future__ import annotations

import itertools
import re
import secrets
import uuid

from ulid import ULID

USER_ID_RE = re.compile(r"^U[0-9a-f]{32}$")
GROUP_ID_RE = re.compile(r"^C[0-9a-f]{32}$")
ROOM_ID_RE = re.compile(r"^R[0-9a-f]{32}$")

# LINE message ids are numeric strings of about 18 digits; a counter keeps them unique and
# increasing within one emulator process without collisions between quick successive calls.
_message_counter = itertools.count(600_000_000_000_000_000 + secrets.randbelow(10**15))


def user_id() -> str:
    return "U" + secrets.token_hex(16)


def group_id() -> str:
    return "C" + secrets.token_hex(16)


def room_id() -> str:
    return "R" + secrets.token_hex(16)


def message_id() -> str:
    return str(next(_message_counter))


def webhook_event_id() -> str:
    return str(ULID())


def reply_token() -> str:
    return secrets.token_hex(16)


def quote_token() -> str:
    # Real quote tokens are long opaque url-safe strings.
    return "q" + secrets.token_urlsafe(48)


def mark_as_read_token() -> str:
    return secrets.token_urlsafe(32)


def request_id() -> str:
    return str(uuid.uuid4())


def rich_menu_id() -> str:
    return "richmenu-" + secrets.token_hex(16)


def is_uuid(value: str) -> bool:
    """X-Line-Retry-Key must be a UUID in its canonical hex-and-dash form."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return str(parsed) == value.lower()
