"""The REST API under /api/v1: thin views over the same storage the bot uses.

Every route declares its roles, its parameters and its OpenAPI description in one place
(`endpoint`), so the document at /api/v1/openapi.json cannot drift from the routes: the
input helpers read their bounds from the same declaration, the statuses listed are the ones
the route can answer, and the router is built from it.

What comes in is checked in one place before a view sees it: ids and integers against what
their column can hold, every text (query, path, JSON body at any depth) against what can be
stored (`text_problem`). A request the API cannot serve is a 4xx in the API's error shape,
never a 500.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_jsonable_python

from kizuna.storage import customers, events, interactions, texts, tokens
from kizuna.storage.db import transaction
from kizuna.storage.models import ApiToken, Customer, CustomerRead, InboundEvent, Interaction, InteractionRead
from kizuna.storage.roles import STAFF_ROLES, TOKEN_ROLES
from kizuna.storage.queue import QueueUnavailable

from .keys import QUEUE, SESSIONS

PREFIX = "/api/v1"
ALL_ROLES = TOKEN_ROLES
READ_CUSTOMERS = STAFF_ROLES

View = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN = web.RequestKey("api_token", ApiToken)


class ApiError(Exception):
    """An API error: rendered as {"error": {"code", "message", **extra}} with `status`."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def invalid_field(field: str, message: str) -> ApiError:
    """400 naming the field (or query/path parameter) that is wrong (nothing was changed)."""
    return ApiError(400, "invalid_field", f"{field}: {message}", field=field)


# -- what may come in: ids, integers, text -------------------------------------------------

# PostgreSQL's integer is 32-bit, its bigint 64-bit; SQLite's INTEGER always holds 64 bits,
# so PostgreSQL's type is the bound on both. Beyond it the database raises (a 500), not "no row".
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


def column_max(column: Any) -> int:
    """The largest value the integer `column` (e.g. `Customer.id`) holds on every backend."""
    return INT8_MAX if isinstance(column.type, sa.BigInteger) else INT4_MAX


# NUL cannot be stored in PostgreSQL's text (nor is it ever meant); a lone surrogate (half of a
# UTF-16 pair, as JSON's "\udc00" can write) is not a character, and UTF-8 cannot encode it to
# store or answer it.
_NOT_TEXT = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be taken as text, or None when it can."""
    found = _NOT_TEXT.search(value)
    if found is None:
        return None
    return "contains NUL (\\u0000)" if found.group() == "\x00" else "contains a lone surrogate (half of a UTF-16 pair)"


def id_param(column: Any, name: str = "id") -> dict:
    """A path id of `column`'s table. An id the column cannot hold is simply not found (404)."""
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": column_max(column)}}


def int_param(name: str, *, minimum: int, maximum: int, default: int | None = None, description: str | None = None) -> dict:
    """An integer query parameter; outside [minimum, maximum] it is a 400 naming it."""
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return {"name": name, "in": "query", "schema": schema, **({"description": description} if description else {})}


def cursor_param(name: str, column: Any) -> dict:
    """`after` / `before`: an id of `column` from the previous page, bounded by what the column holds."""
    return int_param(name, minimum=0, maximum=column_max(column), description=f"next_{name} of the previous page")


def bool_param(name: str, default: bool | None = None) -> dict:
    schema: dict[str, Any] = {"type": "boolean"}
    if default is not None:
        schema["default"] = default
    return {"name": name, "in": "query", "schema": schema}


def text_param(name: str, where: str = "query", description: str | None = None, **schema: Any) -> dict:
    """A string query or path parameter (`schema`: enum, maxLength, pattern ...)."""
    param: dict[str, Any] = {"name": name, "in": where, "schema": {"type": "string", **schema}}
    if where == "path":
        param["required"] = True
    if description:
        param["description"] = description
    return param


LIMIT = int_param("limit", minimum=1, maximum=200, default=50)


# -- routes and their declarations ---------------------------------------------------------


