"""REST API bearer tokens, stored hashed: created and revoked by admins (the console's APIトークン
page or `kizuna token create`), audited when someone is named."""

from __future__ import annotations

import hashlib
import secrets

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


async def create(session: AsyncSession, *, name: str, role: Role | str, actor: audit.Actor | None = None) -> tuple[ApiToken, str]:
    """A new token; the plain text is returned once and never stored."""
    name = (name or "").strip()
    if role not in TOKEN_ROLES:
        raise Invalid("role", f"role must be one of {', '.join(TOKEN_ROLES)}")
    if not name or len(name) > NAME_MAX or any(not char.isprintable() for char in name):
        raise Invalid("name", f"a name has 1 to {NAME_MAX} printable characters")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, role=Role(role), token_hash=_hash(plain), token_prefix=plain[:10])
    session.add(token)
    await session.flush()
    audit.record_by(session, actor, audit.Action.API_TOKEN_CREATED, target=f"api_token:{token.id}", name=name, role=str(token.role))
    return token, plain


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


async def authenticate(session: AsyncSession, plain: str) -> ApiToken | None:
    statement = sa.select(ApiToken).where(ApiToken.token_hash == _hash(plain), ApiToken.revoked_at.is_(None))
    token = (await session.execute(statement)).scalar_one_or_none()
    if token is not None:
        token.last_used_at = utcnow()
    return token
