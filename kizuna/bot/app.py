"""The app factory: `create_app(settings)` builds the web app for `kizuna serve`.

Resources are opened and closed in cleanup_ctx, in order: database, Redis, LINE
client, queue, then (embedded mode) the worker. Tests call this same factory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import sqlalchemy as sa
from aiohttp import web
from redis.asyncio import Redis

from kizuna.flows import all_commands, all_flows
from kizuna.flows.engine import FlowEngine
from kizuna.flows.faq.inquiry import InquiryService
from kizuna.flows.services import Services
from kizuna.handlers import Router, build_router
from kizuna.storage.db import create_engine, session_factory
from kizuna.storage.queue import InProcessQueue, RedisQueue

from . import api, api_coupons, webhook
from .ingest import EventIngest
from .keys import ENGINE, INGEST, LINE, QUEUE, REDIS, ROUTER, SESSIONS, SETTINGS, WORKER
from .effects import EffectRunner
from .line import LineClient
from .processor import EventProcessor
from .sender import DeliverySender
from .settings import Settings
from .worker import Worker

log = logging.getLogger("kizuna.app")


def create_app(settings: Settings, *, run_worker: bool | None = None, router: Router | None = None) -> web.Application:
    """The web app. `run_worker` defaults to embedded mode (no REDIS_URL); `router`
    defaults to every handler of `kizuna.handlers`."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[ROUTER] = router or build_router()
    app.cleanup_ctx.extend([_database, _redis, _line_client, _queue, _ingest])
    if settings.embedded if run_worker is None else run_worker:
        app.cleanup_ctx.append(_worker)
    app.add_routes(webhook.routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    api.setup_api(app)
    api_coupons.setup_coupon_routes(app)
    if settings.emulator:
        _mount_emulator(app, settings)
    return app


def _mount_emulator(app: web.Application, settings: Settings) -> None:
    from kizuna.emulator import Emulator

    emulator = Emulator(
        channel_secret=settings.line_channel_secret,
        access_token=settings.line_channel_access_token,
        webhook_url=f"http://{settings.host}:{settings.port}/callback",
    )
    app.add_subapp("/emulator", emulator.create_app())


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    yield
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS].redis_url
    if url is None:
        yield
        return
    client = Redis.from_url(url)
    app[REDIS] = client
    yield
    await client.aclose()


async def _line_client(app: web.Application) -> AsyncIterator[None]:
    app[LINE] = line_client_for(app[SETTINGS])
    yield
    await app[LINE].close()


def line_client_for(settings: Settings) -> LineClient:
    return LineClient(
        access_token=settings.line_channel_access_token,
        api_base_url=settings.line_api_base_url,
        data_api_base_url=settings.line_data_api_base_url,
        timeout=settings.line_timeout_seconds,
    )


async def _queue(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[QUEUE] = RedisQueue(app[REDIS], settings.redis_prefix, lock_ttl=settings.source_lock_seconds) if settings.redis_url else InProcessQueue()
    yield


async def _ingest(app: web.Application) -> AsyncIterator[None]:
    ingest = EventIngest(app[ENGINE], app[QUEUE])
    app[INGEST] = ingest
    task = asyncio.create_task(ingest.run(), name="kizuna-ingest")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _worker(app: web.Application) -> AsyncIterator[None]:
    worker = build_worker(app[SETTINGS], sessions=app[SESSIONS], line=app[LINE], queue=app[QUEUE], router=app[ROUTER])
    app[WORKER] = worker
    task = asyncio.create_task(worker.run(), name="kizuna-worker")
    yield
    await stop_worker(worker, task)


async def stop_worker(worker: Worker, task: asyncio.Task, grace: float = 15.0) -> None:
    """Let the worker finish the events in hand; cancel it if that takes too long."""
    worker.stop()
    try:
        await asyncio.wait_for(asyncio.shield(task), grace)
    except TimeoutError:
        log.warning("worker did not stop within %.0f s; cancelling it", grace)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def build_services(settings: Settings) -> Services:
    # One inquiry answerer per process: it holds the FAQ index, built on first use and
    # rebuilt when the stored FAQ revision moves; it also answers questions mid-flow.
    inquiries = InquiryService()
    flows = FlowEngine(all_flows(), commands=all_commands(), side_answerer=inquiries.side_answer)
    return Services(flows=flows, public_url=settings.base_url, inquiries=inquiries)


def build_worker(settings: Settings, *, sessions, line: LineClient, queue, router: Router | None = None) -> Worker:
    sender = DeliverySender(sessions=sessions, line=line, claim_timeout=timedelta(seconds=settings.delivery_claim_seconds))
    processor = EventProcessor(
        sessions=sessions, line=line, router=router or build_router(), services=build_services(settings),
        sender=sender, effects=EffectRunner(line), max_attempts=settings.max_event_attempts,
    )
    return Worker(
        queue=queue, processor=processor, sender=sender, sessions=sessions,
        concurrency=settings.worker_concurrency, sweep_interval=settings.sweep_interval_seconds,
    )


async def healthz(request: web.Request) -> web.Response:
    checks = {"database": "ok", "redis": "not configured"}
    healthy = True
    try:
        async with request.app[SESSIONS]() as session:
            await session.execute(sa.text("SELECT 1"))
    except Exception as exc:
        checks["database"], healthy = f"error: {type(exc).__name__}", False
    if REDIS in request.app:
        try:
            await request.app[REDIS].ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"], healthy = f"error: {type(exc).__name__}", False
    return web.json_response({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)


async def index(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.emulator:
        raise web.HTTPFound("/emulator/")
    return web.json_response({"name": "Kizuna", "api": "/api/v1/openapi.json", "health": "/healthz"})
