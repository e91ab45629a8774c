"""Postbacks: button and rich-menu taps, datetime pickers. Flows own them."""

from __future__ import annotations

from typing import Any

from kizuna.flows.engine import Input

from .context import HandlerContext
from .message import one_to_one
from .router import Router

router = Router("postback")


@router.on("postback", when=one_to_one)
async def on_postback(event: Any, ctx: HandlerContext) -> None:
    postback = ctx.payload.get("postback") or {}
    tapped = Input("postback", data=postback.get("data", ""), params=postback.get("params"))
    await ctx.services.flows.handle(ctx.flow_context(), tapped)
