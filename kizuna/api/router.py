"""The API's route table, built by `setup` from the areas' endpoint lists, and the middleware
every request under /api/v1 goes through: the token and its role, the declared parameters,
and every error in the API's shape (a service's typed errors, aiohttp's 404/405/413)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic_core import to_jsonable_python

from kizuna.storage import tokens
from kizuna.storage.db import transaction
from kizuna.storage.errors import ServiceError

from .http import ENDPOINT, PREFIX, TOKEN, ApiError, Endpoint, View, check_parameters, service_error, services
from .openapi import document

OPENAPI_PATH = PREFIX + "/openapi.json"
# aiohttp's own answers under /api/v1 (no route, wrong method, body too large), in the API's shape.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def setup(app: web.Application, endpoints: Sequence[Endpoint]) -> None:
    """Serve `endpoints` under /api/v1, and the OpenAPI document made from the same list (made at
    its first request, then kept: pydantic's schemas take about 0.1 s of CPU, which every start of
    the app paid, also the many that never serve the document)."""
    endpoints = list(endpoints)
    made: list[dict] = []

    async def openapi_json(request: web.Request) -> web.Response:
        if not made:
            made.append(document(endpoints))
        return web.json_response(made[0])

    # The route that matched, by its path as declared (aiohttp's `canonical`) and method.
    table = {(item.full_path, item.method): item for item in endpoints}
    app.middlewares.append(_middleware(table))
    app.router.add_get(OPENAPI_PATH, openapi_json)
    for item in endpoints:
        app.router.add_route(item.method, _route_path(item, endpoints), item.view)


def _route_path(item: Endpoint, endpoints: Sequence[Endpoint]) -> str:
    """The aiohttp route for `item`, matching exactly the URLs its OpenAPI path does: an integer
    segment is digits, and a text segment is never a fixed path beside it (as in OpenAPI,
    /faq/export is its own path, not /faq/{faq_id}), so 405 and its Allow are those of the path."""
    parts = item.full_path.split("/")
    for index, part in enumerate(parts):
        if not part.startswith("{"):
            continue
        name = part[1:-1]
        if item.param(name)["schema"]["type"] == "integer":
            parts[index] = "{%s:[0-9]+}" % name
        elif fixed := _fixed_beside(parts, index, endpoints):
            parts[index] = "{%s:(?!(?:%s)(?:/|$))[^{}/]+}" % (name, "|".join(re.escape(word) for word in fixed))
    return "/".join(parts)


def _fixed_beside(parts: list[str], index: int, endpoints: Sequence[Endpoint]) -> list[str]:
    """The fixed segments other paths of the same shape have where `parts` has a parameter."""
    fixed = set()
    for other in endpoints:
        theirs = other.full_path.split("/")
        if len(theirs) == len(parts) and theirs[:index] == parts[:index] and not theirs[index].startswith("{"):
            fixed.add(theirs[index])
    return sorted(fixed)


def _middleware(table: dict[tuple[str, str], Endpoint]):
    @web.middleware
    async def api_middleware(request: web.Request, handler: View) -> web.StreamResponse:
        if not request.path.startswith(PREFIX + "/") or request.path == OPENAPI_PATH:
            return await handler(request)
        try:
            resource = request.match_info.route.resource
            item = table.get((resource.canonical, request.method)) if resource is not None else None
            if item is not None:
                await _authenticate(request, item)
                request[ENDPOINT] = item
                check_parameters(request, item)
            return await handler(request)
        except ApiError as error:
            return _error_response(error)
        except ServiceError as error:
            return _error_response(service_error(error))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            message = exc.text if exc.status == 413 else f"{exc.reason}: {request.method} {request.path}"
            return _error_response(ApiError(exc.status, _HTTP_CODES.get(exc.status, "error"), message), headers)

    return api_middleware


def _error_response(error: ApiError, headers: dict | None = None) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message, **to_jsonable_python(error.extra)}}
    return web.json_response(body, status=error.status, dumps=_dumps, headers=headers)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def _authenticate(request: web.Request, item: Endpoint) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, plain = header.partition(" ")
    if scheme.lower() != "bearer" or not plain:
        raise ApiError(401, "unauthorized", "an API token is required: Authorization: Bearer <token>")
    async with transaction(services(request).sessions) as session:
        token = await tokens.authenticate(session, plain.strip(), now=services(request).clock())
    if token is None:
        raise ApiError(401, "unauthorized", "the API token is unknown or revoked")
    if tokens.expired(token, services(request).clock()):
        raise ApiError(401, "token_expired", f"the API token expired at {token.expires_at.isoformat()}: an admin can issue a new one")
    if token.role not in item.roles:
        raise ApiError(403, "forbidden", f"the {token.role} role may not do this")
    request[TOKEN] = token
