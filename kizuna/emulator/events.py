"""Webhook event objects shaped as LINE sends them (see line-openapi ``webhook.yml``).

Every event gets ``webhookEventId`` (a ULID), ``timestamp`` (ms), ``mode``, ``source`` and
``deliveryContext``; a ``replyToken`` only where LINE gives one (not for unfollow, leave,
memberLeft, unsend, nor for any event in ``standby`` mode).
"""

from __future__ import annotations

from typing import Any

from . import ids

MESSAGE_KINDS = ("text", "image", "video", "audio", "file", "location", "sticker")
# Event types that LINE sends with a reply token (accountLink only when linking succeeded).
REPLYABLE_TYPES = frozenset(
    {"message", "follow", "postback", "join", "memberJoined", "beacon", "videoPlayComplete",
     "accountLink", "membership"}
)


def source_for(user_id: str | None, group_id: str | None = None, room_id: str | None = None) -> dict[str, Any]:
    if group_id:
        src: dict[str, Any] = {"type": "group", "groupId": group_id}
    elif room_id:
        src = {"type": "room", "roomId": room_id}
    else:
        src = {"type": "user"}
    if user_id:
        src["userId"] = user_id
    return src


def chat_id_of(event: dict[str, Any]) -> str:
    """The chat an event belongs to: the group, the room, or the user's 1:1 chat."""
    src = event.get("source") or {}
    return src.get("groupId") or src.get("roomId") or src.get("userId") or ""


def base_event(event_type: str, source: dict[str, Any], timestamp: int, mode: str = "active") -> dict[str, Any]:
    return {
        "type": event_type,
        "mode": mode,
        "timestamp": timestamp,
        "source": source,
        "webhookEventId": ids.webhook_event_id(),
        "deliveryContext": {"isRedelivery": False},
    }


def message_content(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The ``message`` object of a message event; unknown camelCase fields pass through."""
    f = dict(fields)
    msg: dict[str, Any] = {"type": kind, "id": f.pop("id", None) or ids.message_id()}
    if kind in ("text", "image", "video", "sticker"):
        msg["quoteToken"] = f.pop("quote_token", None) or ids.quote_token()
    if kind == "text":
        msg["text"] = f.pop("text", "")
    elif kind in ("image", "video", "audio"):
        msg["contentProvider"] = f.pop("content_provider", None) or {"type": "line"}
        if kind in ("video", "audio"):
            msg["duration"] = f.pop("duration", 3000)
        image_set = f.pop("image_set", None)
        if image_set:
            msg["imageSet"] = image_set
    elif kind == "file":
        msg["fileName"] = f.pop("file_name", "document.pdf")
        msg["fileSize"] = f.pop("file_size", 2048)
    elif kind == "location":
        msg["title"] = f.pop("title", "東京駅")
        msg["address"] = f.pop("address", "東京都千代田区丸の内1丁目")
        msg["latitude"] = f.pop("latitude", 35.681236)
        msg["longitude"] = f.pop("longitude", 139.767125)
    elif kind == "sticker":
        msg["packageId"] = str(f.pop("package_id", "446"))
        msg["stickerId"] = str(f.pop("sticker_id", "1988"))
        msg["stickerResourceType"] = f.pop("sticker_resource_type", "STATIC")
        keywords = f.pop("keywords", None)
        if keywords is not None:
            msg["keywords"] = keywords
    # LINE puts markAsReadToken on user messages; it is what POST /v2/bot/chat/markAsRead takes.
    msg["markAsReadToken"] = f.pop("mark_as_read_token", None) or ids.mark_as_read_token()
    msg.update(f)
    return msg


def build_event(
    kind: str,
    user_id: str | None,
    timestamp: int,
    *,
    mode: str = "active",
    group_id: str | None = None,
    room_id: str | None = None,
    reply_token: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Build one event. ``kind`` is an event type, or a message kind (``text``, ``sticker`` …)
    as a shorthand for a message event; anything unknown becomes an event of that type with
    ``fields`` merged in, to test that the bot stores and ignores unknown types."""
    source = fields.pop("source", None) or source_for(user_id, group_id, room_id)
    if kind == "message":
        kind = fields.pop("message_type", None) or (fields.get("message") or {}).get("type", "text")
        content = fields.pop("message", None)
        if content is not None:
            fields = {**content, **fields}
            fields.pop("type", None)
    if kind in MESSAGE_KINDS:
        event = base_event("message", source, timestamp, mode)
        event["message"] = message_content(kind, fields)
    else:
        event = base_event(kind, source, timestamp, mode)
        if kind == "follow":
            event["follow"] = {"isUnblocked": bool(fields.pop("is_unblocked", False))}
        elif kind == "postback":
            postback: dict[str, Any] = {"data": fields.pop("data", "")}
            params = fields.pop("params", None)
            if params:
                postback["params"] = params
            event["postback"] = postback
        elif kind in ("memberJoined", "memberLeft"):
            members = fields.pop("members", None) or ([user_id] if user_id else [])
            key = "joined" if kind == "memberJoined" else "left"
            event[key] = {"members": [{"type": "user", "userId": m} for m in members]}
            # Member events come from the group, not from one user speaking in it.
            event["source"].pop("userId", None)
        elif kind in ("join", "leave"):
            event["source"].pop("userId", None)
        elif kind == "accountLink":
            event["link"] = {"result": fields.pop("result", "ok"), "nonce": fields.pop("nonce", "nonce")}
        elif kind == "membership":
            event["membership"] = {
                "type": fields.pop("membership_type", "joined"),
                "membershipId": fields.pop("membership_id", 1),
            }
        elif kind == "unsend":
            event["unsend"] = {"messageId": str(fields.pop("message_id", ids.message_id()))}
        elif kind == "videoPlayComplete":
            event["videoPlayComplete"] = {"trackingId": fields.pop("tracking_id", "track-1")}
        elif kind == "beacon":
            beacon = {"hwid": fields.pop("hwid", "d41d8cd98f"), "type": fields.pop("beacon_type", "enter")}
            dm = fields.pop("dm", None)
            if dm is not None:
                beacon["dm"] = dm
            event["beacon"] = beacon
        event.update(fields)
    if wants_reply_token(event):
        event["replyToken"] = reply_token or ids.reply_token()
    return event


def wants_reply_token(event: dict[str, Any]) -> bool:
    if event.get("mode", "active") != "active" or event.get("type") not in REPLYABLE_TYPES:
        return False
    if event["type"] == "accountLink":
        return (event.get("link") or {}).get("result") == "ok"
    return True
