"""Fixtures of the console tests (helpers in helpers.py). The settings here trust
X-Forwarded-For, so a test can log in "from" several addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kizuna.bot.settings import Settings
from tests.conftest import make_settings

from tests.console.helpers import Console


@pytest.fixture
def settings(database_url, emulator, redis_prefix, redis_cleanup) -> Settings:
    return make_settings(database_url, emulator.base_url, redis_prefix=redis_prefix, trust_forwarded_for=True)


@pytest.fixture
async def console(kizuna) -> AsyncIterator[Console]:
    helper = Console(kizuna)
    yield helper
    for browser in helper.browsers:
        await browser.close()


