"""The REST API under /api/v1: thin views over the same storage the bot uses.

Every route declares its roles and its OpenAPI description in one place (`endpoint`),
so the document at /api/v1/openapi.json cannot drift from the routes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from kizuna.storage import customers, events, interactions, texts, tokens
from kizuna.storage.db import transaction
from kizuna.storage.models import ApiToken, CustomerRead, InboundEvent, InteractionRead

from .keys import QUEUE, SESSIONS

PREFIX = "/api/v1"
ALL_ROLES = tokens.ROLES
READ_CUSTOMERS = ("admin", "marketer", "staff")

View = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN = web.RequestKey("api_token", ApiToken)


class ApiError(Exception):
    """An API error: rendered as {"error": {"code", "message", **extra}} with `status`."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def invalid_field(field: str, message: str) -> ApiError:
    """400 naming the field that is wrong (nothing was changed)."""
    return ApiError(400, "invalid_field", f"{field}: {message}", field=field)


@dataclass
class Endpoint:
    method: str
    path: str
    view: View
    summary: str
    roles: tuple[str, ...]
    response: type[BaseModel] | None = None
    request: type[BaseModel] | None = None
    query: list[dict] = field(default_factory=list)


class CustomerPage(BaseModel):
    items: list[CustomerRead]
    next_after: int | None


class InteractionPage(BaseModel):
    items: list[InteractionRead]
    next_before: int | None


class InboundEventRead(BaseModel):
    id: int
    webhook_event_id: str
    event_type: str
    source_key: str
    status: str
    attempts: int
    last_error: str | None
    payload: dict


class InboundEventPage(BaseModel):
    items: list[InboundEventRead]
    next_before: int | None


class BotTextRead(BaseModel):
    key: str
    locale: str
    text: str
    default: str
    edited: bool


class BotTextList(BaseModel):
    items: list[BotTextRead]


class BotTextUpdate(BaseModel):
    text: str


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, path: str, summary: str, *, roles: tuple[str, ...], **extra: Any) -> Callable[[View], View]:
    def register(view: View) -> View:
        ENDPOINTS.append(Endpoint(method, PREFIX + path, view, summary, roles, **extra))
        return view

    return register


def bool_query(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, "invalid_parameter", f"{name} must be true or false")


def int_query(request: web.Request, name: str, *, default: int | None = None, low: int = 1, high: int = 10**12) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}")
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise ApiError(404, "not_found", f"no such {name}") from None


PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
]


@endpoint(
    "GET", "/customers", "List customers (oldest first, cursor paging with `after`)",
    roles=READ_CUSTOMERS, response=CustomerPage,
    query=[{"name": "line_user_id", "in": "query", "schema": {"type": "string"}},
           {"name": "after", "in": "query", "schema": {"type": "integer"}}, *PAGING],
)
async def list_customers(request: web.Request) -> web.Response:
    limit = int_query(request, "limit", default=50, high=200)
    after = int_query(request, "after", low=0)
    async with request.app[SESSIONS]() as session:
        rows = await customers.list_page(session, line_user_id=request.query.get("line_user_id"), limit=limit, after_id=after)
    page = CustomerPage(items=[CustomerRead.model_validate(row, from_attributes=True) for row in rows],
                        next_after=rows[-1].id if len(rows) == limit else None)
    return _json(page)


