"""Effects on LINE's side that flows ask for, run after the event commits.

They are best effort and idempotent (linking a rich menu twice is harmless); a
failure is logged and does not undo the committed event.
"""

from __future__ import annotations

import logging

from . import richmenu
from .line import LineClient, LineError

log = logging.getLogger("kizuna.effects")


class EffectRunner:
    def __init__(self, line: LineClient) -> None:
        self.line = line

    async def run(self, line_user_id: str | None, effect: dict) -> None:
        kind = effect.get("type")
        run = self._runners().get(kind)
        if run is None or line_user_id is None:
            log.error("effect %r for %s cannot run", effect, line_user_id)
            return
        try:
            await run(line_user_id, effect)
        except LineError as error:
            log.warning("effect %s for %s failed: %s", kind, line_user_id, error)

    def _runners(self) -> dict:
        """Effect type -> coroutine(line_user_id, effect)."""
        return {
            # {"type": "rich_menu", "menu": "registered" | "default"}: link the member menu,
            # or unlink so the default shows; nothing when no menu is set up.
            "rich_menu": lambda line_user_id, effect: richmenu.switch_user_menu(self.line, line_user_id, effect.get("menu")),
        }
