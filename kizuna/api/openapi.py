"""The OpenAPI document at /api/v1/openapi.json, generated from the same endpoint table as the
routes, so it cannot drift from them: the statuses listed are the ones a route can answer, and
its parameters are the ones the input helpers read their bounds from."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel

from kizuna.storage.roles import Role

from .http import Endpoint

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


def error_statuses(item: Endpoint) -> dict[int, str]:
    """Every error status `item` can answer, with what it means there."""
    errors = {401: "no API token, or an unknown, revoked or expired one (code token_expired)"}
    if set(item.roles) != set(Role):
        errors[403] = f"only for {', '.join(item.roles)}"
    text_in_path = any(param["schema"]["type"] == "string" for param in item.path_params)
    if item.request is not None or item.query or text_in_path:
        errors[400] = "invalid input; `field` names the field or parameter"
    if item.path_params:
        errors[404] = "no such resource"
    if item.request is not None:
        errors[413] = "the body is larger than the server accepts (KIZUNA_MAX_BODY_BYTES)"
    return {**errors, **item.errors}


def document(endpoints: Iterable[Endpoint]) -> dict:
    schemas: dict[str, Any] = {}

    def content(body: type[BaseModel] | str | tuple) -> dict:
        if isinstance(body, tuple):  # one route, several media types (JSON, or a file with ?format=)
            return {media: schema for part in body for media, schema in content(part).items()}
        if isinstance(body, str):  # a media type: a plain text body
            return {body: {"schema": {"type": "string"}}}
        schema = body.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[body.__name__] = schema
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}

    paths: dict[str, dict] = {}
    for item in endpoints:
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
            "x-roles": [role.value for role in item.roles],
            "parameters": [*item.path_params, *item.query],
            "responses": responses,
        }
        if item.request is not None:
            operation["requestBody"] = {"required": True, "content": content(item.request)}
        paths.setdefault(item.full_path, {})[item.method.lower()] = operation
    schemas["Error"] = ERROR_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kizuna API", "version": "1", "description": ABOUT_INPUT},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
