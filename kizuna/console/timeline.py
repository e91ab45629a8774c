"""A customer's timeline as the console shows it: chat bubbles (the customer's on the left,
the shop's on the right, as on LINE), staff's notes, the system's lines, day changes and
conversation boundaries.

Everything here is plain data for the templates, which escape it: nothing a customer sent
(names, texts, file names, Flex contents, postback data) is ever marked safe. LINE content
is described as LINE shows it: media through the console's own media route (the content
endpoint, cached), a sticker as an honest card (LINE's sticker CDN is not ours to embed),
a location as an address with a map link, Flex and template messages as their alt text with
what they say, quick replies as chips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from kizuna.flows.media import media_message, sent_from_elsewhere
from kizuna.storage.models import ConversationNote, Direction, Interaction, Staff

from .i18n import MESSAGES

SUMMARY_LINES = 6
CHIPS_MAX = 13  # LINE shows at most 13 quick reply items


@dataclass
class Item:
    """One line of the timeline. `type`: day | boundary | system | bubble | note."""

    type: str
    at: datetime
    id: int | None = None
    side: str | None = None  # bubble: in | out
    kind: str | None = None  # bubble: text, image, video, audio, file, sticker, location, flex, template, postback, other
    who: str | None = None  # who wrote it (the shop's side: the bot, a staff member, a campaign)
    text: str | None = None
    label: str | None = None  # system / boundary: the i18n key
    values: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # Flex / template: what it says
    chips: list[str] = field(default_factory=list)  # quick replies, template actions
    media: bool = False  # served by the console's media route
    link: str | None = None  # an external URL (a map, content LINE only points at)


# Timeline kinds shown as a system line, and the boundaries of a conversation.
BOUNDARIES = {"conversation.bot_handoff": "start", "conversation.resolved": "end", "conversation.handed_back": "end"}


def build(
    rows: list[Interaction | ConversationNote], *, staff: dict[int, Staff], customer_name: str, timezone: tzinfo, t,
) -> list[Item]:
    """The display items, oldest first, with a day line wherever the shop's date changes."""
    items: list[Item] = []
    day = None
    for row in rows:
        local_day = row.created_at.astimezone(timezone).date()
        if local_day != day:
            items.append(Item("day", row.created_at))
            day = local_day
        if isinstance(row, ConversationNote):
            items.append(Item("note", row.created_at, id=row.id, who=_author(row.author, staff, t), text=row.text))
        elif row.direction == Direction.SYS:
            items.append(_system(row, staff, t))
        elif row.direction == Direction.IN:
            items.append(_inbound(row, customer_name, t))
        else:
            items.append(_outbound(row, staff, t))
    return items


def _author(sender: str | None, staff: dict[int, Staff], t) -> str:
    """"staff:<id>" → the member's display name; "token:<name>" → the API token's name."""
    kind, _, rest = (sender or "").partition(":")
    if kind == "staff" and rest.isdigit() and int(rest) in staff:
        return staff[int(rest)].display_name
    if kind == "token" and rest:
        return rest
    return t("tl.staff")


def _system(row: Interaction, staff: dict[int, Staff], t) -> Item:
    payload = row.payload or {}
    values: dict[str, Any] = {}
    if row.kind == "conversation.bot_handoff":
        reason = str(payload.get("reason", ""))
        values["reason"] = t(f"reason.{reason}") if reason in ("keyword", "button", "complaint", "unanswered", "staff") else reason
    elif row.kind == "conversation.resolved":
        values["who"] = _author(row.sender_id, staff, t)
    elif row.kind == "conversation.csat":
        values["score"] = payload.get("score")
    elif row.kind.startswith("coupon."):
        values["title"] = row.text or payload.get("title") or ""
    elif row.kind.startswith("inquiry."):
        values["question"] = row.text or ""
    elif row.kind == "customer.tagged":
        values["tag"] = row.text or payload.get("tag") or ""
    elif row.kind.startswith("order."):
        total = payload.get("total")
        values.update(external_id=payload.get("external_id", ""), total=f"{total:,}" if isinstance(total, int) else "")
    elif row.kind.startswith("cart."):
        quantity = payload.get("quantity")
        item = str(payload.get("name") or payload.get("sku") or "")
        values["item"] = f"{item} × {quantity}" if isinstance(quantity, int) and quantity > 1 else item
    label = f"tl.sys.{row.kind}"
    if label not in MESSAGES:  # a kind the console has no words for yet: shown by its name
        label, values = "tl.event.other", {"kind": row.kind}
    boundary = BOUNDARIES.get(row.kind)
    return Item("boundary" if boundary else "system", row.created_at, id=row.id, label=label, kind=boundary or row.kind, values=values)


