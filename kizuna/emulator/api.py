"""Messaging API routes (``/v2/bot/...``) with LINE's authentication, limits and answers.

Every route goes through :func:`endpoint`, which does what LINE does around any API call, in
this order: a fresh ``x-line-request-id``; bearer authentication (401); the body size limit
(413); injected faults and delays; the per-endpoint rate limit (429); the retry-key header
(only on push, multicast, narrowcast and broadcast); then the handler; and finally a log entry
in ``emulator.requests``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict

from . import ids, insight, validation, webhook
from .state import RequestLog

if TYPE_CHECKING:
    from .core import Emulator

log = logging.getLogger(__name__)

RETRY_KEY_ENDPOINTS = frozenset({"push", "multicast", "narrowcast", "broadcast"})
AUTH_FAILED = "Authentication failed. Confirm that the access token in the authorization header is valid."
RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
QUOTA_EXCEEDED = "You have reached your monthly limit."
INVALID_TO = "The property, 'to', in the request body is invalid (line: -, column: -)"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message}
        if details:
            self.body["details"] = details
        if extra:
            self.body.update(extra)
        self.headers = headers or {}


def validation_error(details: list[dict[str, str]]) -> ApiError:
    return ApiError(400, f"The request body has {len(details)} error(s)", details=details)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        body, status=status, headers=headers, dumps=lambda o: json.dumps(o, ensure_ascii=False)
    )


_NO_BODY = object()


@dataclass(slots=True)
class Call:
    """One Messaging API request as a handler sees it."""

    request: web.Request
    emu: Emulator
    endpoint: str
    request_id: str
    raw: bytes = b""
    parsed: Any = _NO_BODY
    parse_error: str | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if self.parse_error is not None:
            raise ApiError(400, self.parse_error)
        if self.parsed is _NO_BODY:
            raise ApiError(400, "The request body is empty")
        return self.parsed

    def json_object(self) -> dict[str, Any]:
        body = self.json()
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object")
        return body

    @property
    def retry_key(self) -> str | None:
        return self.request.headers.get("X-Line-Retry-Key")


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


def relative_path(request: web.Request) -> str:
    # Log the path as LINE knows it, also when the emulator is mounted under a prefix.
    path = request.path
    i = path.find("/v2/")
    return path[i:] if i >= 0 else path


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the body ourselves: a parent app's client_max_size must not decide LINE's limit."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "Request Entity Too Large")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "Request Entity Too Large")
        chunks.append(chunk)
    return b"".join(chunks)


def endpoint(
    emu: Emulator, name: str, handler: Handler, *, auth: bool = True, streams_body: bool = False
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``streams_body``: the handler reads the body itself (multipart uploads far above the
    2 MB of a JSON request)."""

    async def run(request: web.Request) -> web.StreamResponse:
        # LINE goes on with a request whose client hung up (that is what makes a timed-out
        # push possibly delivered), so the work runs in its own task, shielded from the
        # cancellation aiohttp may apply to the handler when the connection drops.
        task = asyncio.ensure_future(process(request))
        emu._background.add(task)
        task.add_done_callback(emu._background.discard)
        return await asyncio.shield(task)

    async def process(request: web.Request) -> web.StreamResponse:
        call = Call(request, emu, name, ids.request_id())
        failure = None
        try:
            if auth and not _authorized(request, emu.access_token):
                raise ApiError(401, AUTH_FAILED)
            if request.can_read_body and not streams_body:
                call.raw = await read_body(request, emu.max_body_bytes)
                _parse(call)
            delay = emu.faults.take_delay(name)
            failure = emu.faults.take_failure(name) or emu.faults.draw(name)
            if delay is not None and not delay.after_executing:
                await asyncio.sleep(delay.seconds)
            if failure is not None and not failure.after_executing:
                raise _injected(failure)
            if not emu.rate_limiter.allow(name):
                raise ApiError(429, RATE_LIMITED)
            key = call.retry_key
            if key is not None:
                if name not in RETRY_KEY_ENDPOINTS:
                    raise ApiError(400, "X-Line-Retry-Key is not supported for this endpoint")
                if not ids.is_uuid(key):
                    raise ApiError(400, "The value of X-Line-Retry-Key must be a UUID")
            response = await handler(call)
            if failure is not None and failure.after_executing and response.status < 300:
                # Executed, but the caller is told it failed: "the response was lost".
                raise _injected(failure)
            if delay is not None and delay.after_executing:
                await asyncio.sleep(delay.seconds)
        except ApiError as exc:
            response = json_response(exc.body, exc.status, exc.headers)
        except ConnectionResetError:
            # The client went away before its body arrived (a killed bot): nothing reached LINE.
            log.info("emulator: %s request abandoned by the client before its body arrived", name)
            response = json_response({"message": "client closed the connection"}, 400)
        except Exception:  # an emulator bug must still answer like a server, and be visible
            log.exception("emulator handler %s failed", name)
            response = json_response({"message": "Internal server error"}, 500)
        response.headers["x-line-request-id"] = call.request_id
        for k, v in call.response_headers.items():
            response.headers.setdefault(k, v)
        emu.log_request(
            RequestLog(
                method=request.method,
                path=relative_path(request),
                status=response.status,
                headers=CIMultiDict(request.headers),  # case-insensitive .get()
                json=call.parsed if call.parsed is not _NO_BODY else None,
                request_id=call.request_id,
                at=emu.clock(),
                endpoint=name,
            )
        )
        await emu._changed()
        return response

    return run


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def _parse(call: Call) -> None:
    ctype = call.request.content_type
    if not call.raw or "json" not in ctype:
        return
    try:
        call.parsed = json.loads(call.raw)
    except (ValueError, UnicodeDecodeError) as exc:
        call.parse_error = f"The request body could not be parsed as JSON ({exc})"