@dataclass
class Endpoint:
    """One route: what it answers and to whom. `request` / `response` are a model for JSON or a
    media type ("text/csv") for a plain body; `statuses` the successes; `errors` the statuses
    particular to this route (409, 410 ...) with what they mean. The general ones (400, 401,
    403, 404, 413) follow from the declaration (`error_statuses`)."""

    method: str
    path: str
    view: View
    summary: str
    roles: tuple[str, ...]
    response: type[BaseModel] | str | None = None
    request: type[BaseModel] | str | None = None
    query: list[dict] = field(default_factory=list)
    path_params: list[dict] = field(default_factory=list)
    statuses: tuple[int, ...] = (200,)
    errors: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = {param["name"] for param in self.path_params}
        # A path parameter not declared otherwise is a string.
        self.path_params = self.path_params + [text_param(name, "path") for name in _path_names(self.path) if name not in declared]

    def param(self, name: str) -> dict:
        return next(param for param in (*self.path_params, *self.query) if param["name"] == name)


ENDPOINTS: list[Endpoint] = []
ENDPOINT = web.RequestKey("api_endpoint", Endpoint)


def endpoint(method: str, path: str, summary: str, *, roles: tuple[str, ...], **extra: Any) -> Callable[[View], View]:
    def register(view: View) -> View:
        ENDPOINTS.append(Endpoint(method, PREFIX + path, view, summary, roles, **extra))
        return view

    return register


def error_statuses(item: Endpoint) -> dict[int, str]:
    """Every error status `item` can answer, with what it means there."""
    errors = {401: "no API token, or an unknown or revoked one"}
    if set(item.roles) != set(ALL_ROLES):
        errors[403] = f"only for {', '.join(item.roles)}"
    text_in_path = any(param["schema"]["type"] == "string" for param in item.path_params)
    if item.request is not None or item.query or text_in_path:
        errors[400] = "invalid input; `field` names the field or parameter"
    if item.path_params:
        errors[404] = "no such resource"
    if item.request is not None:
        errors[413] = "the body is larger than the server accepts (KIZUNA_MAX_BODY_BYTES)"
    return {**errors, **item.errors}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _route_path(item: Endpoint) -> str:
    """The aiohttp route for `item`, matching exactly the URLs its OpenAPI path does: an integer
    segment is digits, and a text segment is never a fixed path beside it (as in OpenAPI,
    /faq/export is its own path, not /faq/{faq_id}), so 405 and its Allow are those of the path."""
    parts = item.path.split("/")
    for index, part in enumerate(parts):
        if not part.startswith("{"):
            continue
        name = part[1:-1]
        if item.param(name)["schema"]["type"] == "integer":
            parts[index] = "{%s:[0-9]+}" % name
        elif fixed := _fixed_beside(parts, index):
            parts[index] = "{%s:(?!(?:%s)(?:/|$))[^{}/]+}" % (name, "|".join(re.escape(word) for word in fixed))
    return "/".join(parts)


def _fixed_beside(parts: list[str], index: int) -> list[str]:
    """The fixed segments other paths of the same shape have where `parts` has a parameter."""
    fixed = set()
    for other in ENDPOINTS:
        theirs = other.path.split("/")
        if len(theirs) == len(parts) and theirs[:index] == parts[:index] and not theirs[index].startswith("{"):
            fixed.add(theirs[index])
    return sorted(fixed)


# -- input helpers: they read the route's declaration -------------------------------------

_INTEGER = re.compile(r"-?[0-9]{1,20}")


def int_query(request: web.Request, name: str) -> int | None:
    """The integer query parameter `name` within its declared bounds; its default when absent."""
    schema = request[ENDPOINT].param(name)["schema"]
    raw = request.query.get(name)
    if raw is None:
        return schema.get("default")
    if not _INTEGER.fullmatch(raw):
        raise invalid_field(name, "must be an integer")
    value = int(raw)
    if not schema["minimum"] <= value <= schema["maximum"]:
        raise invalid_field(name, f"must be between {schema['minimum']} and {schema['maximum']}")
    return value


