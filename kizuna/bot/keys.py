"""Typed keys for what the app shares (aiohttp's AppKey: no string keys, no globals)."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kizuna.handlers import Router
from kizuna.storage.queue import WorkQueue

from .ingest import EventIngest
from .line import LineClient
from .settings import Settings
from .worker import Worker

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
REDIS = web.AppKey("redis", Redis)
QUEUE = web.AppKey("queue", WorkQueue)
LINE = web.AppKey("line", LineClient)
WORKER = web.AppKey("worker", Worker)
ROUTER = web.AppKey("router", Router)
INGEST = web.AppKey("ingest", EventIngest)
