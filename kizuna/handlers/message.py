"""Messages from a customer. Until the FAQ and flows exist, the bot confirms receipt
(never echoing the customer's text back)."""

from __future__ import annotations

from typing import Any

from .context import HandlerContext
from .router import Router

router = Router("message")


def _from_one_to_one_chat(event: Any, ctx: HandlerContext) -> bool:
    return ctx.payload.get("source", {}).get("type") == "user"


@router.on("message", when=_from_one_to_one_chat)
async def on_message(event: Any, ctx: HandlerContext) -> None:
    await ctx.reply_text("received")
