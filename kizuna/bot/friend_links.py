"""Friend-add source links (流入経路): `GET /f/{code}` and the LINE Login callback `GET /f/callback`.

LINE's add-friend URL passes nothing through and its follow webhook says nothing about where a
friend came from, so a source's link goes through LINE Login with the add-friend option
(`bot_prompt=aggressive`: after consent LINE offers to add the official account):

1. `/f/{code}` counts a click and redirects to LINE's authorize URL with a signed `state`
   (HMAC-SHA256 with KIZUNA_SECRET_KEY over the source id, an expiry and a nonce; the same nonce
   goes to LINE as `nonce` and comes back inside the ID token).
2. LINE redirects to `/f/callback?code=…&state=…&friendship_status_changed=…`. We check the state
   (400 when forged or expired: nothing is recorded), exchange the code at the token endpoint,
   have LINE verify the ID token (`POST /oauth2/v2.1/verify`, with our channel id and the nonce),
   and take its `sub` as the LINE user id. Whether they are a friend: `friendship_status_changed`
   true means they added (or unblocked) the account on the login screen; otherwise we ask
   `GET /friendship/v1/status` with the access token.
3. storage/friend_sources.record_login records the visit and the attribution (first source wins;
   resolved now if the follow webhook came first, else by the follow handler). A person who is not
   a friend yet is sent on to the add-friend URL; the others see a small thank-you page.

A state is not bound to the browser that started the login (no cookie): someone could make
another person's browser finish a login of theirs, which would only attribute *that* person to a
source they really opened. The state's signature and expiry stop forged sources and replays
after 10 minutes; LINE's single-use code stops a replay before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from kizuna.storage import friend_sources
from kizuna.storage.db import transaction
from kizuna.storage.models import FriendSource
from kizuna.storage.types import utcnow

from .keys import SESSIONS, SETTINGS
from .settings import Settings

log = logging.getLogger("kizuna.friend_links")

STATE_TTL_SECONDS = 600  # as long as LINE keeps an authorization code
CALLBACK_PATH = "/f/callback"
LINE_TIMEOUT = aiohttp.ClientTimeout(total=10)


class LoginFailed(Exception):
    """LINE refused the code or the ID token, or did not answer."""


@dataclass(frozen=True)
class State:
    source_id: int
    expires: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), f"friend-source-state:{payload}".encode(), hashlib.sha256).digest())


def sign_state(secret: str, source_id: int, *, now: float | None = None, ttl: int = STATE_TTL_SECONDS) -> tuple[str, str]:
    """(state, nonce) for a login through `source_id`."""
    nonce = secrets.token_urlsafe(16)
    payload = f"{source_id}.{int((now or time.time()) + ttl)}.{nonce}"
    return f"{payload}.{_mac(secret, payload)}", nonce


def read_state(secret: str, state: str, *, now: float | None = None) -> State | None:
    """The state's content when we signed it and it has not expired; None otherwise."""
    parts = state.split(".") if isinstance(state, str) and len(state) < 300 else []
    if len(parts) != 4:
        return None
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(_mac(secret, payload), parts[3]):
        return None
    source_id, expires, nonce = parts[:3]
    if not (source_id.isdigit() and expires.isdigit()) or int(expires) < (now or time.time()):
        return None
    return State(int(source_id), int(expires), nonce)


def callback_url(settings: Settings, request: web.Request) -> str:
    """KIZUNA_PUBLIC_URL's callback, else this server as the browser reached it (LINE accepts only
    the callback URLs registered on the channel, so a forged Host header fails there)."""
    return (settings.public_url or str(request.url.origin())) + CALLBACK_PATH


def authorize_url(settings: Settings, request: web.Request, state: str, nonce: str) -> str:
    query = {
        "response_type": "code", "client_id": settings.line_login_channel_id, "redirect_uri": callback_url(settings, request),
        "state": state, "scope": "profile openid", "nonce": nonce, "bot_prompt": "aggressive",
    }
    return f"{settings.line_login_base_url}/oauth2/v2.1/authorize?{urlencode(query)}"


