"""The customer panel beside a conversation and on the customer's page: profile and
registration data, purchases with the churn model's outlook (継続見込み, expected purchases, model
LTV: campaigns/churn.py), tags, coupons granted, past conversations."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kizuna.flows.coupons import until_text
from kizuna.storage import conversations, coupons, customer_metrics, tags
from kizuna.storage.models import Customer

COUPONS_SHOWN = 10


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
    }
