"""Real processes for fault tests: a Redis and a PostgreSQL cluster of the test's own (so
killing or restarting them never touches the machine's shared services), and `kizuna`
processes started from the command line, as an operator would.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.conftest import ACCESS_TOKEN, CHANNEL_SECRET, SECRET_KEY, eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 15.0, *, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


class RedisServer:
    """`redis-server` on a free port, in memory only; stop/start/flush at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, process=self.process)

    def kill(self) -> None:
        """Gone at once, with everything it held (as SHUTDOWN NOSAVE without persistence)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def flushall(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "FLUSHALL"], check=True, capture_output=True, timeout=10)


@asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


class PostgresCluster:
    """A PostgreSQL cluster of the test's own (`initdb` + `pg_ctl`), run as the
    `postgres` user when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            command = ("runuser", "-u", "postgres", "--", *command)
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.directory, postgres.pw_uid, postgres.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        options = "\n".join([
            f"port = {self.port}", "listen_addresses = '127.0.0.1'", f"unix_socket_directories = '{self.directory}'",
            "fsync = off", "full_page_writes = off", "max_connections = 200",
        ])
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n" + options + "\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart_immediate(self) -> None:
        """A crash restart: every connection is cut, unfinished transactions are lost."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "restart", "-l", str(self.directory / "log"))


@asynccontextmanager
async def postgres_cluster() -> AsyncIterator[PostgresCluster]:
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        raise RuntimeError("initdb/pg_ctl are not installed")
    directory = Path(tempfile.mkdtemp(prefix="kizuna-pg-"))
    cluster = PostgresCluster(directory)
    try:
        await asyncio.to_thread(cluster.init)
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop, "immediate")
        shutil.rmtree(directory, ignore_errors=True)


# -- kizuna processes ---------------------------------------------------------------------


def kizuna_env(database_url: str, emulator_url: str, port: int, redis_url: str | None, redis_prefix: str, **extra: str) -> dict[str, str]:
    """The environment of a `kizuna` process talking to the test's emulator."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LINE_", "KIZUNA_", "DATABASE_URL", "REDIS_URL", "PORT"))}
    env |= {
        "KIZUNA_SECRET_KEY": SECRET_KEY, "LINE_CHANNEL_SECRET": CHANNEL_SECRET, "LINE_CHANNEL_ACCESS_TOKEN": ACCESS_TOKEN,
        "LINE_API_BASE_URL": emulator_url, "LINE_DATA_API_BASE_URL": emulator_url, "KIZUNA_EMULATOR": "false",
        "DATABASE_URL": database_url, "PORT": str(port), "KIZUNA_SWEEP_INTERVAL": "0.5", "KIZUNA_REDIS_PREFIX": redis_prefix,
        "KIZUNA_SOURCE_LOCK_SECONDS": "2", "KIZUNA_DELIVERY_CLAIM_SECONDS": "2", "KIZUNA_CAMPAIGN_CLAIM_SECONDS": "3",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env | extra


class KizunaProcess:
    """A `kizuna serve` or `kizuna worker` subprocess; its log goes to a file for the test to read."""

    def __init__(self, command: str, env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "kizuna.bot.cli", self.command], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        if self.running:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def wait_healthy(port: int, process: KizunaProcess, timeout: float = 30) -> None:
    async def healthy() -> bool:
        if not process.running:
            raise AssertionError(f"kizuna {process.command} exited: {process.log()[-3000:]}")
        try:
            async with aiohttp.ClientSession() as client, client.get(f"http://127.0.0.1:{port}/healthz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(healthy, timeout=timeout, what=f"kizuna serve on port {port} to answer /healthz")


@asynccontextmanager
async def kizuna_process(command: str, env: dict[str, str], log_path: Path, *, health_port: int | None = None) -> AsyncIterator[KizunaProcess]:
    process = KizunaProcess(command, env, log_path)
    process.start()
    try:
        if health_port is not None:
            await wait_healthy(health_port, process)
        yield process
    finally:
        # In a thread: the emulator shares this event loop and must keep answering the
        # process while it finishes its work and stops.
        await asyncio.to_thread(process.stop)


async def two_serves_one_killed(database_url: str, emulator, redis_prefix: str, tmp_path: Path, user_ids: list[str], *,
                                kill_after: int, what: str) -> int:
    """Two `kizuna serve` processes (each runs the worker in-process) on one database; the first is
    SIGKILLed once `kill_after` messages reached `user_ids`, and the other goes on until each of
    them has one. How many had arrived at the kill (to check it came mid-way)."""
    def arrived() -> int:
        return sum(len(emulator.messages_to(user_id)) for user_id in user_ids)

    first, second = free_port(), free_port()
    async with kizuna_process("serve", kizuna_env(database_url, emulator.base_url, first, None, redis_prefix),
                              tmp_path / "a.log", health_port=first) as victim, \
            kizuna_process("serve", kizuna_env(database_url, emulator.base_url, second, None, redis_prefix),
                           tmp_path / "b.log", health_port=second):
        async def some_sent() -> bool:
            return arrived() >= kill_after

        await eventually(some_sent, timeout=30, what=f"the first {what} to go out")
        victim.kill()
        at_kill = arrived()

        async def all_sent() -> bool:
            return all(emulator.messages_to(user_id) for user_id in user_ids)

        await eventually(all_sent, timeout=120, what=f"every customer's {what}")
    return at_kill
