"""REST API bearer tokens, stored hashed."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ApiToken
from .roles import TOKEN_ROLES, Role
from .types import utcnow

TOKEN_PREFIX = "kzn_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create(session: AsyncSession, *, name: str, role: Role | str) -> tuple[ApiToken, str]:
    """A new token; the plain text is returned once and never stored."""
    if role not in TOKEN_ROLES:
        raise ValueError(f"role must be one of {', '.join(TOKEN_ROLES)}")
    if not name.strip():
        raise ValueError("name must not be empty")
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name.strip(), role=Role(role), token_hash=_hash(plain), token_prefix=plain[:10])
    session.add(token)
    await session.flush()
    return token, plain


async def authenticate(session: AsyncSession, plain: str) -> ApiToken | None:
    statement = sa.select(ApiToken).where(ApiToken.token_hash == _hash(plain), ApiToken.revoked_at.is_(None))
    token = (await session.execute(statement)).scalar_one_or_none()
    if token is not None:
        token.last_used_at = utcnow()
    return token
