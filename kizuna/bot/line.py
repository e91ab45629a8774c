"""The one way to talk to LINE: a wrapper over line-bot-sdk's AsyncMessagingApi.

Every part of Kizuna sends through `LineClient`; nothing else imports the SDK's API
classes. It honours LINE_FACTS.md:
- push and multicast always carry an X-Line-Retry-Key; 409 means "already sent";
- 429 (rate limit, not the monthly quota), 5xx and timeouts are retried with backoff
  and the same key; other 4xx fail with LINE's reason;
- a reply that surely failed falls back to push; a reply whose outcome is unknown
  (timed out, then refused) is reported as undetermined, never pushed again;
- every response's x-line-request-id is logged with endpoint and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

import aiohttp
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    AsyncMessagingApiBlob,
    Configuration,
    MarkMessagesAsReadByTokenRequest,
    Message,
    PushMessageRequest,
    ReplyMessageRequest,
    ShowLoadingAnimationRequest,
)
from linebot.v3.messaging import CreateRichMenuAliasRequest, NarrowcastRequest, RichMenuRequest, UpdateRichMenuAliasRequest
from linebot.v3 import audience as line_audience
from linebot.v3 import insight as line_insight
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_exponential_jitter

from kizuna.storage.customers import Profile
from kizuna.storage.models import DeliveryStatus

from .ratelimit import LINE_RATE_LIMITS, InProcessRateLimiter, RateLimiter

log = logging.getLogger("kizuna.line")
T = TypeVar("T")

# Requests per second LINE allows per channel, by endpoint (LINE_FACTS.md; ratelimit.py says
# more). The default limiter paces one process; workers share one in Redis (app.line_client_for).
RATE_LIMITS = LINE_RATE_LIMITS


class LineError(Exception):
    """LINE refused a request (4xx other than 429) or stayed unavailable."""

    def __init__(self, status: int | None, message: str, *, details: list | None = None, request_id: str | None = None):
        super().__init__(f"LINE {status}: {message}")
        self.status = status
        self.message = message
        self.details = details or []
        self.request_id = request_id


class LineUnavailable(LineError):
    """429, 5xx or timeouts outlasted the retries: try again later with the same key."""


class _Retryable(Exception):
    def __init__(self, error: LineError):
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Accepted:
    """LINE took a request with a retry key: now (`duplicate` False) or on an earlier attempt (409)."""

    request_id: str | None
    duplicate: bool = False


@dataclass(frozen=True)
class SendResult:
    method: str  # reply | push
    status: DeliveryStatus  # sent | undetermined
    request_id: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    max_seconds: float = 30.0
    initial_wait: float = 0.2
    max_wait: float = 5.0


call_log = logging.getLogger("kizuna.line.calls")


def _log_calls(api_client: Any) -> None:
    """One log line per HTTP request to LINE, retries included: method, path, status and LINE's
    x-line-request-id (what LINE's support asks for; LINE's development guidelines ask to keep
    it). The path only: no query, no headers, so never the channel access token. An aiohttp
    trace on the SDK's own session, so every endpoint is covered, those added later too."""
    trace = aiohttp.TraceConfig()

    async def on_end(_session: Any, _context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        call_log.info("LINE %s %s -> %s x-line-request-id=%s", params.method, params.url.path, params.response.status,
                      params.response.headers.get("x-line-request-id", "-"))

    async def on_error(_session: Any, _context: Any, params: aiohttp.TraceRequestExceptionParams) -> None:
        call_log.info("LINE %s %s -> %s", params.method, params.url.path, type(params.exception).__name__)

    trace.on_request_end.append(on_end)
    trace.on_request_exception.append(on_error)
    trace.freeze()
    # The SDK makes its aiohttp session itself and takes no trace configs: add ours to it.
    api_client.rest_client.pool_manager._trace_configs.append(trace)


class LineClient:
    def __init__(
        self,
        *,
        access_token: str,
        api_base_url: str,
        data_api_base_url: str,
        timeout: float = 10.0,
        pool_size: int = 64,
        retry: RetryPolicy = RetryPolicy(),
        limiter: RateLimiter | None = None,
    ) -> None:
        # One client per host for the app's lifetime. The pool is sized for ~200 req/s
        # at ~100 ms latency plus headroom (the SDK's default is cpu_count*5).
        api_config = Configuration(host=api_base_url, access_token=access_token)
        api_config.connection_pool_maxsize = pool_size
        data_config = Configuration(host=data_api_base_url, access_token=access_token)
        self._api_client = AsyncApiClient(api_config)
        self._data_client = AsyncApiClient(data_config)
        if not _proxy_in_environment():
            # The SDK's aiohttp session trusts the environment, so every request looks up proxy
            # variables and ~/.netrc in a thread: 40 % of a campaign sender's CPU at 1,000 pushes/s
            # (py-spy). Without a proxy configured there is nothing to find: stop looking.
            for client in (self._api_client, self._data_client):
                client.rest_client.pool_manager._trust_env = False
        for client in (self._api_client, self._data_client):
            _log_calls(client)
        self.api = AsyncMessagingApi(self._api_client)
        self.blob = AsyncMessagingApiBlob(self._data_client)
        self.timeout = timeout
        self.retry = retry
        # Paces every request, retries included; with Redis it is shared by all workers.
        self.limiter: RateLimiter = limiter if limiter is not None else InProcessRateLimiter(RATE_LIMITS)
        # A request takes its rate-limit slot only once it can go: at most as many wait for their
        # slot as the pool has connections. A campaign round gathers 800 pushes; when each reserved
        # a slot first and then queued for a connection, the slots ran seconds ahead of the sends
        # and 800 limiter calls at once starved Redis's connections (bench/campaign_send.py).
        self._in_flight = asyncio.Semaphore(pool_size)

    async def close(self) -> None:
        await self._api_client.close()
        await self._data_client.close()

    # -- sending -------------------------------------------------------------

    async def reply(self, reply_token: str, messages: list[dict]) -> str | None:
        request = ReplyMessageRequest.from_dict({"replyToken": reply_token, "messages": messages})
        response = await self._call("reply", lambda: self.api.reply_message_with_http_info(request, _request_timeout=self.timeout))
        return _request_id(response.headers)

    async def push(
        self, to: str, messages: list[dict], *, retry_key: str, custom_aggregation_unit: str | None = None,
        checked: bool = False,
    ) -> Accepted:
        """`custom_aggregation_unit`: LINE's insight counts opens and clicks per unit name
        (1-30 of [a-zA-Z0-9_]; up to 1,000 names a month). `checked`: messages of a shape that
        `check_messages` passed (a campaign's, personalised): sent without the SDK's model
        validation, which was 30 % of a campaign sender's CPU at 1,000 pushes/s (py-spy)."""
        if checked:
            request = PushMessageRequest.construct(
                to=to, messages=[_Checked(message) for message in messages], notification_disabled=False,
                custom_aggregation_units=[custom_aggregation_unit] if custom_aggregation_unit else None)
        else:
            request = PushMessageRequest.from_dict(_with_unit({"to": to, "messages": messages}, custom_aggregation_unit))
        # The request is checked (by its model, or its messages' shape by `check_messages`); the SDK's
        # method would validate its arguments again (pydantic's validate_arguments copies the model:
        # 8 % of a campaign sender's CPU at 1,500 pushes/s, py-spy).
        return await self._accepted("push", lambda: _PUSH_UNVALIDATED(
            self.api, request, x_line_retry_key=retry_key, _request_timeout=self.timeout))

    async def multicast(
        self, to: list[str], messages: list[dict], *, retry_key: str, custom_aggregation_unit: str | None = None
    ) -> Accepted:
        # The SDK's model validates each of up to 500 ids one by one (pydantic v1: 6.5 ms a request,
        # 1.3 s of CPU a second at LINE's 200/s), and serialises them one by one again (a sixth of
        # a campaign sender's CPU with LINE's limits lifted, py-spy): the messages are validated
        # by the models, and the body goes as a plain dict to the method the SDK's argument check
        # wraps (the ids are ours, from the database; LINE checks them anyway).
        check_messages(messages)
        body = _with_unit({"to": list(to), "messages": messages, "notificationDisabled": False}, custom_aggregation_unit)
        return await self._accepted("multicast", lambda: _MULTICAST_UNVALIDATED(
            self.api, body, x_line_retry_key=retry_key, _request_timeout=self.timeout))

    async def _accepted(self, endpoint: str, make_request: Callable[[], Awaitable[Any]]) -> Accepted:
        """A request with a retry key: 409 means an earlier attempt with the key was accepted
        (LINE executed it once): already sent, and counted as a duplicate avoided."""
        try:
            response = await self._call(endpoint, make_request)
        except LineError as error:
            if error.status == 409:
                return Accepted(error.request_id, duplicate=True)
            raise
        return Accepted(_request_id(response.headers))

    async def send(
        self,
        to: str,
        messages: list[dict],
        *,
        retry_key: str,
        reply_token: str | None,
        reply_tried_before: bool,
        before_push: Callable[[], Awaitable[None]] | None = None,
    ) -> SendResult:
        """Reply if the token may still work, push if the reply surely failed.

        `reply_tried_before` says a previous attempt (before a crash or a timeout)
        may have used the token: then a refused token means "maybe delivered", and
        pushing could show the customer the same message twice. `before_push` is
        awaited before a fallback push, so the caller can record that the reply
        surely failed: a retry after a crash then pushes again (same retry key)
        instead of replying a second copy.
        """
        if reply_token:
            try:
                request_id = await self.reply(reply_token, messages)
                return SendResult("reply", DeliveryStatus.SENT, request_id)
            except _ReplyOutcomeUnknown as unknown:
                return SendResult("reply", DeliveryStatus.UNDETERMINED, unknown.request_id, note="reply token refused after an attempt whose outcome is unknown")
            except LineError as error:
                if not _is_invalid_reply_token(error):
                    raise
                if reply_tried_before:
                    return SendResult("reply", DeliveryStatus.UNDETERMINED, error.request_id, note="reply token refused after an earlier attempt")
                log.info("reply token spent or expired; pushing instead to %s", to)
                if before_push is not None:
                    await before_push()
        accepted = await self.push(to, messages, retry_key=retry_key)
        return SendResult("push", DeliveryStatus.SENT, accepted.request_id)

    # -- other endpoints -----------------------------------------------------

    async def get_profile(self, user_id: str) -> Profile | None:
        """The LINE profile, or None when LINE has none for us (blocked, unknown)."""
        try:
            response = await self._call("profile", lambda: self.api.get_profile_with_http_info(user_id, _request_timeout=self.timeout))
        except LineError as error:
            if error.status == 404:
                return None
            raise
        data = response.data
        return Profile(
            display_name=data.display_name,
            picture_url=data.picture_url,
            status_message=data.status_message,
            language=data.language,
        )

    async def show_loading(self, user_id: str, seconds: int = 20) -> None:
        """Best effort: a missing animation must never delay or fail a reply."""
        request = ShowLoadingAnimationRequest(chatId=user_id, loadingSeconds=seconds)
        try:
            await self._call(
                "loading",
                lambda: self.api.show_loading_animation_with_http_info(request, _request_timeout=min(self.timeout, 3.0)),
                retry=False,
            )
        except LineError as error:
            log.info("loading animation not shown: %s", error)

    async def mark_as_read(self, token: str) -> None:
        """Mark the chat read up to the message that carried `token` (its markAsReadToken).
        One attempt: it is a courtesy to the customer, not worth a queue of retries."""
        request = MarkMessagesAsReadByTokenRequest(markAsReadToken=token)
        await self._call(
            "mark_read",
            lambda: self.api.mark_messages_as_read_by_token_with_http_info(request, _request_timeout=min(self.timeout, 5.0)),
            retry=False,
        )

    async def get_message_content(self, message_id: str) -> tuple[bytes, str] | None:
        """What the customer sent (image, video, audio, file) and its content type, from the
        data host; None when LINE has it no more (404: deleted after a while, or never there)."""
        try:
            response = await self._call(
                "content", lambda: self.blob.get_message_content_with_http_info(message_id, _request_timeout=self.timeout)
            )
        except LineError as error:
            if error.status == 404:
                return None
            raise
        content_type = "application/octet-stream"
        for name, value in dict(response.headers or {}).items():
            if name.lower() == "content-type":
                content_type = value.split(";")[0].strip() or content_type
        return bytes(response.data or b""), content_type

    async def get_quota(self) -> dict:
        response = await self._call("quota", lambda: self.api.get_message_quota_with_http_info(_request_timeout=self.timeout))
        return response.data.to_dict()

    async def get_quota_consumption(self) -> int:
        """Pushes counted against this month's quota so far (LINE's figure is approximate)."""
        response = await self._call("quota", lambda: self.api.get_message_quota_consumption_with_http_info(_request_timeout=self.timeout))
        return int(response.data.total_usage)

    # -- the retry loop ------------------------------------------------------

    async def _call(self, endpoint: str, make_request: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            try:
                async with self._in_flight:
                    await self.limiter.acquire(endpoint)
                    response = await make_request()
            except ApiException as exc:
                error = _error_from(exc)
                log.info("LINE %s -> %s request_id=%s", endpoint, error.status, error.request_id)
                if endpoint == "reply" and attempts > 1 and _is_invalid_reply_token(error):
                    raise _ReplyOutcomeUnknown(error.request_id) from None
                if _retryable_status(error):
                    if error.status == 429:
                        # The rate limit: every sender (every worker, with Redis) holds back,
                        # and this request's retry waits for its slot after that.
                        await self.limiter.back_off(endpoint, _retry_after(exc.headers))
                    raise _Retryable(error) from None
                raise error from None
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                log.info("LINE %s -> %s", endpoint, type(exc).__name__)
                raise _Retryable(LineUnavailable(None, f"{type(exc).__name__}: {exc}")) from None
            log.debug("LINE %s -> %s request_id=%s", endpoint, response.status_code, _request_id(response.headers))
            return response

        if not retry:
            try:
                return await attempt()
            except _Retryable as exc:
                raise _as_unavailable(exc.error) from None
        # The first attempt outside tenacity: its loop costs ~14 % of a campaign sender's CPU per
        # request (py-spy at 1,500 pushes/s), and most requests succeed at once. A first attempt
        # that failed becomes the loop's first, so the policy's attempts and waits are unchanged
        # (its time limit counts from the failure).
        try:
            return await attempt()
        except _Retryable as exc:
            first_failure: _Retryable | None = exc
        policy = self.retry
        try:
            async for try_ in AsyncRetrying(
                retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
                stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_seconds),
                wait=wait_exponential_jitter(multiplier=policy.initial_wait, max=policy.max_wait),
                reraise=True,
            ):
                with try_:
                    if first_failure is not None:
                        failure, first_failure = first_failure, None
                        raise failure
                    return await attempt()
        except _Retryable as exc:
            raise _as_unavailable(exc.error) from None
        raise AssertionError("unreachable")

    # -- rich menus (kizuna/bot/richmenu.py sets them up and switches users) -------

    async def create_rich_menu(self, menu: dict) -> str:
        """A new rich menu (no image yet); its id. Not idempotent: a retried request
        whose first answer was lost makes a second menu (richmenu.setup finds it by name)."""
        request = RichMenuRequest.from_dict(menu)
        response = await self._call("richmenu", lambda: self.api.create_rich_menu_with_http_info(request, _request_timeout=self.timeout))
        return response.data.rich_menu_id

    async def upload_rich_menu_image(self, rich_menu_id: str, image: bytes, content_type: str = "image/png") -> None:
        """On the data host; LINE takes one image per menu, never a replacement."""
        await self._call(
            "richmenu",
            lambda: self.blob.set_rich_menu_image_with_http_info(
                rich_menu_id, bytes(image), _headers={"Content-Type": content_type}, _request_timeout=self.timeout
            ),
        )

    async def get_rich_menu_image(self, rich_menu_id: str) -> bytes | None:
        """The menu's image, or None when it has none (or there is no such menu)."""
        try:
            response = await self._call(
                "richmenu", lambda: self.blob.get_rich_menu_image_with_http_info(rich_menu_id, _request_timeout=self.timeout)
            )
        except LineError as error:
            if error.status == 404:
                return None
            raise
        return bytes(response.data) if response.data is not None else None

    async def list_rich_menus(self) -> list[dict]:
        """Every rich menu of the channel made through the API, as LINE's JSON (camelCase)."""
        response = await self._call("richmenu", lambda: self.api.get_rich_menu_list_with_http_info(_request_timeout=self.timeout))
        return [menu.to_dict() for menu in response.data.richmenus]

    async def delete_rich_menu(self, rich_menu_id: str) -> None:
        await self._call("richmenu", lambda: self.api.delete_rich_menu_with_http_info(rich_menu_id, _request_timeout=self.timeout))

    async def set_default_rich_menu(self, rich_menu_id: str) -> None:
        await self._call("richmenu", lambda: self.api.set_default_rich_menu_with_http_info(rich_menu_id, _request_timeout=self.timeout))

    async def get_default_rich_menu_id(self) -> str | None:
        try:
            response = await self._call("richmenu", lambda: self.api.get_default_rich_menu_id_with_http_info(_request_timeout=self.timeout))
        except LineError as error:
            if error.status == 404:
                return None
            raise
        return response.data.rich_menu_id

    async def link_rich_menu(self, user_id: str, rich_menu_id: str) -> None:
        await self._call(
            "richmenu_link", lambda: self.api.link_rich_menu_id_to_user_with_http_info(user_id, rich_menu_id, _request_timeout=self.timeout)
        )

    async def unlink_rich_menu(self, user_id: str) -> None:
        """The user sees the channel's default menu again."""
        await self._call("richmenu_link", lambda: self.api.unlink_rich_menu_id_from_user_with_http_info(user_id, _request_timeout=self.timeout))

    async def get_rich_menu_alias(self, alias: str) -> str | None:
        """The rich menu id the alias points at, or None when there is no such alias."""
        try:
            response = await self._call("richmenu", lambda: self.api.get_rich_menu_alias_with_http_info(alias, _request_timeout=self.timeout))
        except LineError as error:
            if error.status == 404:
                return None
            raise
        return response.data.rich_menu_id

    async def create_rich_menu_alias(self, alias: str, rich_menu_id: str) -> None:
        request = CreateRichMenuAliasRequest(richMenuAliasId=alias, richMenuId=rich_menu_id)
        await self._call("richmenu", lambda: self.api.create_rich_menu_alias_with_http_info(request, _request_timeout=self.timeout))

    async def update_rich_menu_alias(self, alias: str, rich_menu_id: str) -> None:
        request = UpdateRichMenuAliasRequest(richMenuId=rich_menu_id)
        await self._call("richmenu", lambda: self.api.update_rich_menu_alias_with_http_info(alias, request, _request_timeout=self.timeout))

    # -- campaigns: narrowcast, audiences, aggregation units and insight -------

    async def narrowcast(
        self,
        messages: list[dict],
        *,
        retry_key: str,
        recipient: dict | None = None,
        filter: dict | None = None,
        limit: dict | None = None,
    ) -> str:
        """Send to friends matching `recipient` (audiences, and/or/not), `filter` (demographic)
        and `limit` (LINE's JSON objects); LINE answers 202 and sends afterwards. Returns the
        request id to follow with `get_narrowcast_progress`; a retry whose key LINE already
        accepted returns the ORIGINAL request's id (x-line-accepted-request-id), so progress
        is read for the send that really happened."""
        body: dict[str, Any] = {"messages": messages}
        for key, value in (("recipient", recipient), ("filter", filter), ("limit", limit)):
            if value is not None:
                body[key] = value
        request = NarrowcastRequest.from_dict(body)

        async def send() -> Any:
            try:
                return await self.api.narrowcast_with_http_info(request, x_line_retry_key=retry_key, _request_timeout=self.timeout)
            except ApiException as exc:
                accepted = _header(exc.headers, "x-line-accepted-request-id")
                if exc.status == 409 and accepted:
                    return _Accepted(accepted, exc.headers)
                raise

        response = await self._call("narrowcast", send)
        if isinstance(response, _Accepted):
            return response.request_id
        request_id = _request_id(response.headers)
        if request_id is None:
            raise LineError(response.status_code, "LINE accepted the narrowcast without a request id")
        return request_id

    async def get_narrowcast_progress(self, request_id: str) -> dict:
        """`{"phase": waiting|sending|succeeded|failed, "targetCount", "successCount",
        "failureCount", "errorCode", "failedDescription", "acceptedTime", "completedTime"}`
        (what LINE knows so far; LINE's JSON names)."""
        response = await self._call(
            "narrowcast_progress",
            lambda: self.api.get_narrowcast_progress_with_http_info(request_id, _request_timeout=self.timeout),
        )
        return response.data.to_dict()

    async def create_audience(self, description: str, user_ids: list[str], *, upload_description: str | None = None) -> int:
        """An audience of these user ids for narrowcast (LINE builds it asynchronously: wait
        for `get_audience(...)["audienceGroup"]["status"] == "READY"`); its id. Up to 10,000
        ids go as JSON, more as a file on the data host (up to 1,500,000). Not idempotent: a
        retry after a lost answer makes a second audience (delete the spare)."""
        if len(user_ids) <= AUDIENCE_JSON_MAX:
            request = line_audience.CreateAudienceGroupRequest(
                description=description, uploadDescription=upload_description,
                audiences=[line_audience.Audience(id=user_id) for user_id in user_ids],
            )

            async def create() -> Any:
                async with self._audience_client() as client:
                    return await line_audience.AsyncManageAudience(client).create_audience_group_with_http_info(
                        request, _request_timeout=self.timeout
                    )

            response = await self._call("audience", create)
            return response.data.audience_group_id
        with _id_file(user_ids) as path:

            async def create_by_file() -> Any:
                async with self._audience_client(data_host=True) as client:
                    return await line_audience.AsyncManageAudienceBlob(client).create_audience_for_uploading_user_ids_with_http_info(
                        file=path, description=description, upload_description=upload_description,
                        _request_timeout=max(self.timeout, 60.0),
                    )

            response = await self._call("audience", create_by_file)
        return response.data.audience_group_id

    async def add_to_audience(self, audience_group_id: int, user_ids: list[str], *, upload_description: str | None = None) -> None:
        """Add user ids, 10,000 per request as JSON. (Not by file: line-bot-sdk 3.27's async
        add-by-file sends `audienceGroupId` as an int form field, which aiohttp refuses.)"""
        for start in range(0, len(user_ids), AUDIENCE_JSON_MAX):
            request = line_audience.AddAudienceToAudienceGroupRequest(
                audienceGroupId=audience_group_id, uploadDescription=upload_description,
                audiences=[line_audience.Audience(id=user_id) for user_id in user_ids[start : start + AUDIENCE_JSON_MAX]],
            )

            async def add(request: Any = request) -> Any:
                async with self._audience_client() as client:
                    return await line_audience.AsyncManageAudience(client).add_audience_to_audience_group_with_http_info(
                        request, _request_timeout=self.timeout
                    )

            await self._call("audience", add)

    async def get_audience(self, audience_group_id: int) -> dict | None:
        """`{"audienceGroup": {..., "status", "audienceCount"}, "jobs": [...]}`, or None when
        LINE has no such audience (deleted, expired, never made)."""

        async def get() -> Any:
            async with self._audience_client() as client:
                return await line_audience.AsyncManageAudience(client).get_audience_data_with_http_info(
                    audience_group_id, _request_timeout=self.timeout
                )

        try:
            response = await self._call("audience", get)
        except LineError as error:
            if error.status in (400, 404) and "not found" in error.message.lower():
                return None
            raise
        return response.data.to_dict()

    async def delete_audience(self, audience_group_id: int) -> None:
        """Delete an audience; one that is already gone counts as deleted."""

        async def delete() -> Any:
            async with self._audience_client() as client:
                return await line_audience.AsyncManageAudience(client).delete_audience_group_with_http_info(
                    audience_group_id, _request_timeout=self.timeout
                )

        try:
            await self._call("audience", delete)
        except LineError as error:
            if not (error.status in (400, 404) and "not found" in error.message.lower()):
                raise

    async def get_aggregation_unit_usage(self) -> int:
        """How many aggregation unit names this channel used this month (LINE allows 1,000)."""
        response = await self._call(
            "aggregation", lambda: self.api.get_aggregation_unit_usage_with_http_info(_request_timeout=self.timeout)
        )
        return response.data.num_of_custom_aggregation_units

    async def get_aggregation_unit_names(self) -> list[str]:
        """Every aggregation unit name used this month, following LINE's `next` pages."""
        names: list[str] = []
        start: str | None = None
        while True:
            response = await self._call(
                "aggregation",
                lambda start=start: self.api.get_aggregation_unit_name_list_with_http_info(
                    limit="100", start=start, _request_timeout=self.timeout
                ),
            )
            names.extend(response.data.custom_aggregation_units)
            start = response.data.next
            if not start:
                return names

    async def get_statistics_per_unit(self, unit: str, since: dt.date, until: dt.date) -> dict:
        """Opens and clicks of messages sent with `unit` between two dates (JST, at most 30 days
        apart): `{"overview": {"uniqueImpression", "uniqueClick", ...}, "messages": [...],
        "clicks": [...]}` in LINE's names; LINE gives null for figures about fewer than 20 users."""

        async def get() -> Any:
            async with self._insight_client() as client:
                return await line_insight.AsyncInsight(client).get_statistics_per_unit_with_http_info(
                    unit, since.strftime("%Y%m%d"), until.strftime("%Y%m%d"), _request_timeout=self.timeout
                )

        response = await self._call("insight", get)
        return response.data.to_dict()

    async def get_message_event(self, request_id: str) -> dict:
        """Opens and clicks of one narrowcast or broadcast, by its request id."""

        async def get() -> Any:
            async with self._insight_client() as client:
                return await line_insight.AsyncInsight(client).get_message_event_with_http_info(
                    request_id, _request_timeout=self.timeout
                )

        response = await self._call("insight", get)
        return response.data.to_dict()

    @contextlib.asynccontextmanager
    async def _audience_client(self, *, data_host: bool = False) -> Any:
        # The audience and insight SDK modules have API clients (and exception classes) of
        # their own; these calls are rare, so each opens a client for the call. Their errors
        # become the messaging module's ApiException, which `_call` knows how to retry.
        base = (self._data_client if data_host else self._api_client).configuration
        config = line_audience.Configuration(host=base.host, access_token=base.access_token)
        async with line_audience.AsyncApiClient(config) as client:
            _log_calls(client)
            try:
                yield client
            except line_audience.ApiException as exc:
                raise _messaging_exception(exc) from None

    @contextlib.asynccontextmanager
    async def _insight_client(self) -> Any:
        base = self._api_client.configuration
        config = line_insight.Configuration(host=base.host, access_token=base.access_token)
        async with line_insight.AsyncApiClient(config) as client:
            _log_calls(client)
            try:
                yield client
            except line_insight.ApiException as exc:
                raise _messaging_exception(exc) from None

class _ReplyOutcomeUnknown(Exception):
    """A retried reply was refused: the first attempt may have been delivered."""

    def __init__(self, request_id: str | None):
        super().__init__("reply outcome unknown")
        self.request_id = request_id


def _as_unavailable(error: LineError) -> LineUnavailable:
    if isinstance(error, LineUnavailable):
        return error
    return LineUnavailable(error.status, error.message, details=error.details, request_id=error.request_id)


def _retryable_status(error: LineError) -> bool:
    if error.status == 429:
        # Over the monthly quota stays over until next month: retrying only burns time.
        return "monthly limit" not in error.message
    return error.status is not None and error.status >= 500


def _is_invalid_reply_token(error: LineError) -> bool:
    return error.status == 400 and "reply token" in error.message.lower()


def _error_from(exc: ApiException) -> LineError:
    body: Any = exc.body
    message, details = str(exc.reason or ""), []
    if body:
        try:
            parsed = json.loads(body)
            message = parsed.get("message", message)
            details = parsed.get("details", [])
        except (ValueError, AttributeError):
            message = str(body)[:500]
    return LineError(exc.status, message, details=details, request_id=_request_id(exc.headers))


def _proxy_in_environment() -> bool:
    return any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"))


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds (LINE documents none, but honours the HTTP header if it comes)."""
    for name, value in dict(headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None  # an HTTP date: rare enough to fall back to our own back-off
    return None


AUDIENCE_JSON_MAX = 10_000  # ids per JSON audience request (LINE's limit)


@dataclass(frozen=True)
class _Accepted:
    """A narrowcast LINE had accepted before (409): the original request's id. Shaped like
    an SDK response (status_code, headers) for `_call`'s log line."""

    request_id: str
    headers: Any = None
    status_code: int = 409


def _messaging_exception(exc: Any) -> ApiException:
    translated = ApiException(status=exc.status, reason=exc.reason)
    translated.body, translated.headers = exc.body, exc.headers
    return translated


def check_messages(messages: list[dict]) -> None:
    """Validate messages against the SDK's models (ValueError when they do not fit): once for a
    shape that is then pushed to many customers with `push(checked=True)`."""
    for message in messages:
        Message.from_dict(message)


# The SDK's methods behind their pydantic `validate_arguments` (which keeps them as `raw_function`).
_PUSH_UNVALIDATED = AsyncMessagingApi.push_message_with_http_info.raw_function
_MULTICAST_UNVALIDATED = AsyncMessagingApi.multicast_with_http_info.raw_function


class _Checked:
    """A message `check_messages` passed, serialised as it is (the SDK calls `to_dict`)."""

    __slots__ = ("body",)

    def __init__(self, body: dict) -> None:
        self.body = body

    def to_dict(self) -> dict:
        return self.body


def _with_unit(body: dict, unit: str | None) -> dict:
    if unit is not None:
        body["customAggregationUnits"] = [unit]
    return body


class _id_file:
    """The ids as a text file, one a line (the SDK uploads a file by its path)."""

    def __init__(self, user_ids: list[str]) -> None:
        self.user_ids = user_ids
        self.path = ""

    def __enter__(self) -> str:
        handle, self.path = tempfile.mkstemp(prefix="kizuna-audience-", suffix=".txt")
        with os.fdopen(handle, "w") as out:
            out.write("\n".join(self.user_ids))
            out.write("\n")
        return self.path

    def __exit__(self, *exc: object) -> None:
        os.unlink(self.path)


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for key, value in dict(headers).items():
        if key.lower() == name:
            return value
    return None


def _request_id(headers: Any) -> str | None:
    if not headers:
        return None
    for name, value in dict(headers).items():
        if name.lower() == "x-line-request-id":
            return value
    return None
