"""The customer panel beside a conversation and on the customer's page: profile and
registration data, purchases with the churn model's outlook (継続見込み, expected purchases, model
LTV: campaigns/churn.py), consent history (storage/consents.py), tags, coupons granted, past conversations."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kizuna.flows.coupons import until_text
from kizuna.storage import consents, conversations, coupons, customer_metrics, tags
from kizuna.storage.models import Customer

COUPONS_SHOWN = 10
CONSENTS_SHOWN = 12


async def values(session: AsyncSession, customer: Customer, *, now, timezone, locale: str) -> dict[str, Any]:
    grants = await coupons.grants_of_customer(session, customer.id, valid_only=False, limit=COUPONS_SHOWN)
    metrics = (await customer_metrics.read(session, [customer.id], now=now))[customer.id]
    return {
        "customer": customer,
        "metrics": metrics,
        "horizon_days": (await customer_metrics.load_rules(session)).churn_horizon_days,
        "tags": await tags.of_customer(session, customer.id),
        "known_tags": await tags.known(session),
        # (grant, coupon, state, the last valid day as the customer's coupon says it)
        "grants": [(grant, coupon, coupons.grant_state(grant, now), until_text(grant.expires_at, timezone, locale)) for grant, coupon in grants],
        "history": await conversations.of_customer(session, customer.id, limit=10),
        "privacy": await _privacy(session, customer),
    }


async def _privacy(session: AsyncSession, customer: Customer) -> dict[str, Any]:
    """The consent history section (_consents.html): the version accepted, the latest ledger rows."""
    current = await consents.current_notice(session)
    accepted = await consents.get_notice(session, customer.privacy_notice_id) if customer.privacy_notice_id else None
    return {"accepted_version": accepted.version if accepted else None, "current_version": current.version if current else None,
            "history": await consents.history(session, customer.id, limit=CONSENTS_SHOWN)}