def _inbound(row: Interaction, customer_name: str, t) -> Item:
    payload = row.payload or {}
    item = Item("bubble", row.created_at, id=row.id, side="in", who=customer_name)
    if row.kind == "message.text":
        item.kind, item.text = "text", row.text or ""
    elif row.kind in ("message.image", "message.video", "message.audio", "message.file"):
        message = media_message(row) or {}
        item.kind = row.kind.removeprefix("message.")
        if sent_from_elsewhere(message):
            item.link = _safe_url((message.get("contentProvider") or {}).get("originalContentUrl"))
        else:
            item.media = bool(message)
        if item.kind == "file":
            item.text = str(message.get("fileName") or t("tl.file"))
            item.values["size"] = message.get("fileSize")
        elif item.kind in ("video", "audio") and isinstance(message.get("duration"), int):
            item.values["seconds"] = message["duration"] // 1000
    elif row.kind == "message.sticker":
        message = payload.get("message") or {}
        item.kind = "sticker"
        item.values = {"package": str(message.get("packageId", "")), "sticker": str(message.get("stickerId", ""))}
        keywords = message.get("keywords")
        item.lines = [str(word) for word in keywords[:5]] if isinstance(keywords, list) else []
    elif row.kind == "message.location":
        message = payload.get("message") or {}
        item.kind = "location"
        item.text = str(message.get("title") or "")
        item.values["address"] = str(message.get("address") or "")
        latitude, longitude = message.get("latitude"), message.get("longitude")
        if isinstance(latitude, (int, float)) and isinstance(longitude, (int, float)):
            item.link = f"https://www.google.com/maps/search/?api=1&query={float(latitude)},{float(longitude)}"
    elif row.kind == "postback":
        item.kind = "postback"
        data = dict(parse_qsl(row.text or "", keep_blank_values=True))
        if data.get("action") == "csat" and data.get("score", "").isdigit():
            item.values["score"] = int(data["score"])
        item.text = row.text or ""
    elif row.kind in ("follow", "unfollow", "unsend", "join", "leave"):
        return Item("system", row.created_at, id=row.id, label=f"tl.event.{row.kind}", kind=row.kind)
    else:
        return Item("system", row.created_at, id=row.id, label="tl.event.other", kind=row.kind, values={"kind": row.kind})
    return item


def _outbound(row: Interaction, staff: dict[int, Staff], t) -> Item:
    message = row.payload or {}
    who = {"bot": t("tl.bot"), "campaign": t("tl.campaign")}.get(row.sender_type) or _author(row.sender_id, staff, t)
    item = Item("bubble", row.created_at, id=row.id, side="out", who=who, values={"sender": row.sender_type})
    kind = str(message.get("type", "other"))
    if kind == "text":
        item.kind, item.text = "text", str(message.get("text", ""))
    elif kind == "flex":
        item.kind, item.text = "flex", str(message.get("altText", ""))
        item.lines = _texts(message.get("contents"))[:SUMMARY_LINES]
    elif kind == "template":
        template = message.get("template") or {}
        item.kind, item.text = "template", str(message.get("altText", ""))
        item.lines = [str(template[key]) for key in ("title", "text") if isinstance(template.get(key), str)]
        item.chips = [str(action.get("label", "")) for action in template.get("actions") or [] if isinstance(action, dict)]
    elif kind in ("image", "video", "audio"):
        item.kind, item.link = kind, _safe_url(message.get("originalContentUrl"))
    elif kind == "sticker":
        item.kind = "sticker"
        item.values.update(package=str(message.get("packageId", "")), sticker=str(message.get("stickerId", "")))
    elif kind == "location":
        item.kind, item.text = "location", str(message.get("title", ""))
        item.values["address"] = str(message.get("address", ""))
    else:
        item.kind, item.text = "other", str(message.get("altText") or kind)
    quick = (message.get("quickReply") or {}).get("items") or []
    item.chips += [str((entry.get("action") or {}).get("label", "")) for entry in quick if isinstance(entry, dict)][:CHIPS_MAX]
    return item


def _texts(node: Any) -> list[str]:
    """The text a Flex message shows, in reading order (texts, spans, button labels)."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "text" and isinstance(node.get("text"), str):
            found.append(node["text"])
        elif node.get("type") == "button" and isinstance((node.get("action") or {}).get("label"), str):
            found.append(f"[{node['action']['label']}]")
        for key in ("header", "hero", "body", "footer", "contents"):
            if key in node and not (key == "contents" and node.get("type") == "text"):
                found += _texts(node[key])
    elif isinstance(node, list):
        for child in node:
            found += _texts(child)
    return [text for text in found if text.strip()]


def _safe_url(value: Any) -> str | None:
    """An http(s) URL to link to, or None (never a javascript: or data: URL)."""
    if not isinstance(value, str) or len(value) > 2000:
        return None
    parts = urlsplit(value)
    return quote(value, safe=":/?#[]@!$&'()*+,;=%-._~") if parts.scheme in ("http", "https") and parts.netloc else None


def preview(message: Interaction | None, t) -> str:
    """One line for the inbox: the message, or what kind of thing it was."""
    if message is None:
        return ""
    kind = message.kind.removeprefix("message.")
    if kind == "text" and message.text:
        return " ".join(message.text.split())[:80]
    if kind == "flex" and message.text:
        return " ".join(message.text.split())[:80]
    return t(f"tl.preview.{kind}") if kind in ("image", "video", "audio", "file", "sticker", "location", "flex", "template") else t("tl.preview.other")
