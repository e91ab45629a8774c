"""Settings errors stop start-up with one clear line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from kizuna.bot.settings import SettingsError, load_settings


def _kizuna(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("LINE_", "KIZUNA_", "DATABASE_URL", "REDIS_URL", "PORT"))}
    return subprocess.run([sys.executable, "-m", "kizuna.bot.cli", *args], env=clean | env, cwd=cwd, capture_output=True, text=True, timeout=60)


GOOD_KEY = {"KIZUNA_SECRET_KEY": "k" * 40}


@pytest.mark.parametrize(
    "env, variable",
    [
        ({}, "KIZUNA_SECRET_KEY"),
        ({"KIZUNA_SECRET_KEY": "short"}, "KIZUNA_SECRET_KEY"),
        (GOOD_KEY | {"PORT": "eighty"}, "PORT"),
        (GOOD_KEY | {"PORT": "70000"}, "PORT"),
        (GOOD_KEY | {"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"),
        (GOOD_KEY | {"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        (GOOD_KEY | {"LINE_API_BASE_URL": "ftp://example"}, "LINE_API_BASE_URL"),
        (GOOD_KEY | {"LINE_CHANNEL_SECRET": "abc"}, "LINE_CHANNEL_ACCESS_TOKEN"),
    ],
)
def test_bad_setting_stops_startup_with_one_line_naming_it(env, variable, tmp_path):
    result = _kizuna("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was created


def test_env_file_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("KIZUNA_SECRET_KEY=" + "e" * 40 + "\nPORT=9123\n")
    monkeypatch.chdir(tmp_path)
    for key in ("KIZUNA_SECRET_KEY", "PORT"):
        monkeypatch.delenv(key, raising=False)
    settings = load_settings()
    assert settings.port == 9123
    assert settings.embedded and settings.emulator
    assert settings.line_api_base_url == "http://127.0.0.1:9123/emulator"


def test_real_credentials_turn_the_emulator_off(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KIZUNA_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("LINE_CHANNEL_SECRET", "secret")
    monkeypatch.setenv("LINE_CHANNEL_ACCESS_TOKEN", "token")
    settings = load_settings()
    assert settings.emulator is False
    assert settings.line_api_base_url == "https://api.line.me"
    assert settings.line_data_api_base_url == "https://api-data.line.me"


def test_plain_database_urls_get_async_drivers(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KIZUNA_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/kizuna")
    assert load_settings().database_url == "postgresql+asyncpg://u@db/kizuna"
    monkeypatch.setenv("DATABASE_URL", "nonsense")
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings()
