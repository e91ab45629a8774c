"""Helpers for tests that drive the emulator: a clock to move by hand, and a minimal bot.

``FakeBot`` is deliberately tiny and independent of Kizuna's real bot: it checks the webhook
signature with line-bot-sdk's own ``WebhookParser`` (so the emulator's signing is verified by
LINE's code, not by ours) and records what it received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web


class FakeClock:
    """Seconds since the epoch that only move when told to: ``emu.clock = FakeClock()``."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeBot:
    """Answers webhooks: verifies the signature, keeps every body, runs ``on_event`` for each
    event, then answers ``status`` (400 for a bad signature)."""

    def __init__(self, channel_secret: str) -> None:
        from linebot.v3 import WebhookParser

        self.parser = WebhookParser(channel_secret)
        self.raw: list[bytes] = []
        self.payloads: list[dict[str, Any]] = []
        self.parsed: list[Any] = []
        self.rejected = 0
        self.status = 200
        self.on_event: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._condition: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._condition is None:
            self._condition = asyncio.Condition()
        return self._condition

    async def callback(self, request: web.Request) -> web.Response:
        from linebot.v3.exceptions import InvalidSignatureError

        body = await request.read()
        signature = request.headers.get("X-Line-Signature", "")
        try:
            self.parsed.extend(self.parser.parse(body.decode("utf-8"), signature))
        except InvalidSignatureError:
            self.rejected += 1
            return web.Response(status=400, text="bad signature")
        payload = json.loads(body)
        self.raw.append(body)
        self.payloads.append(payload)
        if self.on_event is not None:
            for event in payload["events"]:
                await self.on_event(event)
        async with self._cond():
            self._cond().notify_all()
        return web.Response(status=self.status, text="ok")

    def app(self, path: str = "/callback") -> web.Application:
        app = web.Application()
        app.router.add_post(path, self.callback)
        return app

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for p in self.payloads for e in p["events"]]

    async def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        condition = self._cond()
        try:
            async with asyncio.timeout(timeout):
                async with condition:
                    await condition.wait_for(lambda: len(self.events) >= count)
        except TimeoutError:
            raise TimeoutError(f"waited for {count} event(s), got {len(self.events)}") from None
        return self.events
