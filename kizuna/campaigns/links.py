"""Tracked links (issue 15 §4): every link of a campaign's messages becomes `/r/{token}`, one per
recipient and link, which records the tap and redirects to the stored destination only.

The token carries (campaign, variant, customer, link number) and an HMAC-SHA256 of them with the
shop's secret key: nothing is stored per recipient at send time (a million recipients cost no
rows), a token cannot be forged or pointed elsewhere (the destination is read from the campaign,
never from the URL), and a tampered one is simply unknown.

Links are found with one pattern in text messages and in `uri` actions (quick replies, Flex,
image maps), when the campaign is saved (its `links`) and again when a recipient's messages are
rendered, so both agree on the numbering.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

URL = re.compile(r"https?://[^\s<>\"'、。「」『』（）()【】]+")
_PACK = struct.Struct(">IIIB")  # campaign, variant, customer, link
_MAC_BYTES = 12
MAX_LINKS = 20


@dataclass(frozen=True)
class Tap:
    campaign_id: int
    variant_id: int
    customer_id: int
    link: int


def find(messages: list[dict]) -> list[str]:
    """The distinct links of `messages`, in order of appearance (their numbers)."""
    found: list[str] = []

    def note(url: str) -> str:
        if url not in found:
            found.append(url)
        return url

    _rewrite(messages, note)
    return found


def apply(messages: list[dict], links: list[str], url_for: Callable[[int], str]) -> list[dict]:
    """`messages` with each known link replaced by `url_for(its number)`."""
    numbers = {link: number for number, link in enumerate(links)}
    return _rewrite(messages, lambda url: url_for(numbers[url]) if url in numbers else url)


def _rewrite(value: Any, replace: Callable[[str], str], key: str | None = None) -> Any:
    if isinstance(value, list):
        return [_rewrite(item, replace) for item in value]
    if isinstance(value, dict):
        return {k: _rewrite(v, replace, k) for k, v in value.items()}
    if isinstance(value, str) and key in ("text", "uri", "linkUri"):
        if key == "text":
            return URL.sub(lambda match: replace(match.group(0)), value)
        return replace(value) if URL.fullmatch(value) else value
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), b"tracked-link:" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def token(secret: str, tap: Tap) -> str:
    payload = _PACK.pack(tap.campaign_id, tap.variant_id, tap.customer_id, tap.link)
    return _b64(payload + _mac(secret, payload))


def read(secret: str, text: str) -> Tap | None:
    """The tap a token stands for, or None when it is malformed or not ours (forged, altered)."""
    if len(text) > 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != _PACK.size + _MAC_BYTES:
        return None
    payload, mac = raw[:_PACK.size], raw[_PACK.size:]
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    return Tap(*_PACK.unpack(payload))
