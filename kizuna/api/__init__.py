"""The REST API under /api/v1 (OpenAPI at /api/v1/openapi.json): thin views, one module per
area. A view parses the request (http.py), calls a service in flows/ or storage/ (where the
rules are, the same functions the console and the bot call) and renders the answer.

Each area module lists its routes in `ENDPOINTS`, a plain list of `Endpoint`s; the app
factory passes the areas to `setup`, which builds the route table and the OpenAPI document
from those same lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from aiohttp import web

from . import (
    audit, automations, campaigns, cart_events, conversations, coupons, customers, data_requests, events, faq, friend_sources,
    merges, orders, privacy, segments, sequences, shop_events, tags, texts,
)
from .http import Endpoint
from .openapi import document
from .router import setup as _setup

AREAS: tuple[ModuleType, ...] = (customers, conversations, events, texts, coupons, faq, orders, cart_events, merges, segments, tags,
                                 friend_sources, campaigns, sequences, shop_events, privacy, audit, automations, data_requests)


def endpoints(areas: Sequence[ModuleType] = AREAS) -> list[Endpoint]:
    return [item for area in areas for item in area.ENDPOINTS]


def setup(app: web.Application, areas: Sequence[ModuleType] = AREAS) -> None:
    """Serve the areas' endpoints (and the OpenAPI document of exactly those) on `app`."""
    _setup(app, endpoints(areas))


def openapi_document(areas: Sequence[ModuleType] = AREAS) -> dict:
    return document(endpoints(areas))