def bool_query(request: web.Request, name: str) -> bool | None:
    """The boolean query parameter `name` (true/false, 1/0, yes/no); its default when absent."""
    raw = request.query.get(name)
    if raw is None:
        return request[ENDPOINT].param(name)["schema"].get("default")
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise invalid_field(name, "must be true or false")


def path_id(request: web.Request, name: str = "id") -> int:
    """The integer id in the path; one its column cannot hold is not found (never a database error)."""
    raw = request.match_info[name]
    maximum = request[ENDPOINT].param(name)["schema"]["maximum"]
    # The route takes only digits; a few thousand of them would not even parse as an int.
    value = int(raw) if raw.isdigit() and len(raw) <= 40 else 0
    if not 1 <= value <= maximum:
        raise ApiError(404, "not_found", f"nothing has this {name}")
    return value


def _check_parameters(request: web.Request, item: Endpoint) -> None:
    """Every declared query and path parameter: given once, and text that can be taken."""
    for param in (*item.path_params, *item.query):
        name = param["name"]
        values = [request.match_info[name]] if param["in"] == "path" else request.query.getall(name, [])
        if len(values) > 1:
            raise invalid_field(name, "is given more than once")
        for value in values:
            if (problem := text_problem(value)) is not None:
                raise invalid_field(name, problem)


async def parse_body(request: web.Request, model: type[BaseModel]) -> Any:
    """The JSON body as `model`; a clear 400 naming the first bad field otherwise."""
    try:
        # JSON is UTF-8 (RFC 8259), whatever charset the Content-Type claims.
        data = json.loads((await request.read()).decode("utf-8"))
    except RecursionError:
        raise ApiError(400, "invalid_json", "body is nested too deeply") from None
    except ValueError:
        raise ApiError(400, "invalid_json", "body is not valid JSON (UTF-8)") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_body", "body must be a JSON object")
    _check_json_text(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = "is not a known field" if first["type"] == "extra_forbidden" else first["msg"]
        raise invalid_field(_field_name(first["loc"]) or "body", message) from None


def _check_json_text(data: Any) -> None:
    """Every string of a JSON document, keys too, at any depth (breadth first, no recursion)."""
    pending: deque[tuple[tuple, Any]] = deque([((), data)])
    while pending:
        where, value = pending.popleft()
        if isinstance(value, str):
            if (problem := text_problem(value)) is not None:
                raise invalid_field(_field_name(where) or "body", problem)
        elif isinstance(value, dict):
            for key, item in value.items():
                if (problem := text_problem(key)) is not None:
                    raise invalid_field(_field_name(where) or "body", f"a key {problem}")
                pending.append(((*where, key), item))
        elif isinstance(value, list):
            pending.extend(((*where, index), item) for index, item in enumerate(value))


def _field_name(loc: tuple) -> str:
    """("holidays", 0) -> "holidays[0]"; ("weekly", "mon", 0) -> "weekly.mon[0]"."""
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def optional(**constraints: Any) -> Any:
    """A field a change may leave out but not set to null (absent: unchanged). The default None
    is never validated, an explicit null is; the schema shows no default, so no null."""
    return Field(default=None, json_schema_extra=_no_default, **constraints)


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


# A store strips text before checking it, so a blank one is missing; said in the schema too.
NOT_BLANK = {"pattern": r"\S"}


# -- models --------------------------------------------------------------------------------


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
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=texts.MAX_TEXT, json_schema_extra=NOT_BLANK)


# -- customers, events, texts --------------------------------------------------------------


@endpoint(
    "GET", "/customers", "List customers (oldest first, cursor paging with `after`)",
    roles=READ_CUSTOMERS, response=CustomerPage,
    query=[text_param("line_user_id"), cursor_param("after", Customer.id), LIMIT],
)
async def list_customers(request: web.Request) -> web.Response:
    limit = int_query(request, "limit")
    after = int_query(request, "after")
    async with request.app[SESSIONS]() as session:
        rows = await customers.list_page(session, line_user_id=request.query.get("line_user_id"), limit=limit, after_id=after)
    page = CustomerPage(items=[CustomerRead.model_validate(row, from_attributes=True) for row in rows],
                        next_after=rows[-1].id if len(rows) == limit else None)
    return _json(page)