def message_page(title: str, message: str, status: int = 200, *, link: str | None = None) -> web.Response:
    button = f'<p><a class="btn" href="{html.escape(link)}">LINEで友だち追加する</a></p>' if link else ""
    body = f"""<!doctype html><html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,-apple-system,"Hiragino Sans",sans-serif;background:#f4f6f8;margin:0;color:#1f2937}}
main{{max-width:420px;margin:12vh auto;background:#fff;border-radius:16px;padding:32px;text-align:center;box-shadow:0 2px 10px #0001}}
h1{{font-size:20px}}.btn{{display:inline-block;background:#06c755;color:#fff;padding:12px 20px;border-radius:10px;text-decoration:none}}</style>
</head><body><main><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{button}</main></body></html>"""
    response = web.Response(text=body, status=status, content_type="text/html", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    return response


def _bad_link() -> web.Response:
    return message_page("リンクが無効です", "このリンクは無効か、有効期限が切れています。もう一度QRコードを読み取るか、リンクを開き直してください。", 400)


async def open_source(request: web.Request) -> web.StreamResponse:
    """`GET /f/{code}`: count the click, go to LINE Login."""
    settings = request.app[SETTINGS]
    code = request.match_info["code"]
    if len(code) > 32:
        return message_page("見つかりません", "このリンクは存在しません。", 404)
    async with transaction(request.app[SESSIONS]) as session:
        # A HEAD (a link preview's probe) is not a person opening the link: not counted.
        count = friend_sources.record_click if request.method == "GET" else friend_sources.by_code
        source = await count(session, code)
    if source is None:
        return message_page("見つかりません", "このリンクは存在しません。", 404)
    if not settings.line_login_enabled:
        return message_page("準備中です", "LINEログインが設定されていません（LINE_LOGIN_CHANNEL_ID）。", 503)
    state, nonce = sign_state(settings.secret_key, source.id)
    raise web.HTTPFound(authorize_url(settings, request, state, nonce), headers={"Cache-Control": "no-store"})


async def login_callback(request: web.Request) -> web.StreamResponse:
    """`GET /f/callback`: LINE Login's answer (see the module docstring)."""
    settings = request.app[SETTINGS]
    query = request.query
    state = read_state(settings.secret_key, query.get("state", ""))
    if state is None or not settings.line_login_enabled:
        return _bad_link()
    if query.get("error"):  # the person cancelled on LINE's screen
        return message_page("キャンセルしました", "ログインがキャンセルされました。友だち追加は、もう一度リンクを開くとできます。")
    code = query.get("code", "")
    if not code or len(code) > 512:
        return _bad_link()
    try:
        line_user_id, access_token = await _login(settings, callback_url(settings, request), code, state.nonce)
        changed = query.get("friendship_status_changed") == "true"
        is_friend = changed or await _is_friend(settings, access_token)
    except LoginFailed as error:
        log.warning("friend source login failed: %s", error)
        return message_page("ログインできませんでした", "LINEでの確認に失敗しました。もう一度リンクを開いてください。", 400)
    async with transaction(request.app[SESSIONS]) as session:
        source = await session.get(FriendSource, state.source_id)
        if source is None:
            return _bad_link()
        await friend_sources.record_login(session, source, line_user_id, friendship_changed=changed, is_friend=is_friend, now=utcnow())
    if not is_friend:
        if settings.add_friend_url:
            raise web.HTTPFound(settings.add_friend_url, headers={"Cache-Control": "no-store"})
        return message_page("あと少しです", "LINEアプリで公式アカウントを友だち追加してください。")
    return message_page("友だち追加ありがとうございます", "LINEのトーク画面に戻って、メッセージをご確認ください。")


async def _login(settings: Settings, redirect_uri: str, code: str, nonce: str) -> tuple[str, str]:
    """(LINE user id, access token): the code exchanged, the ID token verified by LINE."""
    base = settings.line_api_base_url
    async with aiohttp.ClientSession(timeout=LINE_TIMEOUT) as client:
        try:
            async with client.post(f"{base}/oauth2/v2.1/token", data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "client_id": settings.line_login_channel_id, "client_secret": settings.line_login_channel_secret,
            }) as response:
                tokens = await response.json(content_type=None)
                if response.status != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
                    raise LoginFailed(f"token endpoint answered {response.status}: {tokens}")
            async with client.post(f"{base}/oauth2/v2.1/verify", data={
                "id_token": tokens["id_token"], "client_id": settings.line_login_channel_id, "nonce": nonce,
            }) as response:
                claims = await response.json(content_type=None)
                if response.status != 200 or not isinstance(claims, dict):
                    raise LoginFailed(f"verify endpoint answered {response.status}: {claims}")
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise LoginFailed(f"{type(error).__name__}: {error}") from None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.startswith("U") or len(subject) > 64:
        raise LoginFailed("the ID token names no LINE user")
    return subject, str(tokens.get("access_token", ""))


async def _is_friend(settings: Settings, access_token: str) -> bool:
    """LINE's friendship status of the logged-in user and the linked official account."""
    async with aiohttp.ClientSession(timeout=LINE_TIMEOUT) as client:
        try:
            async with client.get(f"{settings.line_api_base_url}/friendship/v1/status",
                                  headers={"Authorization": f"Bearer {access_token}"}) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise LoginFailed(f"{type(error).__name__}: {error}") from None
    if response.status != 200 or not isinstance(body, dict):
        raise LoginFailed(f"friendship status answered {response.status}")
    return bool(body.get("friendFlag"))


# The callback first: a code is never "callback" (codes are 10 letters and digits), but the order
# keeps the fixed path from ever being read as one.
routes = [
    web.get(CALLBACK_PATH, login_callback),
    web.get("/f/{code}", open_source),
]
