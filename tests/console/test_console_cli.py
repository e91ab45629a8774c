"""`kizuna staff create|list|reset-password|reset-totp` and the first admin of `kizuna demo`."""

from __future__ import annotations

import asyncio
import io

import pytest
import sqlalchemy as sa

from kizuna.bot.cli import DEMO_ADMIN_EMAIL, main
from kizuna.storage import staff as staff_store
from kizuna.storage.db import create_engine, session_factory
from kizuna.storage.models import AuditEntry, Staff


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def stored(database_url: str, email: str) -> tuple[Staff | None, list[str]]:
    async def read():
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                staff = (await session.execute(sa.select(Staff).where(Staff.email == email))).scalar_one_or_none()
                actions = (await session.execute(sa.select(AuditEntry.action).order_by(AuditEntry.id))).scalars().all()
                return staff, list(actions)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def password_works(staff: Staff, password: str) -> bool:
    return asyncio.run(staff_store.verify_password(staff.password_hash, password))


@pytest.mark.real_password_hashing  # the stored hash's parameters are the product's
def test_create_with_a_piped_password(env, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a piped passphrase here\n"))
    assert main(["staff", "create", "--email", "Keiko@Example.com", "--role", "support", "--name", "佐藤 恵子"]) == 0
    out = capsys.readouterr().out
    assert "created support keiko@example.com" in out and "/console/" in out and "passphrase" not in out
    staff, actions = stored(env, "keiko@example.com")
    assert staff.display_name == "佐藤 恵子" and staff.role == "support"
    assert staff.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert password_works(staff, "a piped passphrase here")
    assert actions == ["staff.created"]


def test_create_generates_a_password_at_a_terminal_and_prints_it_last(env, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", Terminal())
    assert main(["staff", "create", "--email", "boss@example.com", "--role", "admin"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    password = lines[-1]
    assert lines[-2] == "the password is shown only now:" and len(password) == 19
    staff, _ = stored(env, "boss@example.com")
    assert staff.display_name == "boss" and password_works(staff, password)

    # again: the address is taken
    assert main(["staff", "create", "--email", "BOSS@example.com", "--role", "admin"]) == 1
    assert "exists" in capsys.readouterr().err
    # a role that is not a staff role, a short piped password, a bad address
    with pytest.raises(SystemExit):
        main(["staff", "create", "--email", "till@example.com", "--role", "pos"])
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["staff", "create", "--email", "x@example.com", "--role", "support"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert main(["staff", "create", "--email", "not an address", "--role", "support"]) == 2

    assert main(["staff", "list"]) == 0
    assert "boss@example.com" in capsys.readouterr().out


def test_reset_password_and_totp(env, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("the first passphrase\n"))
    assert main(["staff", "create", "--email", "lost@example.com", "--role", "marketer"]) == 0
    monkeypatch.setattr("sys.stdin", Terminal())
    assert main(["staff", "reset-password", "--email", "lost@example.com"]) == 0
    new = capsys.readouterr().out.strip().splitlines()[-1]
    staff, _ = stored(env, "lost@example.com")
    assert password_works(staff, new) and not password_works(staff, "the first passphrase")
    assert main(["staff", "reset-totp", "--email", "lost@example.com"]) == 0
    assert main(["staff", "reset-password", "--email", "nobody@example.com"]) == 1
    _, actions = stored(env, "lost@example.com")
    assert actions == ["staff.created", "staff.password_reset"]  # no 2FA was on: nothing to reset


def test_demo_creates_the_first_admin_once_and_prints_the_login(env, capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "created the first console admin" in out
    assert "added 3 example canned responses (定型文)" in out  # for the README's 1:1チャット story
    assert "console:  http://127.0.0.1:8080/console/" in out and f"e-mail:   {DEMO_ADMIN_EMAIL}" in out
    password = out.split("password: ")[1].split()[0]
    staff, _ = stored(env, DEMO_ADMIN_EMAIL)
    assert staff.role == "admin" and password_works(staff, password)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "created the first console admin" not in out and "staff accounts exist" in out
    assert "canned responses" not in out  # there are some: left as they are


def test_demo_creates_no_admin_with_real_line_credentials(env, monkeypatch, capsys):
    monkeypatch.setenv("LINE_CHANNEL_SECRET", "a-real-channel-secret")
    monkeypatch.setenv("LINE_CHANNEL_ACCESS_TOKEN", "a-real-token")
    assert main(["demo"]) == 0
    assert "kizuna staff create" in capsys.readouterr().out
    assert stored(env, DEMO_ADMIN_EMAIL)[0] is None
