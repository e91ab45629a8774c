"""follow / unfollow: keep the customer's follow state and greet new friends."""

from __future__ import annotations

from typing import Any

from kizuna.flows.engine import Input
from kizuna.flows.registration import registration_offer
from kizuna.storage import customers, friend_sources

from .context import HandlerContext
from .router import Router

router = Router("follow")


@router.on("follow")
async def on_follow(event: Any, ctx: HandlerContext) -> None:
    assert ctx.customer is not None
    returning = bool(ctx.payload.get("follow", {}).get("isUnblocked"))
    customers.mark_followed(ctx.customer, ctx.event_time)
    # Came through a source's link (LINE Login, bot/friend_links.py) before this follow arrived:
    # the customer gets the source and its tag now.
    await friend_sources.resolve_on_follow(ctx.session, ctx.customer, ctx.event_time)
    await ctx.refresh_profile()  # display name and picture may have changed while blocked
    greeting: dict = {"type": "text", "text": await ctx.text("greeting_again" if returning else "greeting")}
    if not ctx.customer.registered:  # offer membership under the greeting
        greeting["quickReply"] = {"items": [await registration_offer(ctx)]}
    ctx.reply(greeting)
    # Flows may start on follow (their entry points say so).
    await ctx.services.flows.handle(ctx.flow_context(), Input("follow"))


@router.on("unfollow")
async def on_unfollow(event: Any, ctx: HandlerContext) -> None:
    assert ctx.customer is not None
    customers.mark_unfollowed(ctx.customer, ctx.event_time)
