"""REST API bearer tokens, stored hashed: created and revoked by admins (the console's APIトークン
page or `kizuna token create`), audited when someone is named."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit
from .errors import Conflict, Invalid, NotFound
from .models import ApiToken
from .roles import TOKEN_ROLES, Role
from .types import utcnow

TOKEN_PREFIX = "kzn_"
NAME_MAX = 100  # the column's length


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


EXPIRY_MAX = timedelta(days=3 * 366)  # a token for longer than this is one nobody will remember to revoke


async def create(session: AsyncSession, *, name: str, role: Role | str, actor: audit.Actor | None = None,
                 expires_at: datetime | None = None, now: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token; the plain text is returned once and never stored. `expires_at` (None: never)
    is when it stops working: in the future, at most EXPIRY_MAX ahead.

    Limiting a token to what it needs is its role's job (storage/roles.py): every route declares
    the roles it serves (api/http.py `Endpoint.roles`), and `pos`, the role for systems, reaches
    only orders, customer records and coupon redemption. Finer scopes would name the same groups again."""
    name = (name or "").strip()
    if role not in TOKEN_ROLES:
        raise Invalid("role", f"role must be one of {', '.join(TOKEN_ROLES)}")
    if not name or len(name) > NAME_MAX or any(not char.isprintable() for char in name):
        raise Invalid("name", f"a name has 1 to {NAME_MAX} printable characters")
    now = now or utcnow()
    if expires_at is not None and not now < expires_at <= now + EXPIRY_MAX:
        raise Invalid("expires_at", f"must be in the future and at most {EXPIRY_MAX.days} days ahead")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, role=Role(role), token_hash=_hash(plain), token_prefix=plain[:10], expires_at=expires_at)
    session.add(token)
    await session.flush()
    expiry = {"expires_at": expires_at.isoformat()} if expires_at else {}
    audit.record_by(session, actor, audit.Action.API_TOKEN_CREATED, target=f"api_token:{token.id}", name=name, role=str(token.role),
                    **expiry)
    return token, plain


def expired(token: ApiToken, now: datetime) -> bool:
    return token.expires_at is not None and token.expires_at <= now


async def list_all(session: AsyncSession) -> list[ApiToken]:
    """Every token, the usable ones first, newest first."""
    statement = sa.select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
    return list((await session.execute(statement)).scalars())


async def revoke(session: AsyncSession, token_id: int, *, actor: audit.Actor | None = None) -> ApiToken:
    """The token stops working at once (its next request gets 401)."""
    token = await session.get(ApiToken, token_id, with_for_update=True)
    if token is None:
        raise NotFound(f"no API token {token_id}")
    if token.revoked_at is not None:
        raise Conflict("already_revoked", "this token is revoked already")
    token.revoked_at = utcnow()
    audit.record_by(session, actor, audit.Action.API_TOKEN_REVOKED, target=f"api_token:{token.id}", name=token.name, role=str(token.role))
    return token


async def authenticate(session: AsyncSession, plain: str, *, now: datetime | None = None) -> ApiToken | None:
    """The token that is not revoked, whether or not it has expired (the caller tells an expired
    one apart, `expired`, to say so); its use is noted only when it is still good."""
    statement = sa.select(ApiToken).where(ApiToken.token_hash == _hash(plain), ApiToken.revoked_at.is_(None))
    token = (await session.execute(statement)).scalar_one_or_none()
    now = now or utcnow()
    if token is not None and not expired(token, now):
        token.last_used_at = now
    return token
