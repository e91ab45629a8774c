"""What every area of the REST API uses: the route declaration (`Endpoint`), the parameters it
declares, the input helpers that read their bounds from it, errors, and JSON answers.

What comes in is checked here before a view sees it: ids and integers against what their
column can hold, every text (query, path, JSON body at any depth) against what can be stored
(`text_problem`). A request the API cannot serve is a 4xx in the API's error shape, never a
500. The rules about the data itself are the services' (flows/, storage/); their typed errors
become statuses in one place (`service_error`).
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from kizuna.appkeys import SERVICES
from kizuna.flows.services import Services
from kizuna.storage import audit
from kizuna.storage.errors import Conflict, Invalid, NotFound, ServiceError
from kizuna.storage.models import ApiToken
from kizuna.storage.roles import Role

PREFIX = "/api/v1"

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


def service_error(error: ServiceError) -> ApiError:
    """A service's refusal as the API answers it: 404, 400 naming the field, 409 with its code."""
    if isinstance(error, NotFound):
        return ApiError(404, error.code, error.message, **error.details)
    if isinstance(error, Invalid):
        return invalid_field(error.field, error.message)
    if isinstance(error, Conflict):
        return ApiError(409, error.code, error.message, **error.details)
    raise TypeError(f"no status for {type(error).__name__}")


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def actor(request: web.Request) -> audit.Actor:
    """Who acts, for the audit log the services write: the API token (by name) and the
    client's address as this server sees it."""
    agent = request.headers.get("User-Agent")
    return audit.Actor(f"token:{request[TOKEN].name}", None, request.remote, agent[:200] if agent else None)


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
    """One route: what it answers and to whom. `path` is under PREFIX; `request` / `response`
    are a model for JSON or a media type ("text/csv") for a plain body; `statuses` the
    successes; `errors` the statuses particular to this route (409, 410 ...) with what they
    mean. The general ones (400, 401, 403, 404, 413) follow from the declaration
    (openapi.error_statuses). An area module lists its endpoints in `ENDPOINTS`."""

    method: str
    path: str
    view: View
    summary: str
    roles: tuple[Role, ...]
    response: type[BaseModel] | str | None = None
    request: type[BaseModel] | str | None = None
    query: list[dict] = field(default_factory=list)
    path_params: list[dict] = field(default_factory=list)
    statuses: tuple[int, ...] = (200,)
    errors: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = {param["name"] for param in self.path_params}
        # A path parameter not declared otherwise is a string.
        self.path_params = self.path_params + [text_param(name, "path") for name in path_names(self.path) if name not in declared]

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    def param(self, name: str) -> dict:
        return next(param for param in (*self.path_params, *self.query) if param["name"] == name)


ENDPOINT = web.RequestKey("api_endpoint", Endpoint)


def path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


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


def choice_query(request: web.Request, name: str) -> str | None:
    """The query parameter `name`, one of its declared `enum`; None when absent."""
    raw = request.query.get(name)
    choices = request[ENDPOINT].param(name)["schema"]["enum"]
    if raw is not None and raw not in choices:
        raise invalid_field(name, f"must be {', '.join(choices)}")
    return raw


def path_id(request: web.Request, name: str = "id") -> int:
    """The integer id in the path; one its column cannot hold is not found (never a database error)."""
    raw = request.match_info[name]
    maximum = request[ENDPOINT].param(name)["schema"]["maximum"]
    # The route takes only digits; a few thousand of them would not even parse as an int.
    value = int(raw) if raw.isdigit() and len(raw) <= 40 else 0
    if not 1 <= value <= maximum:
        raise ApiError(404, "not_found", f"nothing has this {name}")
    return value


def check_parameters(request: web.Request, item: Endpoint) -> None:
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


async def parse_one_or_many(request: web.Request, one: type[BaseModel], many: type[BaseModel], key: str) -> list[Any]:
    """A body that is one record (`one`) or `{key: [...]}` (`many`), as a list of records. The
    shape picks the model, so a 400 names the field as the sender wrote it: `items[0].sku` for
    one record, `orders[3].items[0].sku` in a batch (parse_body reports a body that is not JSON)."""
    try:
        shape = json.loads(await request.read())
    except (ValueError, RecursionError):
        shape = None
    if isinstance(shape, dict) and key in shape:
        return getattr(await parse_body(request, many), key)
    return [await parse_body(request, one)]


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


# -- answers ---------------------------------------------------------------------------------


def found(value: Any, what: str) -> Any:
    """`value`, unless it is missing (None, or False from a delete that found nothing): then
    404, "no such `what`"."""
    if value is None or value is False:
        raise ApiError(404, "not_found", f"no such {what}")
    return value


def json_answer(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


def next_cursor(rows: list, limit: int, cursor: Callable[[Any], Any] = lambda row: row.id) -> Any:
    """The cursor of the next page: the last row's, when the page is full (there may be more)."""
    return cursor(rows[-1]) if len(rows) == limit else None


def read_as(model: type[BaseModel], row: Any) -> Any:
    """A table row as its API model."""
    return model.model_validate(row, from_attributes=True)
