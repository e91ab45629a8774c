"""The app factory: `create_app(settings)` builds the web app for `kizuna serve`.

Resources are opened and closed in cleanup_ctx, in order: database, Redis, LINE
client, queue, the process's services (`SERVICES`: what the REST API, the console and
the bot's flows call), then (embedded mode) the worker. Tests call this same factory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import sqlalchemy as sa
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna import api
from kizuna.appkeys import SERVICES
from kizuna.console import create_console
from kizuna.flows import all_commands, all_flows, support
from kizuna.flows.engine import FlowEngine
from kizuna.flows.faq.inquiry import InquiryService
from kizuna.flows.media import MediaLibrary, MediaUnavailable
from kizuna.flows.services import Services
from kizuna.flows.support import SupportDesk
from kizuna.handlers import Router, build_router
from kizuna.storage.broadcast import Broadcaster, InProcessBroadcaster, RedisBroadcaster
from kizuna.storage.db import create_engine, session_factory
from kizuna.storage.dependency import Dependency
from kizuna.storage.queue import InProcessQueue, RedisQueue, WorkQueue

from . import friend_links, tracked_links, webhook
from .ingest import EventIngest
from .keys import ENGINE, INGEST, LINE, QUEUE, REDIS, ROUTER, SESSIONS, SETTINGS, WORKER
from .line import LineClient, LineError
from .processor import EventProcessor
from .ratelimit import InProcessRateLimiter, RedisRateLimiter
from .richmenu import RichMenus
from .sender import DeliverySender
from .settings import Settings
from .campaign_sender import CampaignSender
from .worker import Worker

log = logging.getLogger("kizuna.app")


def create_app(settings: Settings, *, run_worker: bool | None = None, router: Router | None = None) -> web.Application:
    """The web app. `run_worker` defaults to embedded mode (no REDIS_URL); `router`
    defaults to every handler of `kizuna.handlers`."""
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[ROUTER] = router or build_router()
    app.cleanup_ctx.extend([_database, _redis, _line_client, _queue, _services, _ingest])
    if settings.embedded if run_worker is None else run_worker:
        app.cleanup_ctx.append(_worker)
    app.add_routes(webhook.routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    api.setup(app, areas=api.AREAS)
    app.add_routes(api.coupons.PUBLIC_ROUTES)
    app.add_routes(friend_links.routes)  # /f/{code}: friend-add sources (流入経路), public
    app.add_routes(tracked_links.routes)  # /r/{token}: campaigns' tracked links, public
    app.add_subapp("/console", create_console(settings=SETTINGS, sessions=SESSIONS))
    if settings.emulator:
        _mount_emulator(app, settings)
        app.cleanup_ctx.append(_demo_rich_menus)
    return app


def _mount_emulator(app: web.Application, settings: Settings) -> None:
    from kizuna.emulator import Emulator

    emulator = Emulator(
        channel_secret=settings.line_channel_secret,
        access_token=settings.line_channel_access_token,
        webhook_url=f"http://{settings.host}:{settings.port}/callback",
        login_channel_id=settings.line_login_channel_id,
        login_channel_secret=settings.line_login_channel_secret,
    )
    app.add_subapp("/emulator", emulator.create_app())


async def _demo_rich_menus(app: web.Application) -> AsyncIterator[None]:
    """Emulator mode (`make run`): set the rich menus up as soon as this server answers (its
    emulator is the LINE the setup talks to, so it cannot run before), and link the member
    menu to the members, so a newcomer sees the menus without running a command."""
    task = asyncio.create_task(_set_up_rich_menus(app[LINE], app[SESSIONS]), name="kizuna-demo-richmenu")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _set_up_rich_menus(line: LineClient, sessions, attempts: int = 10) -> None:
    from .line import LineError
    from .richmenu import setup

    for attempt in range(attempts):
        try:
            report = await setup(line, sessions=sessions)
        except LineError as error:
            if error.status is not None or attempt == attempts - 1:  # refused, or never answered
                log.warning("rich menus not set up: %s (run `kizuna richmenu setup`)", error)
                return
            continue  # the server is not listening yet: the client's retries back off meanwhile
        except Exception:  # never take the server down for a demo convenience
            log.exception("rich menus not set up (run `kizuna richmenu setup`)")
            return
        for line_text in report.lines():
            log.info("rich menus (emulator): %s", line_text)
        return


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    yield
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    if app[SETTINGS].redis_url is None:
        yield
        return
    client = redis_client(app[SETTINGS])
    app[REDIS] = client
    yield
    await client.aclose()


# Connections a process opens to Redis at most. Redis runs one command at a time, so more would
# not make it answer sooner; a burst beyond them (a campaign round's 800 pushes each asking the
# shared rate limiter for a slot) waits for a free connection instead of failing.
REDIS_CONNECTIONS = 64
REDIS_CONNECTION_WAIT = 5.0  # seconds: longer and Redis is as good as unreachable


def redis_client(settings: Settings) -> Redis:
    # Socket timeouts bound every command (above the queue's 0.2 s blocking read), so
    # an unreachable Redis is an error after seconds, never a hang. The pool blocks when all its
    # connections are in use: redis-py's default pool raises MaxConnectionsError at 100 instead,
    # which the rate limiter read as "Redis unreachable" and fell back to a quarter of the limit
    # (bench/campaign_send.py --personalised: 30 fallbacks in 43 s, push held near 1,000/s).
    pool = BlockingConnectionPool.from_url(settings.redis_url, max_connections=REDIS_CONNECTIONS,
                                           timeout=REDIS_CONNECTION_WAIT, socket_timeout=5, socket_connect_timeout=2)
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool


def work_queue(settings: Settings, redis: Redis | None) -> WorkQueue:
    if redis is None:
        return InProcessQueue()
    return RedisQueue(
        redis, settings.redis_prefix, lock_ttl=settings.source_lock_seconds, work_timeout=settings.event_timeout_seconds,
        health=Dependency("Redis"),
    )


async def _line_client(app: web.Application) -> AsyncIterator[None]:
    app[LINE] = line_client_for(app[SETTINGS], app.get(REDIS))
    yield
    await app[LINE].close()


def line_client_for(settings: Settings, redis: Redis | None = None) -> LineClient:
    """With Redis, every process paces its requests in one shared limiter per endpoint, so N
    workers together stay under LINE's limits; without, this process alone (embedded mode)."""
    limits = settings.line_rate_limit_table
    if redis is not None:
        limiter = RedisRateLimiter(redis, prefix=settings.redis_prefix, limits=limits, fallback_share=settings.line_rate_fallback_share)
    else:
        limiter = InProcessRateLimiter(limits)
    return LineClient(
        access_token=settings.line_channel_access_token,
        api_base_url=settings.line_api_base_url,
        data_api_base_url=settings.line_data_api_base_url,
        timeout=settings.line_timeout_seconds,
        limiter=limiter,
    )