def _injected(failure: Any) -> ApiError:
    body = failure.body if failure.body is not None else {"message": "Internal server error (injected)"}
    if isinstance(body, dict):
        err = ApiError(failure.status, str(body.get("message", "")))
        err.body = dict(body)
        return err
    return ApiError(failure.status, str(body))


# --- helpers used by several handlers -------------------------------------------------------


def require_valid(details: list[dict[str, str]]) -> None:
    if details:
        raise validation_error(details)


def check_retry_key(call: Call) -> None:
    """A key already accepted within 24 h: 409, pointing at the original request."""
    key = call.retry_key
    if key is None:
        return
    accepted = call.emu.accepted_retry_key(key)
    if accepted is None:
        return
    extra = {"sentMessages": accepted.sent_messages} if accepted.sent_messages else None
    raise ApiError(
        409,
        "The retry key is already accepted",
        extra=extra,
        headers={"x-line-accepted-request-id": accepted.request_id},
    )


def charge_quota(call: Call, recipients: int) -> None:
    if not call.emu.quota_allows(recipients):
        raise ApiError(429, QUOTA_EXCEEDED)
    call.emu.quota_used += recipients


def send(call: Call, chat_id: str, messages: list[dict[str, Any]], via: str) -> list[dict[str, Any]]:
    """Deliver a reply (one chat, one record per message object)."""
    sent = []
    for message in messages:
        d = call.emu.deliver(chat_id, message, via, call.request_id, call.retry_key)  # type: ignore[arg-type]
        item = {"id": d.message_id}
        if d.quote_token:
            item["quoteToken"] = d.quote_token
        sent.append(item)
    return sent


def followers(emu: Emulator) -> list[str]:
    return [u.user_id for u in emu.users.values() if u.followed and not u.blocked]


def is_chat_id(value: Any) -> bool:
    return isinstance(value, str) and bool(
        ids.USER_ID_RE.match(value) or ids.GROUP_ID_RE.match(value) or ids.ROOM_ID_RE.match(value)
    )


# --- messages --------------------------------------------------------------------------------


