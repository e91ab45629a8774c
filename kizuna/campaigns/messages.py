"""A campaign's LINE messages: checked when saved, personalised when sent.

Messages are LINE message objects (text, image, sticker, flex; each may carry a quickReply).
Text may say `{name}` (the customer's LINE name, else their registered name, else 「お客様」) or
`{name|fallback}` with a fallback of the marketer's choosing. Content with a placeholder differs
per recipient, so it is pushed one by one (2,000/s); identical content goes by multicast (500 a
request). Checks here are the ones a marketer can get wrong; LINE's own validation (the emulator
reproduces it) answers for the rest with a 400 the batch records.
"""

from __future__ import annotations

import re
from typing import Any

from kizuna.storage.errors import Invalid

MAX_MESSAGES = 5
TEXT_MAX_UTF16 = 5000
DEFAULT_NAME = "お客様"
NAME_MAX = 20  # a long display name is cut: a greeting is not the place for 100 characters
PLACEHOLDER = re.compile(r"\{name(?:\|([^{}]{0,20}))?\}")
KINDS = ("text", "image", "sticker", "flex")


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def check(messages: Any, where: str = "messages") -> list[dict]:
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise Invalid(where, f"must be a list of 1 to {MAX_MESSAGES} LINE messages")
    for index, message in enumerate(messages):
        at = f"{where}[{index}]"
        if not isinstance(message, dict) or message.get("type") not in KINDS:
            raise Invalid(f"{at}.type", f"must be one of {', '.join(KINDS)}")
        kind = message["type"]
        if kind == "text":
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                raise Invalid(f"{at}.text", "must be text")
            # The longest a personalised text can get: every placeholder filled with the longest name.
            longest = PLACEHOLDER.sub(lambda match: "x" * max(NAME_MAX, len(match.group(1) or "")), text)
            if utf16_length(longest) > TEXT_MAX_UTF16:
                raise Invalid(f"{at}.text", f"must be at most {TEXT_MAX_UTF16} characters (UTF-16), names filled in")
        elif kind == "image":
            for key in ("originalContentUrl", "previewImageUrl"):
                url = message.get(key)
                if not isinstance(url, str) or not url.startswith("https://") or len(url) > 2000:
                    raise Invalid(f"{at}.{key}", "must be an https:// URL of at most 2000 characters")
        elif kind == "sticker":
            if not str(message.get("packageId", "")).isdigit() or not str(message.get("stickerId", "")).isdigit():
                raise Invalid(f"{at}.packageId", "packageId and stickerId must be LINE's sticker numbers")
        elif kind == "flex":
            alt = message.get("altText")
            if not isinstance(alt, str) or not alt.strip() or len(alt) > 1500:
                raise Invalid(f"{at}.altText", "must be text of 1 to 1500 characters")
            if not isinstance(message.get("contents"), dict):
                raise Invalid(f"{at}.contents", "must be a Flex bubble or carousel")
    return messages


def personalised(messages: list[dict]) -> bool:
    return any(message.get("type") == "text" and PLACEHOLDER.search(message.get("text", "")) for message in messages)


def render(messages: list[dict], *, display_name: str | None, full_name: str | None) -> list[dict]:
    """The messages for one customer, placeholders filled (names are the customer's own text:
    LINE shows text as text, so nothing needs escaping, only trimming)."""
    name = (display_name or full_name or "").strip()[:NAME_MAX]

    def fill(match: re.Match) -> str:
        return name or (match.group(1) if match.group(1) is not None else DEFAULT_NAME)

    out = []
    for message in messages:
        if message.get("type") == "text" and PLACEHOLDER.search(message["text"]):
            message = {**message, "text": PLACEHOLDER.sub(fill, message["text"])}
        out.append(message)
    return out
