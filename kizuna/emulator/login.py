"""LINE Login v2.1, as much as a web login with the add-friend option needs.

- ``GET /oauth2/v2.1/authorize``: LINE's login and consent screen. Here the person playing the
  user picks who they are (or makes a new user) and ticks 「友だち追加」 when the request carries
  ``bot_prompt`` (``normal`` or ``aggressive``). ``POST`` of that form: when the friend is added
  the emulator sends the follow webhook, as LINE does, then redirects to ``redirect_uri`` with
  ``code``, ``state`` and (with ``bot_prompt``) ``friendship_status_changed``; a cancel redirects
  with ``error=access_denied``.
- ``POST /oauth2/v2.1/token`` (form): the authorization code (single use, 10 minutes, bound to
  its client id and redirect URI) for an access token and an ID token: an HS256 JWT signed with
  the channel secret, as LINE signs web-login ID tokens.
- ``POST /oauth2/v2.1/verify`` (form ``id_token``, ``client_id``, optional ``nonce``,
  ``user_id``): the token's payload, or 400 ``{"error": "invalid_request", "error_description":
  "Invalid IdToken."}`` (and LINE's other descriptions: expired, audience, nonce, user id).
- ``GET /friendship/v1/status`` (bearer access token): ``{"friendFlag": bool}``.

Errors of the token endpoint are LINE's OAuth shapes: 400 ``invalid_request`` / ``invalid_grant``,
401 ``invalid_client``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

if TYPE_CHECKING:
    from .core import Emulator

ISSUER = "https://access.line.me"
CODE_TTL = 600.0  # LINE: an authorization code is valid for 10 minutes
ID_TOKEN_TTL = 3600
ACCESS_TOKEN_TTL = 30 * 24 * 3600
BOT_PROMPTS = ("normal", "aggressive")
DENIED = "The resource owner denied the request."


@dataclass(slots=True)
class Grant:
    """An authorization code as LINE keeps it until it is exchanged."""

    code: str
    user_id: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    issued_at: float
    used: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_id_token(secret: str, payload: dict[str, Any]) -> str:
    header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def read_id_token(secret: str, token: str) -> dict[str, Any] | None:
    """The payload when the signature is the channel's; None for anything else."""
    try:
        header, body, signature = token.split(".")
        expected = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        payload = json.loads(_unb64(body))
    except (ValueError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


_STYLE = """body{font-family:system-ui,sans-serif;background:#f5f5f5;margin:0}main{max-width:420px;margin:40px auto;background:#fff;
border-radius:12px;padding:24px;box-shadow:0 1px 4px #0002}h1{font-size:18px;color:#06c755}label{display:block;margin:8px 0}
button{padding:10px 16px;border-radius:8px;border:0;background:#06c755;color:#fff;font-size:15px}
button.cancel{background:#ddd;color:#333}.error{color:#c00}"""
# The page's one inline style sheet is allowed by its hash; no script at all. (No form-action: the
# consent form's answer redirects to the relying party, which browsers would check against it.)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self' https: data:; "
                           "frame-ancestors 'none'; base-uri 'none'")


