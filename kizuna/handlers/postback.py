"""Postbacks: button and rich-menu taps, datetime pickers. Flows own them; the inquiry
answerer takes the ones no flow wants (FAQ feedback and choices, handoff)."""

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
    flow_ctx = ctx.flow_context()
    if await ctx.services.flows.handle(flow_ctx, tapped):
        return
    # FAQ feedback, an FAQ chosen among several, "talk to a person", the inquiry menu.
    if ctx.services.inquiries is not None:
        await ctx.services.inquiries.postback(flow_ctx, tapped)
