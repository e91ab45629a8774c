"""The chat page (a person plays the LINE user) and the JSON API behind it.

``/`` serves the page, ``/static/`` its files, ``/api/...`` the JSON it polls and posts. The
page uses relative URLs only, so it works both standalone and mounted under a prefix. The
``/api/admin/...`` routes expose the Python test hooks (faults, limits, logs) over HTTP for
when the emulator runs in its own process (``python -m kizuna.emulator``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import ids, insight
from .faults import FaultRates
from .state import WebhookResult

if TYPE_CHECKING:
    from .core import Emulator

STATIC_DIR = Path(__file__).parent / "static"
MAX_TEXT = 5000
MAX_NAME = 100


def _json(body: Any, status: int = 200) -> web.Response:
    response = web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))
    # The page polls: never let a cache answer for the emulator.
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(status: int, message: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict}[status]
    return cls(text=json.dumps({"error": message}, ensure_ascii=False), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise _http_error(400, "JSON を読めませんでした") from None
    if not isinstance(body, dict):
        raise _http_error(400, "JSON オブジェクトを送ってください")
    return body


def _result(result: WebhookResult) -> web.Response:
    return _json({"ok": result.ok, "status": result.status, "error": result.error})


# The chat page shows what a bot sends (text, images, Flex) and what a person types: its script
# is its own file and builds every node with textContent, so the page needs no inline script,
# no eval and no inline style sheet; images come from wherever a message points (https, or the
# http of a local bot), never a plugin or a frame. A message that slipped past app.js could
# still run nothing.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' https: http: data: blob:",
    "media-src 'self' https: http: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
))
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class ChatApi:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def _user(self, request: web.Request, *, must_follow: bool = False) -> Any:
        user = self.emu.users.get(request.match_info["user_id"])
        if user is None:
            raise _http_error(404, "ユーザーが見つかりません")
        if must_follow and not user.followed:
            # A LINE user can only talk to an account they have added as a friend.
            raise _http_error(409, "友だち追加してからメッセージを送ってください")
        return user

    # --- page ------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(STATIC_DIR / "index.html")
        response.headers["Cache-Control"] = "no-store"
        response.headers.update(PAGE_SECURITY_HEADERS)
        return response

    async def info(self, request: web.Request) -> web.Response:
        emu = self.emu
        return _json({
            "bot": {"userId": emu.bot_user_id, "displayName": emu.bot_display_name, "basicId": emu.basic_id},
            "webhook_url": emu.webhook_url,
            "last_seq": emu.last_seq,
        })

    # --- users and what they do ------------------------------------------------------------

    async def list_users(self, request: web.Request) -> web.Response:
        return _json({"users": [u.to_json() for u in self.emu.users.values()]})

    async def create_user(self, request: web.Request) -> web.Response:
        body = await _body(request)
        name = body.get("display_name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise _http_error(400, f"表示名は1〜{MAX_NAME}文字で入力してください")
        user_id = body.get("user_id") or None
        try:
            user = self.emu.add_user(
                name.strip(),
                user_id=user_id,
                picture_url=body.get("picture_url") or None,
                language=body.get("language", "ja"),
            )
        except ValueError as exc:
            raise _http_error(400, str(exc)) from None
        return _json(user.to_json(), 201)

    async def follow(self, request: web.Request) -> web.Response:
        user = self._user(request)
        # Following again after a block is what LINE reports as isUnblocked.
        return _result(await self.emu.follow(user.user_id, is_unblocked=user.blocked))

    async def unfollow(self, request: web.Request) -> web.Response:
        user = self._user(request)
        return _result(await self.emu.unfollow(user.user_id))

    async def text(self, request: web.Request) -> web.Response:
        user = self._user(request, must_follow=True)
        body = await _body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise _http_error(400, f"メッセージは1〜{MAX_TEXT}文字です")
        return _result(await self.emu.send_text(user.user_id, text))

    async def sticker(self, request: web.Request) -> web.Response:
        user = self._user(request, must_follow=True)
        body = await _body(request)
        return _result(await self.emu.send_sticker(
            user.user_id, str(body.get("package_id", "446")), str(body.get("sticker_id", "1988"))
        ))

    async def image(self, request: web.Request) -> web.Response:
        user = self._user(request, must_follow=True)
        return _result(await self.emu.send_image(user.user_id))

    async def location(self, request: web.Request) -> web.Response:
        user = self._user(request, must_follow=True)
        body = await _body(request)
        try:
            lat = float(body.get("latitude", 35.681236))
            lon = float(body.get("longitude", 139.767125))
        except (TypeError, ValueError):
            raise _http_error(400, "緯度・経度は数値で入力してください") from None
        title = str(body.get("title") or "東京駅")[:100]
        address = str(body.get("address") or "東京都千代田区丸の内1丁目")[:100]
        return _result(await self.emu.send_location(user.user_id, title, address, lat, lon))

    async def postback(self, request: web.Request) -> web.Response:
        user = self._user(request, must_follow=True)
        body = await _body(request)
        data = body.get("data")
        if not isinstance(data, str):
            raise _http_error(400, "data がありません")
        params = body.get("params")
        if params is not None and not isinstance(params, dict):
            raise _http_error(400, "params はオブジェクトです")
        display = body.get("displayText")
        return _result(await self.emu.send_postback(
            user.user_id, data, params=params or None, display_text=display if isinstance(display, str) else None
        ))

    async def timeline(self, request: web.Request) -> web.Response:
        user = self._user(request)
        try:
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise _http_error(400, "after は整数です") from None
        timeline = self.emu.timeline(user.user_id, after)
        for item in timeline:
            # Shown on the page = opened, as LINE counts an impression when a bubble is displayed.
            if item.side == "bot" and item.delivered is not None and item.delivered.delivered:
                found = self.emu.message_sent(item.delivered.message_id)
                if found is not None:
                    insight.record_open(self.emu, user.user_id, found[0], found[1])
        items = [i.to_json() for i in timeline]
        return _json({"items": items, "last_seq": self.emu.last_seq, "user": user.to_json()})

    async def user_rich_menu(self, request: web.Request) -> web.Response:
        user = self._user(request)
        menu = self.emu.rich_menu_for(user.user_id)
        if menu is None or menu.image is None:
            return _json({"richmenu": None})
        return _json({"richmenu": menu.to_json()})

    async def rich_menu_image(self, request: web.Request) -> web.StreamResponse:
        menu = self.emu.rich_menus.get(request.match_info["rich_menu_id"])
        if menu is None or menu.image is None:
            raise _http_error(404, "リッチメニューの画像がありません")
        return web.Response(body=menu.image, content_type=menu.image_type or "image/png")

    # --- admin: the Python test hooks over HTTP ----------------------------------------------

    async def admin_requests(self, request: web.Request) -> web.Response:
        start = int(request.query.get("start", "0"))
        entries = self.emu.requests[start:]
        return _json({"requests": [
            {"method": r.method, "path": r.path, "status": r.status, "endpoint": r.endpoint,
             "request_id": r.request_id, "retry_key": r.headers.get("X-Line-Retry-Key"),
             "json": r.json, "at": r.at}
            for r in entries
        ], "next": start + len(entries)})

    async def admin_messages(self, request: web.Request) -> web.Response:
        chat_id = request.match_info["chat_id"]
        return _json({"messages": [
            {"message": d.message, "via": d.via, "request_id": d.request_id, "retry_key": d.retry_key,
             "delivered": d.delivered, "at": d.at, "message_id": d.message_id}
            for d in self.emu.messages_to(chat_id)
        ]})

    async def admin_stats(self, request: web.Request) -> web.Response:
        by_status: dict[str, int] = {}
        for r in self.emu.requests:
            key = f"{r.endpoint} {r.status}"
            by_status[key] = by_status.get(key, 0) + 1
        delivered = self.emu.message_total()
        return _json({
            "requests": by_status,
            "messages": delivered,
            "users": len(self.emu.users),
            "quota_used": self.emu.quota_used,
            "quota_limit": self.emu.quota_limit,
            "pending_faults": self.emu.faults.pending(),
        })

    async def admin_fail_next(self, request: web.Request) -> web.Response:
        body = await _body(request)
        self.emu.fail_next(
            str(body["endpoint"]), int(body.get("status", 500)), int(body.get("count", 1)),
            body.get("body"), after_executing=bool(body.get("after_executing", False)),
        )
        return _json({"ok": True})

    async def admin_delay_next(self, request: web.Request) -> web.Response:
        body = await _body(request)
        self.emu.delay_next(
            str(body["endpoint"]), float(body["seconds"]), int(body.get("count", 1)),
            after_executing=bool(body.get("after_executing", False)),
        )
        return _json({"ok": True})

    async def admin_rate_limit(self, request: web.Request) -> web.Response:
        body = await _body(request)
        burst = body.get("burst")
        self.emu.set_rate_limit(str(body["endpoint"]), float(body["per_second"]),
                                float(burst) if burst is not None else None)
        return _json({"ok": True})

    async def admin_quota(self, request: web.Request) -> web.Response:
        body = await _body(request)
        limit = body.get("limit")
        self.emu.quota_limit = int(limit) if limit is not None else None
        if "used" in body:
            self.emu.quota_used = int(body["used"])
        return _json({"ok": True})

    async def admin_fault_rates(self, request: web.Request) -> web.Response:
        """Random faults: ``{"endpoint": "multicast" or "*", "before": 0.05, "after": 0.05,
        "rate_limited": 0.02, "seed": 1}`` (all zero removes them). GET tells the rates and
        how many faults each endpoint was given so far."""
        if request.method == "POST":
            body = await _body(request)
            try:
                rates = FaultRates(float(body.get("before", 0)), float(body.get("after", 0)),
                                   float(body.get("rate_limited", 0)))
            except (TypeError, ValueError) as exc:
                raise _http_error(400, str(exc)) from None
            seed = body.get("seed")
            self.emu.faults.set_rates(str(body.get("endpoint", "*")), rates, int(seed) if seed is not None else None)
        faults = self.emu.faults
        return _json({"rates": faults.rates(), "seed": faults.seed, "injected": dict(faults.injected)})

    async def admin_rate_limits_off(self, request: web.Request) -> web.Response:
        """Lift every rate limit (``{"unlimited": false}`` restores LINE's)."""
        body = await _body(request)
        self.emu.rate_limiter.unlimited = bool(body.get("unlimited", True))
        return _json({"unlimited": self.emu.rate_limiter.unlimited})

    async def admin_deliveries(self, request: web.Request) -> web.Response:
        """The record of accepted sends, for counting duplicates and gaps after a benchmark.

        Without parameters: per message fingerprint (same messages = same fingerprint), the
        requests, retry keys, accepted deliveries, distinct users and users who got it more
        than once. ``?fingerprint=F&users=all`` adds ``{user_id: times}`` for that content
        (``users=duplicates``: only those above 1); ``?via=multicast`` narrows to one kind.
        A user counts once per request that listed them, delivered or not (LINE accepted it)."""
        wanted = request.query.get("fingerprint")
        via = request.query.get("via")
        users_mode = request.query.get("users", "none")
        groups: dict[str, dict[str, Any]] = {}
        for send in self.emu.sends:
            if (wanted and send.fingerprint != wanted) or (via and send.via != via):
                continue
            group = groups.get(send.fingerprint)
            if group is None:
                group = groups[send.fingerprint] = {
                    "fingerprint": send.fingerprint, "via": set(), "requests": 0, "retry_keys": set(),
                    "units": set(), "counts": {},
                }
            group["requests"] += 1
            group["via"].add(send.via)
            if send.retry_key:
                group["retry_keys"].add(send.retry_key)
            if send.unit:
                group["units"].add(send.unit)
            counts = group["counts"]
            for user_id in send.recipients:
                counts[user_id] = counts.get(user_id, 0) + 1
        out = []
        for group in groups.values():
            counts = group.pop("counts")
            duplicated = {u: n for u, n in counts.items() if n > 1}
            entry = {
                **group,
                "via": sorted(group["via"]), "retry_keys": len(group["retry_keys"]), "units": sorted(group["units"]),
                "deliveries": sum(counts.values()), "users": len(counts), "duplicated_users": len(duplicated),
            }
            if users_mode == "all":
                entry["counts"] = counts
            elif users_mode == "duplicates":
                entry["counts"] = duplicated
            out.append(entry)
        return _json({"fingerprints": out})

    async def user_open(self, request: web.Request) -> web.Response:
        """The user saw a message (``{"message_id"}``; without it, the latest send)."""
        user = self._user(request)
        body = await _body(request)
        try:
            self.emu.open(user.user_id, body.get("message_id") or None)
        except LookupError as exc:
            raise _http_error(404, str(exc)) from None
        return _json({"ok": True})

    async def user_click(self, request: web.Request) -> web.Response:
        """The user tapped a link (``{"url", "message_id"}``): counted for the message's send."""
        user = self._user(request)
        body = await _body(request)
        url = body.get("url")
        if not isinstance(url, str) or not url:
            raise _http_error(400, "url がありません")
        try:
            self.emu.click(user.user_id, url, body.get("message_id") or None)
        except LookupError as exc:
            raise _http_error(404, str(exc)) from None
        return _json({"ok": True})

    async def admin_expire_reply_tokens(self, request: web.Request) -> web.Response:
        self.emu.expire_reply_tokens()
        return _json({"ok": True})

    async def admin_bulk_users(self, request: web.Request) -> web.Response:
        """Create many friends at once (no follow events), for benchmarks."""
        body = await _body(request)
        count = int(body.get("count", 0))
        if not 0 < count <= 1_000_000:
            raise _http_error(400, "count は 1〜1,000,000 です")
        followed = bool(body.get("followed", True))
        prefix = str(body.get("display_name_prefix", "ユーザー"))
        created = [
            self.emu.add_user(f"{prefix}{i + 1}", user_id=ids.user_id(), followed=followed).user_id
            for i in range(count)
        ]
        return _json({"user_ids": created}, 201)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self.index),
            web.get("/api/info", self.info),
            web.get("/api/users", self.list_users),
            web.post("/api/users", self.create_user),
            web.post("/api/users/{user_id}/follow", self.follow),
            web.post("/api/users/{user_id}/unfollow", self.unfollow),
            web.post("/api/users/{user_id}/text", self.text),
            web.post("/api/users/{user_id}/sticker", self.sticker),
            web.post("/api/users/{user_id}/image", self.image),
            web.post("/api/users/{user_id}/location", self.location),
            web.post("/api/users/{user_id}/postback", self.postback),
            web.get("/api/users/{user_id}/timeline", self.timeline),
            web.get("/api/users/{user_id}/richmenu", self.user_rich_menu),
            web.get("/api/richmenus/{rich_menu_id}/image", self.rich_menu_image),
            web.get("/api/admin/requests", self.admin_requests),
            web.get("/api/admin/messages/{chat_id}", self.admin_messages),
            web.get("/api/admin/stats", self.admin_stats),
            web.post("/api/admin/fail_next", self.admin_fail_next),
            web.post("/api/admin/delay_next", self.admin_delay_next),
            web.post("/api/admin/rate_limit", self.admin_rate_limit),
            web.post("/api/admin/quota", self.admin_quota),
            web.post("/api/admin/expire_reply_tokens", self.admin_expire_reply_tokens),
            web.get("/api/admin/fault_rates", self.admin_fault_rates),
            web.post("/api/admin/fault_rates", self.admin_fault_rates),
            web.post("/api/admin/rate_limits_off", self.admin_rate_limits_off),
            web.get("/api/admin/deliveries", self.admin_deliveries),
            web.post("/api/users/{user_id}/open", self.user_open),
            web.post("/api/users/{user_id}/click", self.user_click),
            web.post("/api/admin/users/bulk", self.admin_bulk_users),
            web.static("/static", STATIC_DIR, append_version=False),
        ]


def add_routes(app: web.Application, emu: Emulator) -> None:
    app.add_routes(ChatApi(emu).routes())
