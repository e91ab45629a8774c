"""The `kizuna` command: serve, worker, migrate, token."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web

from .settings import Settings, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kizuna", description="Kizuna: LINE chat-bot and CRM")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web app (and, without REDIS_URL, the worker too)")
    serve.add_argument("--port", type=int, help="overrides PORT")
    serve.add_argument("--host", help="overrides HOST")
    commands.add_parser("worker", help="process events and deliveries (production mode: REDIS_URL set)")
    commands.add_parser("migrate", help="bring the database schema up to date")

    token = commands.add_parser("token", help="REST API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token; it is printed once, on the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--role", default="admin", choices=("admin", "marketer", "staff", "pos"))

    args = parser.parse_args(argv)
    overrides = {key: value for key, value in (("port", getattr(args, "port", None)), ("host", getattr(args, "host", None))) if value is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        print(f"kizuna: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "serve":
        return _serve(settings)
    if args.command == "worker":
        return _worker(settings)
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "token":
        return asyncio.run(_create_token(settings, args.name, args.role))
    return 2


def _serve(settings: Settings) -> int:
    from .app import create_app

    urls = [f"Kizuna is running on {settings.base_url}"]
    if settings.emulator:
        urls.append(f"  LINE emulator chat: {settings.base_url}/emulator/")
    urls += [f"  REST API:           {settings.base_url}/api/v1/openapi.json", f"  Health:             {settings.base_url}/healthz"]
    mode = "embedded (SQLite/in-process queue)" if settings.embedded else "production (ingest only; run `kizuna worker`)"
    urls.append(f"  Mode: {mode}")
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=lambda _: print("\n".join(urls), flush=True), access_log=None)
    return 0


def _worker(settings: Settings) -> int:
    if settings.embedded:
        print("kizuna: setting REDIS_URL: is required for `kizuna worker` (without it `kizuna serve` runs the worker itself)", file=sys.stderr)
        return 2
    asyncio.run(_run_worker(settings))
    return 0


async def _run_worker(settings: Settings) -> None:
    from redis.asyncio import Redis

    from kizuna.storage.db import create_engine, session_factory
    from kizuna.storage.queue import RedisQueue

    from .app import build_worker, line_client_for

    engine = create_engine(settings.database_url)
    redis = Redis.from_url(settings.redis_url)
    line = line_client_for(settings)
    worker = build_worker(settings, sessions=session_factory(engine), line=line, queue=RedisQueue(redis, settings.redis_prefix))
    task = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    logging.getLogger("kizuna.worker").info("worker started")
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        await line.close()
        await redis.aclose()
        await engine.dispose()


def _migrate(settings: Settings) -> int:
    from kizuna.storage.migrate import upgrade

    upgrade(settings.database_url)
    print("database is up to date")
    return 0


async def _create_token(settings: Settings, name: str, role: str) -> int:
    from kizuna.storage import tokens
    from kizuna.storage.db import create_engine, session_factory, transaction

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            token, plain = await tokens.create(session, name=name, role=role)
    finally:
        await engine.dispose()
    print(f"created {token.role} token {token.name!r} (id {token.id}); it is shown only now:")
    print(plain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
