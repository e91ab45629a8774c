"""Plain records the emulator keeps: users, what the bot sent, requests, tokens, rich menus.

Everything is in memory and owned by one :class:`~kizuna.emulator.Emulator`; tests read these
records directly, the chat page reads them through the JSON API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Via = Literal["reply", "push", "multicast", "broadcast", "narrowcast"]


@dataclass(slots=True)
class User:
    user_id: str
    display_name: str
    picture_url: str | None = None
    status_message: str | None = None
    language: str | None = "ja"
    # A new user is not yet a friend: LINE only delivers to users who followed the account.
    followed: bool = False
    blocked: bool = False
    rich_menu_id: str | None = None
    # Demographics for narrowcast filters. LINE estimates these for its users; the emulator
    # only knows what a test or benchmark gave it, and an unknown attribute never matches.
    gender: str | None = None  # "male" | "female"
    age: int | None = None
    area: str | None = None  # LINE's area codes, e.g. "jp_13" (Tokyo)
    app_type: str | None = None  # "ios" | "android"
    followed_at: float | None = None  # when they last followed (subscriptionPeriod)
    # This user's chat (Emulator.timeline reads it): kept on the user rather than in a dict
    # keyed by id, which saves a lookup per multicast recipient and a dict entry per user.
    timeline: list[Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "display_name": self.display_name,
            "picture_url": self.picture_url,
            "status_message": self.status_message,
            "language": self.language,
            "followed": self.followed,
            "blocked": self.blocked,
        }


@dataclass(slots=True, eq=False)
class Send:
    """One accepted push, multicast, broadcast or narrowcast request.

    Its messages are stored once, however many recipients it has: each recipient's chat only
    holds a reference to this record (see ``Emulator.timeline``), which keeps a 1M-recipient
    campaign at a few bytes per recipient. The timeline seqs ``seq_base ..`` and the message
    ids are shared by every recipient (they are unique within one chat, which is what the
    chat page needs).
    """

    request_id: str
    via: Via
    messages: list[dict[str, Any]]
    retry_key: str | None
    at: float
    fingerprint: str
    seq_base: int
    message_ids: list[str]
    quote_tokens: list[str | None]
    unit: str | None = None
    # Every accepted recipient, in order (a user listed twice is there twice); ids of known
    # users are the User's own string, so a recipient costs one pointer.
    recipients: list[str] = field(default_factory=list)
    # Accepted but not delivered: not a friend, blocked, or unknown to the emulator (None while
    # there is nobody: most sends reach everyone, and a push's empty set would cost 200 bytes).
    undelivered: set[str] | None = None
    # Opens and clicks recorded by the chat page or tests: (kind, user_id, bubble index, url, at).
    interactions: list[tuple[str, str, int, str | None, float]] | None = None

    @property
    def last_seq(self) -> int:
        return self.seq_base + len(self.messages) - 1

    def delivered_to(self, chat_id: str) -> list[Delivered]:
        ok = self.undelivered is None or chat_id not in self.undelivered
        return [
            Delivered(
                message=message, via=self.via, request_id=self.request_id, retry_key=self.retry_key,
                delivered=ok, at=self.at, chat_id=chat_id, message_id=self.message_ids[i],
                quote_token=self.quote_tokens[i],
            )
            for i, message in enumerate(self.messages)
        ]

    def timeline_items(self, chat_id: str) -> list[TimelineItem]:
        return [
            TimelineItem(self.seq_base + i, chat_id, "bot", self.at, kind="message", delivered=d)
            for i, d in enumerate(self.delivered_to(chat_id))
        ]


@dataclass(slots=True)
class Delivered:
    """One message object the bot sent to one chat."""

    message: dict[str, Any]
    via: Via
    request_id: str
    retry_key: str | None
    # False when LINE accepted the request but the user could not get it (blocked, not a friend).
    delivered: bool
    at: float
    chat_id: str = ""
    message_id: str = ""
    quote_token: str | None = None


@dataclass(slots=True)
class RequestLog:
    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    json: Any
    request_id: str
    at: float
    endpoint: str = ""


@dataclass(slots=True)
class WebhookResult:
    """The bot's answer to one webhook POST. ``status`` 0 means no HTTP answer at all."""

    status: int
    event: dict[str, Any] | None
    body: bytes
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(slots=True)
class ReplyToken:
    token: str
    chat_id: str
    issued_at: float
    webhook_event_id: str
    used: bool = False
    # LINE accepts a redelivered event's token for 20 minutes instead of about one.
    redelivered: bool = False
    expired: bool = False


@dataclass(slots=True)
class AcceptedRetryKey:
    key: str
    endpoint: str
    request_id: str
    accepted_at: float
    sent_messages: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class RichMenu:
    rich_menu_id: str
    body: dict[str, Any]
    image: bytes | None = None
    image_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"richMenuId": self.rich_menu_id, **self.body}


@dataclass(slots=True)
class TimelineItem:
    """One line of a chat as the chat page shows it: the user's event, the bot's message, or a
    system note (``kind`` error/note/read/loading)."""

    seq: int
    chat_id: str
    side: Literal["user", "bot", "system"]
    at: float
    kind: str = "event"
    event: dict[str, Any] | None = None
    delivered: Delivered | None = None
    text: str | None = None
    data: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.seq, "side": self.side, "kind": self.kind, "at": self.at}
        if self.event is not None:
            out["event"] = self.event
        if self.delivered is not None:
            d = self.delivered
            out["message"] = d.message
            out["via"] = d.via
            out["delivered"] = d.delivered
            out["message_id"] = d.message_id
        if self.text is not None:
            out["text"] = self.text
        if self.data:
            out.update(self.data)
        return out
