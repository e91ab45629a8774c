"""HTTP-level protections of the console: cookies, CSRF tokens, response headers, the
client's address.

- Cookies are HttpOnly and SameSite=Lax; when the public URL is https they are also Secure
  and named `__Host-…` (Path=/, no Domain: no other host or path can set or shadow them).
- CSRF: a synchronizer token per session (`staff_sessions.csrf_token`), checked on every
  request that is not GET; before login, a signed double-submit token (an HMAC of a random
  cookie under KIZUNA_SECRET_KEY).
- Headers on every console response (pages, static files, errors): a CSP with no inline
  script or style, frame-ancestors 'none', nosniff, a same-origin referrer policy, no caching
  of pages.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

from aiohttp import web

SESSION_COOKIE = "kizuna_session"
CSRF_COOKIE = "kizuna_csrf"
LANG_COOKIE = "kizuna_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self'",  # the video and audio customers sent (served by the console)
    "font-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
))

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def cookie_name(base: str, https: bool) -> str:
    return f"__Host-{base}" if https else base


def set_cookie(response: web.StreamResponse, base: str, value: str, *, https: bool, max_age: int | None = None) -> None:
    response.set_cookie(
        cookie_name(base, https), value, path="/", httponly=True, samesite="Lax", secure=https, max_age=max_age,
    )


def delete_cookie(response: web.StreamResponse, base: str, *, https: bool) -> None:
    response.del_cookie(cookie_name(base, https), path="/", secure=https, httponly=True, samesite="Lax")


def read_cookie(request: web.Request, base: str, *, https: bool) -> str | None:
    return request.cookies.get(cookie_name(base, https)) or None


def add_headers(response: web.StreamResponse, *, https: bool, static: bool) -> None:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if https:
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    # Pages hold customers' data: never stored by the browser or a proxy.
    response.headers["Cache-Control"] = "no-cache" if static else "no-store"


# -- CSRF -------------------------------------------------------------------------------------


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def anonymous_token(secret_key: str, nonce: str) -> str:
    """The form token before login: bound to the browser's random CSRF cookie by an HMAC
    only the server can make (a cookie planted by another site does not help it)."""
    return hmac.new(secret_key.encode(), b"console-csrf:" + nonce.encode(), hashlib.sha256).hexdigest()


def tokens_match(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


async def submitted_token(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


# -- where a request comes from ---------------------------------------------------------------


def client_ip(request: web.Request, *, trust_forwarded_for: bool) -> str:
    """The client's address: the TCP peer, or (behind a proxy that appends to it) the last
    X-Forwarded-For entry, when that is an IP address."""
    if trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            pass
    return request.remote or "unknown"


def user_agent(request: web.Request) -> str | None:
    agent = request.headers.get("User-Agent")
    return agent[:200] if agent else None


def safe_next(value: str | None, default: str) -> str:
    """Where to go after login: a path inside the console, never another site."""
    if not value or not (value == "/console" or value.startswith("/console/")) or value.startswith("//") or "\\" in value or "\n" in value or "\r" in value:
        return default
    return value
