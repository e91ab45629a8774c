"""Messages from a customer in a one-to-one chat: silence while a person owns the
customer's conversation, else an active flow first, then the inquiry answerer (FAQ),
else a receipt that never echoes the customer's text (a sticker: a friendly line; a photo
or a file: how to reach a person)."""

from __future__ import annotations

from typing import Any

from kizuna.flows import support
from kizuna.flows.engine import Input

from .context import HandlerContext
from .router import Router

router = Router("message")


def one_to_one(event: Any, ctx: HandlerContext) -> bool:
    return ctx.payload.get("source", {}).get("type") == "user"


@router.on("message.text", when=one_to_one)
async def on_text(event: Any, ctx: HandlerContext) -> None:
    text = ctx.payload["message"].get("text", "")
    flow_ctx = ctx.flow_context()
    conversation = await support.owned_by_person(flow_ctx)
    if conversation is not None:  # a person answers: the bot stays silent
        await support.customer_message(flow_ctx, conversation, Input("text", text=text))
        return
    if await ctx.services.flows.handle(flow_ctx, Input("text", text=text)):
        return
    if ctx.services.inquiries is not None and await ctx.services.inquiries.answer(flow_ctx, text):
        return
    await ctx.reply_text("received")


@router.on("message", when=one_to_one)
async def on_other_message(event: Any, ctx: HandlerContext) -> None:
    """Stickers, images, ...: a flow in progress asks its question again; otherwise a sticker
    gets a friendly line, and a photo or a file says that a person reads those."""
    flow_ctx = ctx.flow_context()
    conversation = await support.owned_by_person(flow_ctx)
    if conversation is not None:
        await support.customer_message(flow_ctx, conversation, Input("other"))
        return
    if await ctx.services.flows.handle(flow_ctx, Input("other")):
        return
    sticker = (ctx.payload.get("message") or {}).get("type") == "sticker"
    await ctx.reply_text("received_sticker" if sticker else "received_media")
