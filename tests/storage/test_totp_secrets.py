"""TOTP secrets are sealed at rest with a key derived from KIZUNA_SECRET_KEY. Real database."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pyotp
import pytest
import sqlalchemy as sa

from kizuna.storage import audit, staff
from kizuna.storage.db import create_engine, session_factory, transaction
from kizuna.storage.models import Staff

NOW = datetime(2026, 12, 5, 14, 0, tzinfo=timezone.utc)
KEY = "k" * 48
SEALER = staff.totp_sealer(KEY)


@pytest.fixture
async def sessions(database_url):
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def enrolled(sessions) -> tuple[int, str]:
    new = await staff.prepare(email="two@example.com", display_name="two", role="support", password="a long passphrase 1")
    async with transaction(sessions) as session:
        member = await staff.create(session, new, actor=audit.CLI)
        secret = staff.begin_totp(member, SEALER)
        assert await staff.confirm_totp(session, member, pyotp.TOTP(secret).at(NOW), actor=audit.CLI, now=NOW, sealer=SEALER)
    return member.id, secret


async def stored_secret(sessions, staff_id: int) -> str | None:
    async with sessions() as session:
        return (await session.execute(sa.select(Staff.totp_secret).where(Staff.id == staff_id))).scalar_one()


async def code_accepted(sessions, staff_id: int, code: str, sealer) -> bool:
    async with transaction(sessions) as session:
        member = await session.get(Staff, staff_id)
        return await staff.use_totp_code(session, member, code, now=NOW, sealer=sealer)


async def test_the_database_holds_the_secret_sealed_and_the_code_still_works(sessions):
    staff_id, secret = await enrolled(sessions)
    stored = await stored_secret(sessions, staff_id)
    assert secret not in stored and SEALER.open(stored) == secret
    assert await code_accepted(sessions, staff_id, pyotp.TOTP(secret).at(NOW, counter_offset=1), SEALER)


async def test_a_secret_stored_before_sealing_works_once_and_is_sealed(sessions):
    staff_id, secret = await enrolled(sessions)
    async with transaction(sessions) as session:  # as 0013 and earlier kept it
        await session.execute(sa.update(Staff).where(Staff.id == staff_id).values(totp_secret=secret))
    assert await code_accepted(sessions, staff_id, pyotp.TOTP(secret).at(NOW, counter_offset=1), SEALER)
    stored = await stored_secret(sessions, staff_id)
    assert stored != secret and SEALER.open(stored) == secret


async def test_another_secret_key_refuses_the_code_and_says_how_to_recover(sessions, caplog):
    staff_id, secret = await enrolled(sessions)
    with caplog.at_level(logging.WARNING, logger="kizuna.storage.staff"):
        assert not await code_accepted(sessions, staff_id, pyotp.TOTP(secret).at(NOW, counter_offset=1), staff.totp_sealer("o" * 48))
    assert "kizuna staff reset-totp --email two@example.com" in caplog.text
    async with transaction(sessions) as session:  # the CLI's reset, then enrolment again with the new key
        member = await session.get(Staff, staff_id)
        assert await staff.reset_totp(session, member, actor=audit.CLI)
        assert staff.begin_totp(member, staff.totp_sealer("o" * 48)) != secret