@endpoint("GET", "/customers/{id}", "One customer", roles=READ_CUSTOMERS, response=CustomerRead,
          path_params=[id_param(Customer.id)])
async def get_customer(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        customer = await customers.get(session, path_id(request))
    if customer is None:
        raise ApiError(404, "not_found", "no such customer")
    return _json(CustomerRead.model_validate(customer, from_attributes=True))


@endpoint(
    "GET", "/customers/{id}/interactions", "A customer's timeline, newest first (cursor paging with `before`)",
    roles=READ_CUSTOMERS, response=InteractionPage,
    path_params=[id_param(Customer.id)], query=[cursor_param("before", Interaction.id), LIMIT],
)
async def list_interactions(request: web.Request) -> web.Response:
    customer_id = path_id(request)
    limit = int_query(request, "limit")
    before = int_query(request, "before")
    async with request.app[SESSIONS]() as session:
        if await customers.get(session, customer_id) is None:
            raise ApiError(404, "not_found", "no such customer")
        rows = await interactions.latest(session, customer_id, limit=limit, before_id=before)
    page = InteractionPage(items=[InteractionRead.model_validate(row, from_attributes=True) for row in rows],
                           next_before=rows[-1].id if len(rows) == limit else None)
    return _json(page)


EVENT_STATUSES = ("pending", "done", "parked")


@endpoint(
    "GET", "/events", "Inbound webhook events, newest first; `status=parked` lists the ones whose handler kept failing",
    roles=("admin",), response=InboundEventPage,
    query=[text_param("status", enum=list(EVENT_STATUSES)), cursor_param("before", InboundEvent.id), LIMIT],
)
async def list_events(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status not in (None, *EVENT_STATUSES):
        raise invalid_field("status", f"must be {', '.join(EVENT_STATUSES)}")
    limit = int_query(request, "limit")
    async with request.app[SESSIONS]() as session:
        rows = await events.list_events(session, status=status, limit=limit, before_id=int_query(request, "before"))
    page = InboundEventPage(items=[InboundEventRead.model_validate(row, from_attributes=True) for row in rows],
                            next_before=rows[-1].id if len(rows) == limit else None)
    return _json(page)


@endpoint("POST", "/events/{id}/retry", "Process a parked event again", roles=("admin",), response=InboundEventRead,
          path_params=[id_param(InboundEvent.id)],
          errors={409: "not_parked: only a parked event can be retried; invalid_event: it was parked on arrival (invalid as LINE sent it)"})
async def retry_event(request: web.Request) -> web.Response:
    event_id = path_id(request)
    async with transaction(request.app[SESSIONS]) as session:
        source_key = await events.requeue_parked(session, event_id)
        if source_key is None:
            event = await session.get(InboundEvent, event_id)
            if event is None:
                raise ApiError(404, "not_found", "no such event")
            if event.status == "parked":
                raise ApiError(409, "invalid_event", f"this event was invalid as LINE sent it and is never processed: {event.last_error}")
            raise ApiError(409, "not_parked", "only a parked event can be retried")
        # As committed (pending): a worker may take it the moment it is queued.
        retried = InboundEventRead.model_validate(await session.get(InboundEvent, event_id, populate_existing=True), from_attributes=True)
    try:
        await request.app[QUEUE].put([source_key])
    except QueueUnavailable:
        pass  # pending in the database: the sweeper queues it once Redis is back
    return _json(retried)


@endpoint("GET", "/texts", "Bot texts (defaults and edits) in every locale", roles=("admin",), response=BotTextList)
async def list_texts(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        items = await texts.all_texts(session)
    return _json(BotTextList(items=[BotTextRead(**item) for item in items]))


@endpoint("PUT", "/texts/{key}/{locale}", "Edit one bot text (404 for a key or locale there is no text for)",
          roles=("admin",), request=BotTextUpdate, response=BotTextRead,
          path_params=[text_param("key", "path"), text_param("locale", "path", enum=list(texts.LOCALES))])
async def put_text(request: web.Request) -> web.Response:
    key, locale = request.match_info["key"], request.match_info["locale"]
    if locale not in texts.LOCALES:
        raise ApiError(404, "not_found", f"no such bot text (locales: {', '.join(texts.LOCALES)})")
    update = await parse_body(request, BotTextUpdate)
    try:
        async with transaction(request.app[SESSIONS]) as session:
            await texts.set_text(session, key, locale, update.text)
            items = await texts.all_texts(session)
    except KeyError:
        raise ApiError(404, "not_found", "no such bot text") from None
    except ValueError as exc:
        raise invalid_field("text", str(exc)) from None
    item = next(item for item in items if item["key"] == key and item["locale"] == locale)
    return _json(BotTextRead(**item))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


# -- auth and errors -------------------------------------------------------------


def _endpoint_for(request: web.Request) -> Endpoint | None:
    resource = request.match_info.route.resource
    for item in ENDPOINTS:
        if resource is not None and resource.canonical == item.path and request.method == item.method:
            return item
    return None


# aiohttp's own answers under /api/v1 (no route, wrong method, body too large), in the API's shape.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def api_middleware(request: web.Request, handler: View) -> web.StreamResponse:
    if not request.path.startswith(PREFIX + "/") or request.path == PREFIX + "/openapi.json":
        return await handler(request)
    try:
        item = _endpoint_for(request)
        if item is not None:
            await _authenticate(request, item.roles)
            request[ENDPOINT] = item
            _check_parameters(request, item)
        return await handler(request)
    except ApiError as error:
        return _error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        message = exc.text if exc.status == 413 else f"{exc.reason}: {request.method} {request.path}"
        return _error_response(ApiError(exc.status, _HTTP_CODES.get(exc.status, "error"), message), headers)


def _error_response(error: ApiError, headers: dict | None = None) -> web.Response:
    body = {"error": {"code": error.code, "message": error.message, **to_jsonable_python(error.extra)}}
    return web.json_response(body, status=error.status, dumps=_dumps, headers=headers)


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

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": "string", "description": "the invalid field or parameter (400 invalid_field)"}},
    }},
}