@endpoint("GET", "/customers/{id}", "One customer", roles=READ_CUSTOMERS, response=CustomerRead)
async def get_customer(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        customer = await customers.get(session, path_id(request))
    if customer is None:
        raise ApiError(404, "not_found", "no such customer")
    return _json(CustomerRead.model_validate(customer, from_attributes=True))


@endpoint(
    "GET", "/customers/{id}/interactions", "A customer's timeline, newest first (cursor paging with `before`)",
    roles=READ_CUSTOMERS, response=InteractionPage,
    query=[{"name": "before", "in": "query", "schema": {"type": "integer"}}, *PAGING],
)
async def list_interactions(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    limit = int_query(request, "limit", default=50, high=200)
    before = int_query(request, "before", low=0)
    async with request.app[SESSIONS]() as session:
        if await customers.get(session, customer_id) is None:
            raise ApiError(404, "not_found", "no such customer")
        rows = await interactions.latest(session, customer_id, limit=limit, before_id=before)
    page = InteractionPage(items=[InteractionRead.model_validate(row, from_attributes=True) for row in rows],
                           next_before=rows[-1].id if len(rows) == limit else None)
    return _json(page)


@endpoint(
    "GET", "/events", "Inbound webhook events, newest first; `status=parked` lists the ones whose handler kept failing",
    roles=("admin",), response=InboundEventPage,
    query=[{"name": "status", "in": "query", "schema": {"type": "string", "enum": ["pending", "done", "parked"]}},
           {"name": "before", "in": "query", "schema": {"type": "integer"}}, *PAGING],
)
async def list_events(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status not in (None, "pending", "done", "parked"):
        raise ApiError(400, "invalid_parameter", "status must be pending, done or parked")
    limit = int_query(request, "limit", default=50, high=200)
    async with request.app[SESSIONS]() as session:
        rows = await events.list_events(session, status=status, limit=limit, before_id=int_query(request, "before", low=0))
    page = InboundEventPage(items=[InboundEventRead.model_validate(row, from_attributes=True) for row in rows],
                            next_before=rows[-1].id if len(rows) == limit else None)
    return _json(page)


@endpoint("POST", "/events/{id}/retry", "Process a parked event again", roles=("admin",), response=InboundEventRead)
async def retry_event(request: web.Request) -> web.Response:
    event_id = path_id(request)
    async with transaction(request.app[SESSIONS]) as session:
        source_key = await events.requeue_parked(session, event_id)
        if source_key is None:
            raise ApiError(409, "not_parked", "only a parked event can be retried")
        # As committed (pending): a worker may take it the moment it is queued.
        retried = InboundEventRead.model_validate(await session.get(InboundEvent, event_id, populate_existing=True), from_attributes=True)
    await request.app[QUEUE].put([source_key])
    return _json(retried)


@endpoint("GET", "/texts", "Bot texts (defaults and edits) in every locale", roles=("admin",), response=BotTextList)
async def list_texts(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        items = await texts.all_texts(session)
    return _json(BotTextList(items=[BotTextRead(**item) for item in items]))


@endpoint("PUT", "/texts/{key}/{locale}", "Edit one bot text", roles=("admin",), request=BotTextUpdate, response=BotTextRead)
async def put_text(request: web.Request) -> web.Response:
    update = await parse_body(request, BotTextUpdate)
    key, locale = request.match_info["key"], request.match_info["locale"]
    try:
        async with transaction(request.app[SESSIONS]) as session:
            await texts.set_text(session, key, locale, update.text)
            items = await texts.all_texts(session)
    except KeyError:
        raise ApiError(404, "not_found", "no such bot text") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_text", str(exc)) from None
    item = next(item for item in items if item["key"] == key and item["locale"] == locale)
    return _json(BotTextRead(**item))


async def parse_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The JSON body as `model`; a clear 400 naming the first bad field otherwise."""
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(400, "invalid_json", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        message = "is not a known field" if first["type"] == "extra_forbidden" else first["msg"]
        raise invalid_field(field, message) from None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


# -- auth and errors -------------------------------------------------------------


def _roles_for(request: web.Request) -> tuple[str, ...] | None:
    resource = request.match_info.route.resource
    for item in ENDPOINTS:
        if resource is not None and resource.canonical == item.path and request.method == item.method:
            return item.roles
    return None


@web.middleware
async def api_middleware(request: web.Request, handler: View) -> web.StreamResponse:
    if not request.path.startswith(PREFIX + "/") or request.path == PREFIX + "/openapi.json":
        return await handler(request)
    try:
        roles = _roles_for(request)
        if roles is not None:
            await _authenticate(request, roles)
        return await handler(request)
    except ApiError as error:
        body = {"error": {"code": error.code, "message": error.message, **to_jsonable_python(error.extra)}}
        return web.json_response(body, status=error.status, dumps=_dumps)


async def _authenticate(request: web.Request, roles: tuple[str, ...]) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, plain = header.partition(" ")
    if scheme.lower() != "bearer" or not plain:
        raise ApiError(401, "unauthorized", "an API token is required: Authorization: Bearer <token>")
    async with transaction(request.app[SESSIONS]) as session:
        token = await tokens.authenticate(session, plain.strip())
    if token is None:
        raise ApiError(401, "unauthorized", "the API token is unknown or revoked")
    if token.role not in roles:
        raise ApiError(403, "forbidden", f"the {token.role} role may not do this")
    request[TOKEN] = token


# -- OpenAPI -----------------------------------------------------------------


def openapi_document() -> dict:
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, dict] = {}
    for item in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": item.summary,
            "operationId": item.view.__name__,
            "security": [{"bearer": []}],
            "x-roles": list(item.roles),
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "integer" if name == "id" else "string"}}
                for name in _path_params(item.path)
            ] + item.query,
            "responses": {
                "200": {"description": "OK", **({"content": {"application/json": {"schema": ref(item.response)}}} if item.response else {})},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
            },
        }
        if item.request is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(item.request)}}}
        paths.setdefault(item.path, {})[item.method.lower()] = operation
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kizuna API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
        },
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def setup_api(app: web.Application) -> None:
    app.middlewares.append(api_middleware)
    app.router.add_get(PREFIX + "/openapi.json", openapi)
    from . import api_coupons  # noqa: F401  (registers its endpoints)
    from . import api_faq  # noqa: F401  (registers its endpoints)
    for item in ENDPOINTS:
        app.router.add_route(item.method, item.path, item.view)