async def _queue(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[QUEUE] = work_queue(settings, app.get(REDIS))
    yield


async def _services(app: web.Application) -> AsyncIterator[None]:
    broadcaster = live_updates(app[SETTINGS], app.get(REDIS))
    app[SERVICES] = build_services(app[SETTINGS], sessions=app[SESSIONS], queue=app[QUEUE], broadcaster=broadcaster, line=app[LINE])
    yield
    if isinstance(broadcaster, RedisBroadcaster):
        await broadcaster.close()


def live_updates(settings: Settings, redis: Redis | None) -> Broadcaster:
    """Redis pub/sub between processes in production; in-process in embedded mode."""
    return RedisBroadcaster(redis, settings.redis_prefix) if redis is not None else InProcessBroadcaster()


async def _ingest(app: web.Application) -> AsyncIterator[None]:
    ingest = EventIngest(app[ENGINE], app[QUEUE])
    app[INGEST] = ingest
    task = asyncio.create_task(ingest.run(), name="kizuna-ingest")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _worker(app: web.Application) -> AsyncIterator[None]:
    worker = build_worker(app[SETTINGS], services=app[SERVICES], line=app[LINE], router=app[ROUTER])
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


def build_services(
    settings: Settings, *, sessions: async_sessionmaker[AsyncSession], queue: WorkQueue, broadcaster: Broadcaster, line: LineClient
) -> Services:
    # One inquiry answerer per process: it holds the FAQ index, built on first use and
    # rebuilt when the stored FAQ revision moves; it also answers questions mid-flow.
    inquiries = InquiryService()
    flows = FlowEngine(all_flows(), commands=all_commands(), side_answerer=inquiries.side_answer, handoff=support.handoff)
    services = Services(
        flows=flows, public_url=settings.base_url, sessions=sessions, queue=queue, broadcaster=broadcaster, inquiries=inquiries,
    )
    # Staff replies are sent by this process right after their commit (the sweeper of
    # any worker resends them if it dies first).
    sender = delivery_sender(settings, sessions=sessions, line=line)
    services.support = SupportDesk(
        sessions, send=sender.send, publish=broadcaster.publish, clock=lambda: services.clock(), public_url=settings.base_url,
    )
    services.media = MediaLibrary(sessions, fetch=media_fetcher(line))
    services.rich_menus = RichMenus(line, sessions)
    return services


def media_fetcher(line: LineClient):
    """LINE's content endpoint for flows/media.py, its errors in the services' terms."""
    async def fetch(message_id: str) -> tuple[bytes, str] | None:
        try:
            return await line.get_message_content(message_id)
        except LineError as error:
            raise MediaUnavailable(f"LINE did not give the content: {error}") from None

    return fetch


def delivery_sender(settings: Settings, *, sessions, line: LineClient) -> DeliverySender:
    return DeliverySender(sessions=sessions, line=line, claim_timeout=timedelta(seconds=settings.delivery_claim_seconds))


def build_worker(settings: Settings, *, services: Services, line: LineClient, router: Router | None = None) -> Worker:
    sessions = services.sessions
    sender = delivery_sender(settings, sessions=sessions, line=line)
    processor = EventProcessor(
        sessions=sessions, line=line, router=router or build_router(), services=services,
        sender=sender, publish_many=services.broadcaster.publish_many, max_attempts=settings.max_event_attempts,
    )
    return Worker(
        queue=services.queue, processor=processor, sender=sender, sessions=sessions,
        concurrency=settings.worker_concurrency, sweep_interval=settings.sweep_interval_seconds,
        decile_refresh=settings.decile_refresh_seconds,
        retention_hour=settings.retention_hour, retention_look=settings.retention_look_seconds,
        campaign_senders=settings.campaign_senders,
        campaign_sender=CampaignSender(sessions=sessions, line=line, secret_key=settings.secret_key, public_url=settings.base_url,
                                       clock=lambda: services.clock(), claim_timeout=timedelta(seconds=settings.campaign_claim_seconds),
                                       narrowcast_threshold=settings.narrowcast_threshold),
    )


HEALTH_CHECK_SECONDS = 2.0


async def healthz(request: web.Request) -> web.Response:
    """200 when every dependency answers; 503 naming the one that does not."""
    checks = {"database": await _check(_ping_database(request.app)), "redis": "not configured"}
    if REDIS in request.app:
        checks["redis"] = await _check(request.app[REDIS].ping())
    healthy = all(state in ("ok", "not configured") for state in checks.values())
    return web.json_response({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)


async def _ping_database(app: web.Application) -> None:
    async with app[SESSIONS]() as session:
        await session.execute(sa.text("SELECT 1"))


async def _check(ping) -> str:
    try:
        async with asyncio.timeout(HEALTH_CHECK_SECONDS):
            await ping
    except TimeoutError:
        return f"error: no answer within {HEALTH_CHECK_SECONDS:.0f} s"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


async def index(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if settings.emulator:
        raise web.HTTPFound("/emulator/")
    return web.json_response({"name": "Kizuna", "api": "/api/v1/openapi.json", "health": "/healthz"})