ABOUT_INPUT = (
    "Text anywhere in a request (JSON strings and keys at any depth, query and path parameters) may not "
    "contain NUL (U+0000) or a lone surrogate: 400 invalid_field naming it. A query parameter is given at "
    "most once. An id beyond what its column holds is not found (404). Rules across fields are in the "
    "schemas' descriptions."
)


def openapi_document() -> dict:
    schemas: dict[str, Any] = {}

    def content(body: type[BaseModel] | str) -> dict:
        if isinstance(body, str):  # a media type: a plain text body
            return {body: {"schema": {"type": "string"}}}
        schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[body.__name__] = schema
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}

    paths: dict[str, dict] = {}
    for item in ENDPOINTS:
        responses: dict[str, Any] = {
            str(status): {"description": HTTPStatus(status).phrase, **({"content": content(item.response)} if item.response else {})}
            for status in item.statuses
        }
        for status, meaning in sorted(error_statuses(item).items()):
            responses[str(status)] = {"description": meaning,
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        operation: dict[str, Any] = {
            "summary": item.summary,
            "operationId": item.view.__name__,
            "security": [{"bearer": []}],
            "x-roles": list(item.roles),
            "parameters": [*item.path_params, *item.query],
            "responses": responses,
        }
        if item.request is not None:
            operation["requestBody"] = {"required": True, "content": content(item.request)}
        paths.setdefault(item.path, {})[item.method.lower()] = operation
    schemas["Error"] = ERROR_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kizuna API", "version": "1", "description": ABOUT_INPUT},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def setup_api(app: web.Application) -> None:
    app.middlewares.append(api_middleware)
    app.router.add_get(PREFIX + "/openapi.json", openapi)
    from . import api_coupons  # noqa: F401  (registers its endpoints)
    from . import api_faq  # noqa: F401  (registers its endpoints)
    for item in ENDPOINTS:
        app.router.add_route(item.method, _route_path(item), item.view)
