"""Signing and sending webhook requests the way the LINE platform does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import aiohttp

USER_AGENT = "LineBotWebhook/2.0"


def encode_body(destination: str, events: list[dict[str, Any]]) -> bytes:
    # LINE sends compact UTF-8 JSON; the signature covers these exact bytes.
    payload = {"destination": destination, "events": events}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(channel_secret: str, body: bytes) -> str:
    digest = hmac.new(channel_secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    signature: str | None,
    timeout: float,
) -> tuple[int, bytes, str | None]:
    """POST one webhook body. Returns (status, response body, error); status 0 when the bot
    gave no HTTP answer (refused connection, timeout), as LINE's webhook test reports it."""
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT}
    if signature is not None:
        headers["x-line-signature"] = signature
    try:
        async with session.post(
            url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return response.status, await response.read(), None
    except TimeoutError:
        return 0, b"", f"timeout after {timeout:g} s"
    except (aiohttp.ClientError, ValueError) as exc:  # ValueError: a URL aiohttp cannot use (e.g. an IDNA label over 63)
        return 0, b"", f"{type(exc).__name__}: {exc}"