async def reply(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    errors.string(body, "replyToken", "")
    details = errors.details + validation.validate_messages(body.get("messages"))
    require_valid(details)
    token = call.emu.use_reply_token(body["replyToken"])
    if token is None:
        raise ApiError(400, "Invalid reply token")
    sent = send(call, token.chat_id, body["messages"], "reply")
    return json_response({"sentMessages": sent})


async def push(call: Call) -> web.Response:
    check_retry_key(call)
    body = call.json_object()
    errors = validation.Errors()
    to = errors.string(body, "to", "")
    unit = insight.validate_units(errors, body)
    details = errors.details + validation.validate_messages(body.get("messages"))
    require_valid(details)
    if not is_chat_id(to):
        raise ApiError(400, INVALID_TO)
    insight.check_unit(call, unit)
    charge_quota(call, 1)
    insight.record_unit(call, unit)
    record = call.emu.new_send("push", body["messages"], call.request_id, call.retry_key, unit=unit, quotable=True)
    call.emu.deliver_send(record, (to,))
    sent = []
    for message_id, quote_token in zip(record.message_ids, record.quote_tokens):
        item = {"id": message_id}
        if quote_token:
            item["quoteToken"] = quote_token
        sent.append(item)
    if call.retry_key:
        call.emu.accept_retry_key(call.retry_key, call.endpoint, call.request_id, sent)
    return json_response({"sentMessages": sent})


async def multicast(call: Call) -> web.Response:
    check_retry_key(call)
    body = call.json_object()
    errors = validation.Errors()
    to = errors.array(body, "to", "", low=1, high=500)
    match = ids.USER_ID_RE.match
    known = call.emu.users  # a known user's id is well-formed: a lookup is cheaper than the regex
    for i, user_id in enumerate(to or ()):
        if not (isinstance(user_id, str) and (user_id in known or match(user_id))):
            # Multicast is for users only: group and room ids are refused here.
            errors.add(f"to[{i}]", "must be a user ID ('U' followed by 32 hex digits)")
    unit = insight.validate_units(errors, body)
    details = errors.details + validation.validate_messages(body.get("messages"))
    require_valid(details)
    assert to is not None
    insight.check_unit(call, unit)
    charge_quota(call, len(to))
    insight.record_unit(call, unit)
    record = call.emu.new_send("multicast", body["messages"], call.request_id, call.retry_key, unit=unit)
    call.emu.deliver_send(record, to)
    # The request log keeps the body: let it share the interned ids instead of a second copy.
    body["to"] = record.recipients
    if call.retry_key:
        call.emu.accept_retry_key(call.retry_key, call.endpoint, call.request_id, None)
    return json_response({})


async def broadcast(call: Call) -> web.Response:
    check_retry_key(call)
    body = call.json_object()
    require_valid(validation.validate_messages(body.get("messages")))
    audience = followers(call.emu)
    charge_quota(call, len(audience))
    record = call.emu.new_send("broadcast", body["messages"], call.request_id, call.retry_key)
    call.emu.deliver_send(record, audience)
    if call.retry_key:
        call.emu.accept_retry_key(call.retry_key, call.endpoint, call.request_id, None)
    return json_response({})


def _iso(seconds: float) -> str:
    import datetime as dt

    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def validate_only(target: str) -> Handler:
    async def handler(call: Call) -> web.Response:
        body = call.json_object()
        require_valid(validation.validate_messages(body.get("messages")))
        return json_response({})

    handler.__name__ = f"validate_{target}"
    return handler


# --- users, chats, account -------------------------------------------------------------------


async def profile(call: Call) -> web.Response:
    user = call.emu.users.get(call.request.match_info["userId"])
    if user is None or user.blocked:
        raise ApiError(404, "Not found")
    out: dict[str, Any] = {"displayName": user.display_name, "userId": user.user_id}
    # Fields the user did not consent to share are absent, not null.
    if user.picture_url:
        out["pictureUrl"] = user.picture_url
    if user.status_message:
        out["statusMessage"] = user.status_message
    if user.language:
        out["language"] = user.language
    return json_response(out)


async def loading_start(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    chat_id = errors.string(body, "chatId", "")
    if chat_id is not None and not ids.USER_ID_RE.match(chat_id):
        errors.add("chatId", "The loading animation can only be shown in one-on-one chats with users")
    seconds = body.get("loadingSeconds", 20)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 5 <= seconds <= 60 or seconds % 5:
        errors.add("loadingSeconds", "must be a multiple of 5 between 5 and 60")
    require_valid(errors.details)
    assert chat_id is not None
    call.emu.loading_animations.append((chat_id, seconds, call.emu.clock()))
    call.emu._append(chat_id, "system", kind="loading", data={"seconds": seconds})
    return json_response({}, 202)


async def mark_as_read_by_token(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    token = errors.string(body, "markAsReadToken", "")
    require_valid(errors.details)
    assert token is not None
    if call.emu.mark_read(token) is None:
        raise ApiError(400, "Invalid markAsReadToken")
    return json_response({})


async def mark_as_read_legacy(call: Call) -> web.Response:
    body = call.json_object()
    chat = body.get("chat") if isinstance(body.get("chat"), dict) else None
    if chat is None or not isinstance(chat.get("userId"), str):
        raise validation_error([{"message": "must be specified", "property": "chat.userId"}])
    return json_response({})


async def quota(call: Call) -> web.Response:
    if call.emu.quota_limit is None:
        return json_response({"type": "none"})
    return json_response({"type": "limited", "value": call.emu.quota_limit})


async def quota_consumption(call: Call) -> web.Response:
    return json_response({"totalUsage": call.emu.quota_used})


async def bot_info(call: Call) -> web.Response:
    emu = call.emu
    return json_response({
        "userId": emu.bot_user_id,
        "basicId": emu.basic_id,
        "displayName": emu.bot_display_name,
        "chatMode": "chat",
        "markAsReadMode": "manual",
    })


FOLLOWERS_MAX_LIMIT = 1000  # messaging-api.yml: limit default 300, maximum 1000


async def followers_ids(call: Call) -> web.Response:
    # LINE refuses a limit above 1,000 (and, as its membership user-ids endpoint documents,
    # below 1) with 400 rather than clamping it; the wording of its message is not published.
    # `start` is the `next` token of an earlier page (here an offset).
    everyone = followers(call.emu)
    limit = _query_int(call, "limit", 300)
    if limit is None or not 1 <= limit <= FOLLOWERS_MAX_LIMIT:
        raise ApiError(400, f"The value for the 'limit' parameter must be an integer between 1 and {FOLLOWERS_MAX_LIMIT}")
    start = _query_int(call, "start", 0)
    if start is None or start < 0:
        raise ApiError(400, "The value for the 'start' parameter is invalid")
    page = everyone[start : start + limit]
    out: dict[str, Any] = {"userIds": page}
    if start + limit < len(everyone):
        out["next"] = str(start + limit)
    return json_response(out)


def _query_int(call: Call, name: str, default: int) -> int | None:
    """A query parameter as an integer (its default when absent), or None when it is not one."""
    value = call.request.query.get(name)
    if value is None or value == "":
        return default
    return int(value) if _INTEGER.fullmatch(value) else None


_INTEGER = re.compile(r"-?[0-9]{1,18}")


async def message_content(call: Call) -> web.Response:
    found = call.emu.content_of(call.request.match_info["messageId"])
    if found is None:
        raise ApiError(404, "Not found")
    data, content_type = found
    return web.Response(body=data, content_type=content_type)


async def message_content_transcoding(call: Call) -> web.Response:
    if call.emu.content_of(call.request.match_info["messageId"]) is None:
        raise ApiError(404, "Not found")
    return json_response({"status": "succeeded"})


async def webhook_endpoint_get(call: Call) -> web.Response:
    emu = call.emu
    if not emu.webhook_url:
        raise ApiError(404, "Not found")
    return json_response({"endpoint": emu.webhook_url, "active": emu.webhook_active})


async def webhook_endpoint_set(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    url = errors.string(body, "endpoint", "", max_len=500)
    if url is not None and not validation.is_https_url(url):
        errors.add("endpoint", "must be a valid HTTPS URL")
    require_valid(errors.details)
    call.emu.webhook_url = url
    return json_response({})


async def webhook_test(call: Call) -> web.Response:
    body = call.json_object() if call.parsed is not _NO_BODY else {}
    # messaging-api.yml: endpoint is an optional string, maxLength 500, format uri; empty or
    # absent means the channel's own webhook URL.
    errors = validation.Errors()
    endpoint = errors.string(body, "endpoint", "", required=False, min_len=0, max_len=500)
    if endpoint and not validation.is_https_url(endpoint):
        errors.add("endpoint", "must be a valid HTTPS URL")
    require_valid(errors.details)
    url = endpoint or call.emu.webhook_url
    if not url:
        raise ApiError(400, "The webhook URL is not set")
    # LINE's test sends an empty events list: a bot must answer it with 200.
    payload = webhook.encode_body(call.emu.bot_user_id, [])
    saved = call.emu.webhook_url
    call.emu.webhook_url = url
    try:
        status, response, error = await call.emu._post(payload, call.emu.sign(payload))
    finally:
        call.emu.webhook_url = saved
    return json_response({
        "success": 200 <= status < 300,
        "timestamp": _iso(call.emu.clock()),
        "statusCode": status,
        "reason": "OK" if 200 <= status < 300 else (error or "ERROR"),
        "detail": response.decode("utf-8", "replace")[:200] if response else (error or ""),
    })


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/v2/bot/message/reply", "reply", reply),
    ("POST", "/v2/bot/message/push", "push", push),
    ("POST", "/v2/bot/message/multicast", "multicast", multicast),
    ("POST", "/v2/bot/message/broadcast", "broadcast", broadcast),
    ("GET", "/v2/bot/message/aggregation/info", "aggregation_info", insight.aggregation_info),
    ("GET", "/v2/bot/message/aggregation/list", "aggregation_list", insight.aggregation_list),
    ("GET", "/v2/bot/insight/message/event/aggregation", "insight_unit", insight.statistics_per_unit),
    ("GET", "/v2/bot/insight/message/event", "insight_message_event", insight.message_event),
    ("POST", "/v2/bot/message/validate/reply", "validate", validate_only("reply")),
    ("POST", "/v2/bot/message/validate/push", "validate", validate_only("push")),
    ("POST", "/v2/bot/message/validate/multicast", "validate", validate_only("multicast")),
    ("POST", "/v2/bot/message/validate/broadcast", "validate", validate_only("broadcast")),
    ("POST", "/v2/bot/message/validate/narrowcast", "validate", validate_only("narrowcast")),
    ("GET", "/v2/bot/message/quota", "quota", quota),
    ("GET", "/v2/bot/message/quota/consumption", "quota_consumption", quota_consumption),
    ("POST", "/v2/bot/message/markAsRead", "mark_as_read", mark_as_read_legacy),
    ("GET", "/v2/bot/message/{messageId}/content", "content", message_content),
    ("GET", "/v2/bot/message/{messageId}/content/preview", "content", message_content),
    ("GET", "/v2/bot/message/{messageId}/content/transcoding", "content", message_content_transcoding),
    ("GET", "/v2/bot/profile/{userId}", "profile", profile),
    ("POST", "/v2/bot/chat/loading/start", "loading", loading_start),
    ("POST", "/v2/bot/chat/markAsRead", "mark_as_read", mark_as_read_by_token),
    ("GET", "/v2/bot/info", "bot_info", bot_info),
    ("GET", "/v2/bot/followers/ids", "followers", followers_ids),
    ("GET", "/v2/bot/channel/webhook/endpoint", "webhook_endpoint", webhook_endpoint_get),
    ("PUT", "/v2/bot/channel/webhook/endpoint", "webhook_endpoint", webhook_endpoint_set),
    ("POST", "/v2/bot/channel/webhook/test", "webhook_test", webhook_test),
]


def add_routes(app: web.Application, emu: Emulator) -> None:
    from . import narrowcast

    routes = ROUTES + [
        ("POST", "/v2/bot/message/narrowcast", "narrowcast", narrowcast.narrowcast),
        ("GET", "/v2/bot/message/progress/narrowcast", "narrowcast_progress", narrowcast.progress),
    ]
    for method, path, name, handler in routes:
        app.router.add_route(method, path, endpoint(emu, name, handler))


async def _not_found(call: Call) -> web.Response:
    raise ApiError(404, "Not found")


def add_fallback(app: web.Application, emu: Emulator) -> None:
    """Unknown Messaging API paths answer like LINE (404 JSON with a request id)."""
    app.router.add_route("*", "/v2/{tail:.*}", endpoint(emu, "unknown", _not_found, auth=False))