def _page(title: str, body: str, status: int = 200) -> web.Response:
    document = f"""<!doctype html><html lang="ja"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>
<style>{_STYLE}</style></head>
<body><main><h1>LINE Login (emulator)</h1>{body}</main></body></html>"""
    return web.Response(text=document, status=status, content_type="text/html", charset="utf-8",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"})


class LoginApi:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, tuple[str, float]] = {}  # token -> (user id, issued at)

    # --- the login and consent screen ----------------------------------------------------

    def _check_request(self, params: Any) -> str | None:
        """What LINE's authorize endpoint refuses (it shows an error page, no redirect)."""
        if params.get("response_type") != "code":
            return "response_type must be code"
        if params.get("client_id") != self.emu.login_channel_id:
            return "invalid client_id"
        if not str(params.get("redirect_uri", "")).startswith(("http://", "https://")):
            return "invalid redirect_uri"
        if not params.get("state"):
            return "state is required"
        if not params.get("scope"):
            return "scope is required"
        if params.get("bot_prompt") not in (None, "", *BOT_PROMPTS):
            return "bot_prompt must be normal or aggressive"
        return None

    async def authorize_page(self, request: web.Request) -> web.Response:
        params = request.query
        problem = self._check_request(params)
        if problem:
            return _page("エラー", f'<p class="error">400 Bad Request: {html.escape(problem)}</p>', 400)
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
            for name in ("response_type", "client_id", "redirect_uri", "state", "scope", "nonce", "bot_prompt") if name in params
        )
        users = "".join(
            f'<label><input type="radio" name="user_id" value="{html.escape(user.user_id)}"{" checked" if index == 0 else ""}> '
            f'{html.escape(user.display_name)}{"（友だち）" if user.followed else ""}</label>'
            for index, user in enumerate(self.emu.users.values())
        )
        new_user = ('<label><input type="radio" name="user_id" value=""' + ("" if users else " checked") + '> 新しいユーザー: '
                    '<input type="text" name="display_name" maxlength="100" placeholder="表示名"></label>')
        friend = ""
        if params.get("bot_prompt"):
            friend = (f'<label><input type="checkbox" name="add_friend" value="1" checked> '
                      f'{html.escape(self.emu.bot_display_name)} を友だち追加</label>')
        body = (f'<form method="post">{hidden}<p>ログインするユーザーを選んでください。</p>{users}{new_user}'
                f'<p>このアプリがプロフィール情報へのアクセスを求めています。</p>{friend}'
                '<p><button type="submit" name="action" value="allow">許可する</button> '
                '<button class="cancel" type="submit" name="action" value="cancel">キャンセル</button></p></form>')
        return _page("LINE Login", body)

    async def authorize_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        problem = self._check_request(form)
        if problem:
            return _page("エラー", f'<p class="error">400 Bad Request: {html.escape(problem)}</p>', 400)
        redirect_uri, state = str(form["redirect_uri"]), str(form["state"])
        if form.get("action") == "cancel":
            raise web.HTTPFound(_with_query(redirect_uri, {"error": "access_denied", "error_description": DENIED, "state": state}))
        user_id = str(form.get("user_id") or "")
        if user_id:
            user = self.emu.users.get(user_id)
            if user is None:
                return _page("エラー", '<p class="error">ユーザーが見つかりません</p>', 400)
        else:
            name = str(form.get("display_name") or "").strip()
            if not name or len(name) > 100:
                return _page("エラー", '<p class="error">表示名は1〜100文字で入力してください</p>', 400)
            user = self.emu.add_user(name)
        changed = False
        if form.get("bot_prompt") and form.get("add_friend") and not user.followed:
            # Adding the friend on the consent screen is a follow like any other: LINE sends the webhook.
            await self.emu.follow(user.user_id, is_unblocked=user.blocked)
            changed = True
        code = secrets.token_urlsafe(15)
        self.grants[code] = Grant(code, user.user_id, str(form["client_id"]), redirect_uri, str(form["scope"]),
                                  str(form["nonce"]) if form.get("nonce") else None, self.emu.clock())
        answer = {"code": code, "state": state}
        if form.get("bot_prompt"):
            answer["friendship_status_changed"] = "true" if changed else "false"
        raise web.HTTPFound(_with_query(redirect_uri, answer))

    # --- the API -------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be authorization_code")
        if not form.get("code") or not form.get("redirect_uri"):
            return _oauth_error(400, "invalid_request", "code and redirect_uri are required")
        if form.get("client_id") != self.emu.login_channel_id or form.get("client_secret") != self.emu.login_channel_secret:
            return _oauth_error(401, "invalid_client", "invalid client")
        grant = self.grants.get(str(form["code"]))
        if (grant is None or grant.used or self.emu.clock() - grant.issued_at > CODE_TTL
                or grant.client_id != form["client_id"] or grant.redirect_uri != form["redirect_uri"]):
            return _oauth_error(400, "invalid_grant", "invalid authorization code")
        grant.used = True
        user = self.emu.get_user(grant.user_id)
        now = int(self.emu.clock())
        payload: dict[str, Any] = {"iss": ISSUER, "sub": user.user_id, "aud": grant.client_id, "exp": now + ID_TOKEN_TTL,
                                   "iat": now, "amr": ["linesso"], "name": user.display_name}
        if grant.nonce:
            payload["nonce"] = grant.nonce
        if user.picture_url:
            payload["picture"] = user.picture_url
        access_token = secrets.token_urlsafe(32)
        self.access_tokens[access_token] = (user.user_id, self.emu.clock())
        body: dict[str, Any] = {"access_token": access_token, "expires_in": ACCESS_TOKEN_TTL, "refresh_token": secrets.token_urlsafe(16),
                                "scope": grant.scope, "token_type": "Bearer"}
        if "openid" in grant.scope.split():
            body["id_token"] = sign_id_token(self.emu.login_channel_secret, payload)
        return web.json_response(body)

    async def verify(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not form.get("id_token") or not form.get("client_id"):
            return _oauth_error(400, "invalid_request", "id_token and client_id are required")
        payload = read_id_token(self.emu.login_channel_secret, str(form["id_token"]))
        if payload is None:
            return _oauth_error(400, "invalid_request", "Invalid IdToken.")
        if payload.get("exp", 0) < self.emu.clock():
            return _oauth_error(400, "invalid_request", "IdToken expired.")
        if payload.get("aud") != form["client_id"]:
            return _oauth_error(400, "invalid_request", "Invalid IdToken Audience.")
        if form.get("nonce") and payload.get("nonce") != form["nonce"]:
            return _oauth_error(400, "invalid_request", "Invalid IdToken Nonce.")
        if form.get("user_id") and payload.get("sub") != form["user_id"]:
            return _oauth_error(400, "invalid_request", "Invalid IdToken Subject Identifier.")
        return web.json_response(payload)

    async def friendship(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        entry = self.access_tokens.get(header.removeprefix("Bearer ").strip()) if header.startswith("Bearer ") else None
        if entry is None or self.emu.clock() - entry[1] > ACCESS_TOKEN_TTL:
            return _oauth_error(401, "invalid_token", "The access token expired or is invalid")
        return web.json_response({"friendFlag": self.emu.get_user(entry[0]).followed})

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/oauth2/v2.1/authorize", self.authorize_page),
            web.post("/oauth2/v2.1/authorize", self.authorize_submit),
            web.post("/oauth2/v2.1/token", self.token),
            web.post("/oauth2/v2.1/verify", self.verify),
            web.get("/friendship/v1/status", self.friendship),
        ]


def _with_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)


def add_routes(app: web.Application, emu: Emulator) -> None:
    api = LoginApi(emu)
    emu.login = api
    app.add_routes(api.routes())
