"""Handlers, one module per LINE event kind, composed into one router here.

Every event is recorded on the timeline by the processor before routing, so event
kinds without a handler here (join, leave, beacon, unsend, ...) are recorded only.
"""

from . import follow, message, postback
from .context import HandlerContext
from .router import Router


def build_router() -> Router:
    root = Router("root")
    root.include(follow.router, message.router, postback.router)
    return root


__all__ = ["HandlerContext", "Router", "build_router"]
