"""The emulator's state and its Python interface (what tests and `make run` call)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from aiohttp import web

from . import events as ev
from . import ids, images, webhook
from .faults import FaultPlan
from .ratelimit import RateLimiter
from .state import (
    AcceptedRetryKey,
    Delivered,
    ReplyToken,
    RequestLog,
    RichMenu,
    Send,
    TimelineItem,
    User,
    Via,
    WebhookResult,
)

# Message objects that can later be quoted; LINE returns a quoteToken for these only.
QUOTABLE = frozenset({"text", "textV2", "sticker", "image", "video"})


class Emulator:
    """A stand-in for the LINE platform: Messaging API, webhook sender and a chat page.

    All state is in memory. ``clock`` returns seconds and may be replaced in tests to move
    time (reply-token expiry, retry-key memory, rate-limit refill all read it).
    """

    def __init__(
        self,
        channel_secret: str,
        access_token: str,
        webhook_url: str | None = None,
        *,
        bot_user_id: str | None = None,
        bot_display_name: str = "Kizuna ショップ",
        basic_id: str = "@kizuna",
        clock: Callable[[], float] | None = None,
        reply_token_ttl: float = 60.0,
        webhook_timeout: float = 2.0,
        login_channel_id: str = "2000000000",
        login_channel_secret: str = "emulator-login-channel-secret",
    ) -> None:
        self.channel_secret = channel_secret
        self.access_token = access_token
        self.webhook_url = webhook_url
        self.webhook_active = True
        # LINE gives a bot about 2 s to answer before it records a timeout; so does the
        # emulator (WebhookResult.status 0), to catch bots that work before answering.
        self.webhook_timeout = webhook_timeout
        self.bot_user_id = bot_user_id or ids.user_id()
        self.bot_display_name = bot_display_name
        self.basic_id = basic_id
        # LINE Login (login.py): the channel whose consent screen offers to add this account.
        self.login_channel_id = login_channel_id
        self.login_channel_secret = login_channel_secret
        self.login: Any = None  # login.LoginApi, set by create_app: its codes and tokens
        self.clock: Callable[[], float] = clock or time.time
        # LINE: about one minute for a fresh token, 20 minutes for a redelivered event's token.
        self.reply_token_ttl = reply_token_ttl
        self.redelivered_reply_token_ttl = 20 * 60.0
        self.retry_key_ttl = 24 * 3600.0
        self.quota_limit: int | None = None
        self.quota_used = 0
        self.max_body_bytes = 2 * 1024 * 1024
        # None keeps every request; long benchmark runs set a bound to cap memory.
        self.request_log_limit: int | None = None

        self.users: dict[str, User] = {}
        self.requests: list[RequestLog] = []
        self.faults = FaultPlan()
        self.rate_limiter = RateLimiter(lambda: self.clock())
        self.rich_menus: dict[str, RichMenu] = {}
        self.rich_menu_aliases: dict[str, str] = {}
        self.default_rich_menu_id: str | None = None
        self.narrowcasts: dict[str, dict[str, Any]] = {}
        self.read_marks: list[tuple[str, float]] = []
        self.loading_animations: list[tuple[str, int, float]] = []

        # Every accepted push/multicast/broadcast/narrowcast, in order: the record of what LINE
        # accepted, for the chat page, insight figures and the benchmarks' duplicate count.
        self.sends: list[Send] = []
        self.sends_by_request: dict[str, Send] = {}
        self._message_index: dict[str, tuple[Send, int]] = {}
        # A chat's timeline holds its own items and, for sends, a reference to the Send. A
        # user's is on the User (User.timeline); groups, rooms and unknown ids are here.
        self._timeline: dict[str, list[TimelineItem | Send]] = {}
        self._replied_messages = 0
        # Seeded, so a benchmark's narrowcast sample (limit.max) is the same run after run.
        self.random = random.Random(0)
        # Aggregation units used per month (JST "YYYYMM" -> names in first-use order) and the
        # insight rules (insight.py).
        self.units_by_month: dict[str, dict[str, None]] = {}
        self.max_units_per_month = 1000
        self.insight_min_users = 20
        # Audiences (audience.py) and narrowcast (narrowcast.py).
        self.audiences: dict[int, Any] = {}
        self.audience_ready_seconds = 0.05  # an upload is IN_PROGRESS this long, then READY
        self.narrowcast_min_audience = 50  # LINE fails a narrowcast whose audience is smaller
        self.narrowcast_wait_seconds = 0.05  # how long a narrowcast stays "waiting"
        self.narrowcast_chunk = 5000  # recipients sent between two yields to the event loop
        self._seq = 0
        self._reply_tokens: dict[str, ReplyToken] = {}
        self._retry_keys: dict[str, AcceptedRetryKey] = {}
        self._mark_as_read_tokens: dict[str, str] = {}
        self._contents: dict[str, tuple[bytes, str]] = {}
        self._last_timestamp = 0
        self._condition: asyncio.Condition | None = None
        self._condition_loop: asyncio.AbstractEventLoop | None = None
        self._sessions: list[aiohttp.ClientSession] = []
        self._background: set[asyncio.Future[Any]] = set()

    # --- the aiohttp application --------------------------------------------------------------

    def create_app(self) -> web.Application:
        """The Messaging API under ``/v2/bot/...``, the chat page at ``/``, its JSON API under
        ``/api/...``. Works standalone or mounted with ``add_subapp``."""
        from . import api, audience, chat, login, richmenu

        app = web.Application()
        app[EMULATOR_KEY] = self
        app.cleanup_ctx.append(self._client_session)
        api.add_routes(app, self)
        audience.add_routes(app, self)
        richmenu.add_routes(app, self)
        chat.add_routes(app, self)
        login.add_routes(app, self)
        api.add_fallback(app, self)
        return app

    async def _client_session(self, app: web.Application):  # noqa: ANN202 - aiohttp cleanup ctx
        # The session that sends webhooks lives exactly as long as the app.
        session = aiohttp.ClientSession()
        self._sessions.append(session)
        try:
            yield
        finally:
            # Requests still held by delay_next() end with the app instead of leaking.
            pending = list(self._background)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._sessions.remove(session)
            await session.close()

    # --- users -----------------------------------------------------------------------------

    def add_user(
        self,
        display_name: str,
        user_id: str | None = None,
        picture_url: str | None = None,
        language: str | None = "ja",
        *,
        status_message: str | None = None,
        followed: bool = False,
        gender: str | None = None,
        age: int | None = None,
        area: str | None = None,
        app_type: str | None = None,
    ) -> User:
        """Create a LINE user. ``followed=True`` makes them a friend without sending a follow
        event (bulk set-up for benchmarks); normally call :meth:`follow`. ``gender``, ``age``,
        ``area`` (e.g. "jp_13") and ``app_type`` are what narrowcast filters can match."""
        uid = user_id or ids.user_id()
        if not ids.USER_ID_RE.match(uid):
            raise ValueError(f"a LINE user id is 'U' + 32 hex digits, got {uid!r}")
        if uid in self.users:
            raise ValueError(f"user {uid} already exists")
        user = User(uid, display_name, picture_url, status_message, language, followed=followed,
                    gender=gender, age=age, area=area, app_type=app_type,
                    followed_at=self.clock() if followed else None)
        # A chat sent to before the user was known (a push to their id) stays theirs.
        user.timeline = self._timeline.pop(uid, None)
        self.users[uid] = user
        return user

    def get_user(self, user_id: str) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise KeyError(f"unknown emulator user {user_id}") from None

    # --- events the user sends -------------------------------------------------------------

    def now_ms(self) -> int:
        # Strictly increasing, so two events of one user never share a timestamp.
        ts = max(int(self.clock() * 1000), self._last_timestamp + 1)
        self._last_timestamp = ts
        return ts

    def make_event(self, kind: str, user_id: str | None, **fields: Any) -> dict[str, Any]:
        """Build (not send) an event. ``kind``: a message kind (text, image, video, audio, file,
        location, sticker), an event type (follow, unfollow, postback, join, leave,
        memberJoined, memberLeft, accountLink, membership, unsend, videoPlayComplete, beacon)
        or any other string for an unknown event type."""
        timestamp = fields.pop("timestamp", None) or self.now_ms()
        return ev.build_event(kind, user_id, timestamp, **fields)

    async def follow(self, user_id: str, is_unblocked: bool = False) -> WebhookResult:
        return await self.send_events([self.make_event("follow", user_id, is_unblocked=is_unblocked)])

    async def unfollow(self, user_id: str) -> WebhookResult:
        return await self.send_events([self.make_event("unfollow", user_id)])

    async def send_text(self, user_id: str, text: str, **fields: Any) -> WebhookResult:
        return await self.send_events([self.make_event("text", user_id, text=text, **fields)])

    async def send_sticker(
        self, user_id: str, package_id: str = "446", sticker_id: str = "1988", **fields: Any
    ) -> WebhookResult:
        event = self.make_event("sticker", user_id, package_id=package_id, sticker_id=sticker_id, **fields)
        return await self.send_events([event])

    async def send_image(self, user_id: str, **fields: Any) -> WebhookResult:
        return await self.send_events([self.make_event("image", user_id, **fields)])

    async def send_location(
        self,
        user_id: str,
        title: str = "東京駅",
        address: str = "東京都千代田区丸の内1丁目",
        latitude: float = 35.681236,
        longitude: float = 139.767125,
    ) -> WebhookResult:
        event = self.make_event(
            "location", user_id, title=title, address=address, latitude=latitude, longitude=longitude
        )
        return await self.send_events([event])

    async def send_postback(
        self,
        user_id: str,
        data: str,
        params: dict[str, Any] | None = None,
        display_text: str | None = None,
    ) -> WebhookResult:
        """A tap on a postback or datetime-picker action. ``display_text`` is what LINE shows
        in the chat as the user's line; it is not sent to the bot as a message."""
        event = self.make_event("postback", user_id, data=data, params=params)
        return await self.send_events([event], display_texts={event["webhookEventId"]: display_text})

    async def send_events(
        self,
        events: Iterable[dict[str, Any]],
        *,
        display_texts: dict[str, str | None] | None = None,
    ) -> WebhookResult:
        """Send any events in one signed request. Missing ``webhookEventId``, ``timestamp``,
        ``mode``, ``deliveryContext`` and (where LINE gives one) ``replyToken`` are filled."""
        filled = [self._fill_defaults(e) for e in events]
        for event in filled:
            self._apply_event(event)
            extra = {}
            if display_texts and display_texts.get(event["webhookEventId"]):
                extra["displayText"] = display_texts[event["webhookEventId"]]
            self._append(ev.chat_id_of(event), "user", kind="event", event=event, data=extra or None)
        await self._changed()
        return await self._post_events(filled)

    async def redeliver(self, event: dict[str, Any]) -> WebhookResult:
        """Send an event again as LINE's redelivery does: same webhookEventId and replyToken,
        ``deliveryContext.isRedelivery`` true."""
        again = copy.deepcopy(event)
        again.setdefault("deliveryContext", {})["isRedelivery"] = True
        if again.get("replyToken"):
            if again["replyToken"] not in self._reply_tokens:
                # An event built by hand and never sent: LINE would know its token.
                self._apply_event(again)
            self._reply_tokens[again["replyToken"]].redelivered = True
        chat_id = ev.chat_id_of(again)
        self._append(chat_id, "system", kind="note", text="イベントを再送しました (redelivery)")
        await self._changed()
        return await self._post_events([again])

    async def post_webhook(
        self, body: bytes, signature: str | None, *, events: Iterable[dict[str, Any]] = ()
    ) -> WebhookResult:
        """POST raw bytes with the given signature header (None: no header). ``events``: the
        well-formed events among those bytes, which LINE itself would have issued: their
        reply tokens (and follow state) become known, as with ``send_events``."""
        if not self.webhook_url:
            return WebhookResult(0, None, b"", [], "no webhook_url set")
        for event in events:
            self._apply_event(event)
        status, response, error = await self._post(body, signature)
        return WebhookResult(status, None, response, [], error)

    def sign(self, body: bytes) -> str:
        return webhook.sign(self.channel_secret, body)

    def _fill_defaults(self, event: dict[str, Any]) -> dict[str, Any]:
        event = dict(event)
        event.setdefault("mode", "active")
        event.setdefault("webhookEventId", ids.webhook_event_id())
        if not event.get("timestamp"):
            event["timestamp"] = self.now_ms()
        event.setdefault("deliveryContext", {"isRedelivery": False})
        if "replyToken" not in event and ev.wants_reply_token(event):
            event["replyToken"] = ids.reply_token()
        return event

    def _apply_event(self, event: dict[str, Any]) -> None:
        """What LINE itself does when a user acts: friendship state, tokens, stored content."""
        user_id = (event.get("source") or {}).get("userId")
        user = self.users.get(user_id or "")
        if user is not None and event.get("source", {}).get("type") == "user":
            if event.get("type") == "follow":
                user.followed, user.blocked = True, False
                user.followed_at = self.clock()
            elif event.get("type") == "unfollow":
                user.followed, user.blocked = False, True
        token = event.get("replyToken")
        if token and token not in self._reply_tokens:
            self._reply_tokens[token] = ReplyToken(
                token, ev.chat_id_of(event), self.clock(), event.get("webhookEventId", "")
            )
        message = event.get("message")
        if event.get("type") == "message" and isinstance(message, dict):
            if message.get("markAsReadToken"):
                self._mark_as_read_tokens[message["markAsReadToken"]] = ev.chat_id_of(event)
            kind = message.get("type")
            if kind == "image" and message.get("id") not in self._contents:
                self._contents[message["id"]] = (images.png(), "image/png")
            elif kind in images.PLACEHOLDER and message.get("id") not in self._contents:
                self._contents[message["id"]] = images.PLACEHOLDER[kind]

    async def _post_events(self, events: list[dict[str, Any]]) -> WebhookResult:
        first = events[0] if events else None
        if not self.webhook_url or not self.webhook_active:
            error = "no webhook_url set" if not self.webhook_url else "webhook is turned off"
            for chat_id in {ev.chat_id_of(e) for e in events}:
                self._append(chat_id, "system", kind="error", text=f"ボットに送れませんでした: {error}")
            await self._changed()
            return WebhookResult(0, first, b"", events, error)
        body = webhook.encode_body(self.bot_user_id, events)
        status, response, error = await self._post(body, self.sign(body))
        if not 200 <= status < 300:
            reason = error or f"HTTP {status}"
            for chat_id in {ev.chat_id_of(e) for e in events}:
                self._append(chat_id, "system", kind="error",
                             text=f"ボットへの Webhook 送信に失敗しました ({reason})")
            await self._changed()
        return WebhookResult(status, first, response, events, error)

    async def _post(self, body: bytes, signature: str | None) -> tuple[int, bytes, str | None]:
        assert self.webhook_url is not None
        if self._sessions:
            return await webhook.post(self._sessions[-1], self.webhook_url, body, signature,
                                      self.webhook_timeout)
        # Used outside a running app (a test driving the bot directly): a short-lived session.
        async with aiohttp.ClientSession() as session:
            return await webhook.post(session, self.webhook_url, body, signature, self.webhook_timeout)

    # --- what the bot sent -----------------------------------------------------------------

    def messages_to(self, user_id: str) -> list[Delivered]:
        """Every message object the bot sent to this chat, in order (undelivered ones too)."""
        out: list[Delivered] = []
        for entry in self._entries(user_id):
            if isinstance(entry, Send):
                out.extend(entry.delivered_to(user_id))
            elif entry.delivered is not None:
                out.append(entry.delivered)
        return out

    def _entries(self, chat_id: str) -> list[TimelineItem | Send]:
        user = self.users.get(chat_id)
        if user is not None:
            return user.timeline or []
        return self._timeline.get(chat_id, [])

    def _message_count(self, chat_id: str) -> int:
        return sum(
            len(entry.messages) if isinstance(entry, Send) else entry.delivered is not None
            for entry in self._entries(chat_id)
        )

    async def wait_for_messages(self, user_id: str, count: int, timeout: float = 5.0) -> list[Delivered]:
        """Wait until at least ``count`` messages were sent to ``user_id``; returns all of them.
        Raises TimeoutError naming what did arrive."""
        condition = self._cond()
        try:
            async with asyncio.timeout(timeout):
                async with condition:
                    await condition.wait_for(lambda: self._message_count(user_id) >= count)
        except TimeoutError:
            got = self.messages_to(user_id)
            summary = [(d.via, d.message.get("type"), d.message.get("text") or d.message.get("altText"))
                       for d in got]
            raise TimeoutError(
                f"waited {timeout:g} s for {count} message(s) to {user_id}; {len(got)} arrived: {summary}"
            ) from None
        return self.messages_to(user_id)

    def _cond(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._condition is None or self._condition_loop is not loop:
            self._condition = asyncio.Condition()
            self._condition_loop = loop
        return self._condition

    async def _changed(self) -> None:
        condition = self._cond()
        async with condition:
            condition.notify_all()

    def deliver(
        self,
        chat_id: str,
        message: dict[str, Any],
        via: Via,
        request_id: str,
        retry_key: str | None,
    ) -> Delivered:
        """Record one message object sent to one chat (replies; sends go through new_send)."""
        user = self.users.get(chat_id)
        if not chat_id.startswith("U"):
            delivered = True  # groups and rooms: the emulator keeps no membership
        elif via == "reply":
            # The user is in the chat right now (they just spoke); only a block stops it.
            delivered = user is None or not user.blocked
        else:
            # Pushes reach friends only; LINE accepts the rest and says nothing.
            delivered = user is not None and user.followed and not user.blocked
        kind = message.get("type")
        sent = Delivered(
            message=message,
            via=via,
            request_id=request_id,
            retry_key=retry_key,
            delivered=delivered,
            at=self.clock(),
            chat_id=chat_id,
            message_id=ids.message_id(),
            quote_token=ids.quote_token() if kind in QUOTABLE else None,
        )
        self._append(chat_id, "bot", kind="message", delivered=sent)
        self._replied_messages += 1
        return sent

    def message_total(self) -> int:
        """Message objects sent to chats so far (replies and every recipient of every send)."""
        return self._replied_messages + sum(len(s.recipients) * len(s.messages) for s in self.sends)

    def new_send(
        self,
        via: Via,
        messages: list[dict[str, Any]],
        request_id: str,
        retry_key: str | None,
        *,
        unit: str | None = None,
        quotable: bool = False,
    ) -> Send:
        """Record an accepted sending request once; add recipients with :meth:`deliver_send`."""
        send = Send(
            request_id=request_id,
            via=via,
            messages=messages,
            retry_key=retry_key,
            at=self.clock(),
            fingerprint=fingerprint(messages),
            seq_base=self._seq + 1,
            message_ids=[ids.message_id() for _ in messages],
            # LINE returns quote tokens for push only (multicast and the others return {}).
            quote_tokens=[ids.quote_token() if quotable and m.get("type") in QUOTABLE else None for m in messages],
            unit=unit,
        )
        self._seq += len(messages)
        self.sends.append(send)
        self.sends_by_request[request_id] = send
        for i, message_id in enumerate(send.message_ids):
            self._message_index[message_id] = (send, i)
        return send

    def deliver_send(self, send: Send, recipients: Iterable[str]) -> None:
        """Hand ``send`` to each recipient. This is the per-recipient cost of every multicast,
        so it does as little as it can: one lookup, one friendship check, one list append."""
        users = self.users
        timelines = self._timeline
        accepted = send.recipients
        for chat_id in recipients:
            user = users.get(chat_id)
            if user is None:
                reached = chat_id[:1] != "U"  # groups and rooms: the emulator keeps no membership
            else:
                chat_id = user.user_id  # share the one string the emulator already holds
                reached = user.followed and not user.blocked  # else LINE accepts and says nothing
            if not reached:
                if send.undelivered is None:
                    send.undelivered = set()
                send.undelivered.add(chat_id)
            accepted.append(chat_id)
            if user is None:
                timelines.setdefault(chat_id, []).append(send)
            elif user.timeline is None:
                user.timeline = [send]
            else:
                user.timeline.append(send)

    # --- what the user does with a message (insight) ---------------------------------------

    def open(self, user_id: str, message: Delivered | str | None = None) -> None:
        """The user saw a message: a Delivered, a message id, or (None) the latest send to them.
        Counts an impression for the send's aggregation unit or request (insight.py)."""
        from . import insight

        send, index = self._find_send(user_id, message)
        insight.record_open(self, user_id, send, index)

    def click(self, user_id: str, url: str, message: Delivered | str | None = None) -> None:
        """The user tapped a link to ``url`` in a message (default: the latest send to them that
        has that link)."""
        from . import insight

        if message is None:
            for entry in reversed(self._entries(user_id)):
                if isinstance(entry, Send):
                    for i, m in enumerate(entry.messages):
                        if url in insight.urls_in(m):
                            insight.record_click(self, user_id, entry, i, url)
                            return
            raise LookupError(f"no message sent to {user_id} has a link to {url}")
        send, index = self._find_send(user_id, message)
        insight.record_click(self, user_id, send, index or 0, url)

    def _find_send(self, user_id: str, message: Delivered | str | None) -> tuple[Send, int | None]:
        if message is None:
            for entry in reversed(self._entries(user_id)):
                if isinstance(entry, Send):
                    return entry, None
            raise LookupError(f"nothing was sent to {user_id}")
        message_id = message if isinstance(message, str) else message.message_id
        found = self._message_index.get(message_id)
        if found is None:
            raise LookupError(f"message {message_id} was not sent by push, multicast, narrowcast or broadcast")
        return found

    def message_sent(self, message_id: str) -> tuple[Send, int] | None:
        """The send that carried a message id, and the message's index in it."""
        return self._message_index.get(message_id)

    # --- timeline for the chat page --------------------------------------------------------

    def _append(self, chat_id: str, side: str, **fields: Any) -> TimelineItem:
        self._seq += 1
        item = TimelineItem(self._seq, chat_id, side, self.clock(), **fields)  # type: ignore[arg-type]
        user = self.users.get(chat_id)
        if user is None:
            self._timeline.setdefault(chat_id, []).append(item)
        elif user.timeline is None:
            user.timeline = [item]
        else:
            user.timeline.append(item)
        return item

    def timeline(self, chat_id: str, after: int = 0) -> list[TimelineItem]:
        entries = self._entries(chat_id)
        # Entries are appended with increasing seq: skip the old ones from the end backwards.
        start = len(entries)
        while start > 0 and _last_seq(entries[start - 1]) > after:
            start -= 1
        items: list[TimelineItem] = []
        for entry in entries[start:]:
            if isinstance(entry, Send):
                items.extend(item for item in entry.timeline_items(chat_id) if item.seq > after)
            else:
                items.append(entry)
        return items

    @property
    def last_seq(self) -> int:
        return self._seq

    # --- reply tokens, retry keys, quota ---------------------------------------------------

    def use_reply_token(self, token: str) -> ReplyToken | None:
        """Spend a reply token if it is valid now; None if unknown, used or expired."""
        entry = self._reply_tokens.get(token)
        if entry is None or entry.used or entry.expired:
            return None
        ttl = self.redelivered_reply_token_ttl if entry.redelivered else self.reply_token_ttl
        if self.clock() - entry.issued_at > ttl:
            return None
        entry.used = True
        return entry

    def expire_reply_tokens(self) -> None:
        for entry in self._reply_tokens.values():
            entry.expired = True

    def accepted_retry_key(self, key: str) -> AcceptedRetryKey | None:
        entry = self._retry_keys.get(key)
        if entry is not None and self.clock() - entry.accepted_at > self.retry_key_ttl:
            # LINE forgets a key after 24 hours: a retry then is executed again.
            del self._retry_keys[key]
            return None
        return entry

    def accept_retry_key(self, key: str, endpoint: str, request_id: str,
                         sent_messages: list[dict[str, Any]] | None) -> None:
        self._retry_keys[key] = AcceptedRetryKey(key, endpoint, request_id, self.clock(), sent_messages)

    def quota_allows(self, recipients: int) -> bool:
        return self.quota_limit is None or self.quota_used + recipients <= self.quota_limit

    # --- fault injection and limits --------------------------------------------------------

    def fail_next(
        self,
        endpoint: str,
        status: int = 500,
        count: int = 1,
        body: Any = None,
        *,
        after_executing: bool = False,
    ) -> None:
        """Answer the next ``count`` requests to ``endpoint`` with ``status``. By default the
        request is not executed; ``after_executing=True`` executes it first (message
        delivered, token spent, retry key accepted) and then answers the error."""
        self.faults.fail_next(endpoint, status, count, body, after_executing)

    def delay_next(self, endpoint: str, seconds: float, count: int = 1, *, after_executing: bool = False) -> None:
        """Hold the next ``count`` requests to ``endpoint`` for ``seconds`` before executing them
        (or, with ``after_executing=True``, after executing and before answering)."""
        self.faults.delay_next(endpoint, seconds, count, after_executing)

    def set_rate_limit(self, endpoint: str, per_second: float, burst: float | None = None) -> None:
        self.rate_limiter.set_limit(endpoint, per_second, burst)

    # --- request log, content, misc --------------------------------------------------------

    def log_request(self, entry: RequestLog) -> None:
        self.requests.append(entry)
        limit = self.request_log_limit
        if limit is not None and len(self.requests) > limit + limit // 10:
            del self.requests[: len(self.requests) - limit]

    def requests_to(self, endpoint: str) -> list[RequestLog]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def content_of(self, message_id: str) -> tuple[bytes, str] | None:
        return self._contents.get(message_id)

    def mark_read(self, token: str) -> str | None:
        chat_id = self._mark_as_read_tokens.pop(token, None)
        if chat_id is not None:
            self.read_marks.append((chat_id, self.clock()))
            self._append(chat_id, "system", kind="read", text="既読")
        return chat_id

    def rich_menu_for(self, user_id: str) -> RichMenu | None:
        user = self.users.get(user_id)
        menu_id = (user.rich_menu_id if user else None) or self.default_rich_menu_id
        return self.rich_menus.get(menu_id) if menu_id else None


def fingerprint(messages: list[dict[str, Any]]) -> str:
    """Identifies a request's content: two sends with the same fingerprint carry the same
    messages, so one user counted twice under it received the same campaign twice."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _last_seq(entry: TimelineItem | Send) -> int:
    return entry.last_seq if isinstance(entry, Send) else entry.seq


# Where create_app() keeps the emulator, for code that only has the app.
EMULATOR_KEY = web.AppKey("kizuna_emulator", Emulator)
