"""Audiences for uploading user ids (LINE's manage-audience API), used by narrowcast.

What LINE publishes (manage-audience.yml, the Messaging API reference) and the emulator does:
- ``POST /v2/bot/audienceGroup/upload`` (JSON: ``description`` 1-120 characters, optional
  ``uploadDescription``, ``audiences: [{"id"}]`` up to 10,000) creates an audience: 202 with
  ``audienceGroupId``, ``type: UPLOAD``, ``createRoute: MESSAGING_API``, ``permission:
  READ_WRITE``, ``expireTimestamp`` (180 days on), ``isIfaAudience``.
- ``POST /v2/bot/audienceGroup/upload/byFile`` on the data host (multipart: ``description``,
  ``uploadDescription``, ``file``: text/plain, one id per line, up to 1,500,000) does the same
  for big lists.
- ``PUT`` on both paths adds ids (``audienceGroupId``, ``audiences`` / ``file``): 202 ``{}``.
- ``GET /v2/bot/audienceGroup/{id}`` gives ``{"audienceGroup", "jobs"}``;
  ``GET /v2/bot/audienceGroup/list?page=`` pages through them; ``DELETE`` removes one (200
  ``{}``). An unknown id: 400 ``audience group not found`` (detail
  ``AUDIENCE_GROUP_NOT_FOUND``), as LINE's examples show.
- Each of these endpoints allows 60 requests a minute (ratelimit.py).
- Processing is asynchronous: an audience is IN_PROGRESS, then READY
  (``emu.audience_ready_seconds``); each upload is a job (DIFF_ADD) QUEUED then FINISHED.

Where the emulator is stricter or simpler than LINE, and why:
- an id that is not a user id (``U`` + 32 hex) is refused with 400 naming it (LINE's exact
  wording is not published); well-formed ids the emulator does not know are dropped when the
  job runs (they are nobody LINE could reach), so ``audienceCount`` counts known users;
- IFA audiences (``isIfaAudience: true``) are refused: emulator users have no IFAs;
- LINE limits concurrent jobs per audience; the emulator finishes jobs at once and does not.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import ids, validation
from .api import ApiError, Call, endpoint, json_response, require_valid

if TYPE_CHECKING:
    from .core import Emulator

MAX_DESCRIPTION = 120
MAX_JSON_IDS = 10_000
MAX_FILE_IDS = 1_500_000
MAX_FILE_BYTES = 64 * 1024 * 1024  # 1.5M ids of 34 bytes fit with room to spare
EXPIRES_AFTER = 180 * 24 * 3600  # LINE's examples: expireTimestamp = created + 180 days
LIST_SIZE_MAX = 40

_ids = itertools.count(1_000_000_000_000 + secrets.randbelow(10**12))


@dataclass(slots=True, eq=False)
class Audience:
    audience_group_id: int
    description: str
    created: int
    status: str = "IN_PROGRESS"
    user_ids: set[str] = field(default_factory=set)
    jobs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "audienceGroupId": self.audience_group_id,
            "type": "UPLOAD",
            "description": self.description,
            "status": self.status,
            "audienceCount": len(self.user_ids),
            "created": self.created,
            "permission": "READ_WRITE",
            "isIfaAudience": False,
            "expireTimestamp": self.created + EXPIRES_AFTER,
            "createRoute": "MESSAGING_API",
        }


def not_found() -> ApiError:
    return ApiError(400, "audience group not found", details=[{"message": "AUDIENCE_GROUP_NOT_FOUND"}])


def _check_ids(errors: validation.Errors, audiences: Any, prop: str, *, required: bool) -> list[str]:
    if audiences is None:
        if required:
            errors.add(prop, "must be specified")
        return []
    if not isinstance(audiences, list):
        errors.add(prop, "must be an array")
        return []
    if len(audiences) > MAX_JSON_IDS:
        errors.add(prop, f"size must be between 0 and {MAX_JSON_IDS}")
        return []
    if required and not audiences:
        errors.add(prop, f"size must be between 1 and {MAX_JSON_IDS}")
        return []
    out = []
    match = ids.USER_ID_RE.match
    for i, entry in enumerate(audiences):
        value = entry.get("id") if isinstance(entry, dict) else None
        if not (isinstance(value, str) and match(value)):
            errors.add(f"{prop}[{i}].id", "must be a user ID ('U' followed by 32 hex digits)")
        else:
            out.append(value)
    return out


def _check_description(errors: validation.Errors, value: Any, prop: str = "description") -> str | None:
    if value is None or value == "":
        errors.add(prop, "must be specified")
        return None
    if not isinstance(value, str):
        errors.add(prop, "must be a string")
        return None
    if len(value) > MAX_DESCRIPTION:
        errors.add(prop, f"size must be between 1 and {MAX_DESCRIPTION}")
        return None
    return value


def _create(emu: Emulator, description: str, user_ids: list[str], upload_description: str | None) -> Audience:
    audience = Audience(next(_ids), description, int(emu.clock()))
    emu.audiences[audience.audience_group_id] = audience
    _add_job(emu, audience, user_ids, upload_description, creating=True)
    return audience


def _add_job(emu: Emulator, audience: Audience, user_ids: list[str], upload_description: str | None, *, creating: bool = False) -> None:
    if not user_ids and creating:
        # An audience created empty has nothing to process: it is READY once LINE looked at it.
        _later(emu, lambda: _ready(audience))
        return
    job = {
        "audienceGroupJobId": next(_ids) % 100_000_000,
        "audienceGroupId": audience.audience_group_id,
        "description": upload_description or "",
        "type": "DIFF_ADD",
        "jobStatus": "QUEUED",
        "audienceCount": 0,
        "created": int(emu.clock()),
    }
    audience.jobs.append(job)

    def run() -> None:
        known = [uid for uid in user_ids if uid in emu.users]
        before = len(audience.user_ids)
        audience.user_ids.update(known)
        job["audienceCount"] = len(audience.user_ids) - before
        job["jobStatus"] = "FINISHED"
        _ready(audience)

    _later(emu, run)


def _ready(audience: Audience) -> None:
    if audience.status == "IN_PROGRESS":
        audience.status = "READY"


def _later(emu: Emulator, work: Any) -> None:
    """LINE builds audiences asynchronously: the work runs a moment after the 202."""

    async def run() -> None:
        await asyncio.sleep(emu.audience_ready_seconds)
        work()
        await emu._changed()

    task = asyncio.ensure_future(run())
    emu._background.add(task)
    task.add_done_callback(emu._background.discard)


def _get(emu: Emulator, raw: Any) -> Audience:
    try:
        audience = emu.audiences.get(int(raw))
    except (TypeError, ValueError):
        audience = None
    if audience is None:
        raise not_found()
    return audience


def _ifa_refused(value: Any) -> None:
    if value in (True, "true"):
        raise ApiError(400, "IFA audiences are not supported by the emulator (its users have no IFAs)")


# --- JSON ---------------------------------------------------------------------------------------


async def create(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    description = _check_description(errors, body.get("description"))
    user_ids = _check_ids(errors, body.get("audiences"), "audiences", required=False)
    upload_description = body.get("uploadDescription")
    if upload_description is not None and not isinstance(upload_description, str):
        errors.add("uploadDescription", "must be a string")
    require_valid(errors.details)
    _ifa_refused(body.get("isIfaAudience"))
    assert description is not None
    audience = _create(call.emu, description, user_ids, upload_description)
    return json_response(_created(audience), 202)


def _created(audience: Audience) -> dict[str, Any]:
    out = audience.to_json()
    del out["status"], out["audienceCount"]  # not in LINE's create response
    return out


async def add(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    group_id = body.get("audienceGroupId")
    if isinstance(group_id, bool) or not isinstance(group_id, int):
        errors.add("audienceGroupId", "must be specified")
    user_ids = _check_ids(errors, body.get("audiences"), "audiences", required=True)
    require_valid(errors.details)
    audience = _get(call.emu, group_id)
    _add_job(call.emu, audience, user_ids, body.get("uploadDescription"))
    return json_response({}, 202)


# --- files (on the data host) ----------------------------------------------------------------------


async def _read_form(call: Call) -> tuple[dict[str, str], list[str]]:
    """The multipart form's text fields and the ids of its ``file`` (one per line)."""
    if not call.request.content_type.startswith("multipart/"):
        raise ApiError(415, "Content-Type must be multipart/form-data")
    reader = await call.request.multipart()
    fields: dict[str, str] = {}
    file_text: str | None = None
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            break
        data = bytearray()
        while chunk := await part.read_chunk(256 * 1024):  # type: ignore[union-attr]
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                raise ApiError(413, "Request Entity Too Large")
            data.extend(chunk)
        name = part.name or ""  # type: ignore[union-attr]
        text = data.decode("utf-8", "replace")
        if name == "file":
            file_text = text
        else:
            fields[name] = text
    if file_text is None:
        raise validation_error_file("must be specified")
    lines = [line.strip() for line in file_text.splitlines()]
    user_ids = [line for line in lines if line]
    if not user_ids:
        raise validation_error_file("must contain at least one user ID")
    if len(user_ids) > MAX_FILE_IDS:
        raise validation_error_file(f"must contain at most {MAX_FILE_IDS:,} IDs")
    match = ids.USER_ID_RE.match
    for number, line in enumerate(lines, start=1):
        if line and not match(line):
            raise validation_error_file(f"line {number} is not a user ID ('U' followed by 32 hex digits)")
    return fields, user_ids


def validation_error_file(message: str) -> ApiError:
    return ApiError(400, "The request body has 1 error(s)", details=[{"message": message, "property": "file"}])


async def create_by_file(call: Call) -> web.Response:
    fields, user_ids = await _read_form(call)
    errors = validation.Errors()
    description = _check_description(errors, fields.get("description"))
    require_valid(errors.details)
    _ifa_refused(fields.get("isIfaAudience"))
    assert description is not None
    audience = _create(call.emu, description, user_ids, fields.get("uploadDescription"))
    return json_response(_created(audience), 202)


async def add_by_file(call: Call) -> web.Response:
    fields, user_ids = await _read_form(call)
    if not fields.get("audienceGroupId"):
        raise ApiError(400, "The request body has 1 error(s)", details=[{"message": "must be specified", "property": "audienceGroupId"}])
    audience = _get(call.emu, fields["audienceGroupId"])
    _add_job(call.emu, audience, user_ids, fields.get("uploadDescription"))
    return json_response({}, 202)


# --- reading and deleting -----------------------------------------------------------------------------


async def get(call: Call) -> web.Response:
    audience = _get(call.emu, call.request.match_info["audienceGroupId"])
    return json_response({"audienceGroup": audience.to_json(), "jobs": list(reversed(audience.jobs))[:50]})


async def delete(call: Call) -> web.Response:
    audience = _get(call.emu, call.request.match_info["audienceGroupId"])
    del call.emu.audiences[audience.audience_group_id]
    return json_response({})


async def list_all(call: Call) -> web.Response:
    query = call.request.query
    page_text, size_text = query.get("page", ""), query.get("size", "20")
    if not page_text.isdigit() or int(page_text) < 1:
        raise ApiError(400, "The value for the 'page' parameter must be an integer of 1 or more")
    if not size_text.isdigit() or not 1 <= int(size_text) <= LIST_SIZE_MAX:
        raise ApiError(400, f"The value for the 'size' parameter must be an integer between 1 and {LIST_SIZE_MAX}")
    page, size = int(page_text), int(size_text)
    wanted_name = (query.get("description") or "").lower()
    wanted_status = query.get("status")
    found = [
        a for a in call.emu.audiences.values()
        if wanted_name in a.description.lower() and (not wanted_status or a.status == wanted_status)
        and query.get("createRoute", "MESSAGING_API") == "MESSAGING_API"
    ]
    chunk = found[(page - 1) * size : page * size]
    return json_response({
        "audienceGroups": [a.to_json() for a in chunk],
        "hasNextPage": page * size < len(found),
        "totalCount": len(found),
        "readWriteAudienceGroupTotalCount": len(found),
        "page": page,
        "size": size,
    })


ROUTES = [
    ("POST", "/v2/bot/audienceGroup/upload", "audience_create", create, False),
    ("PUT", "/v2/bot/audienceGroup/upload", "audience_add", add, False),
    ("POST", "/v2/bot/audienceGroup/upload/byFile", "audience_create_by_file", create_by_file, True),
    ("PUT", "/v2/bot/audienceGroup/upload/byFile", "audience_add_by_file", add_by_file, True),
    ("GET", "/v2/bot/audienceGroup/list", "audience_list", list_all, False),
    ("GET", "/v2/bot/audienceGroup/{audienceGroupId:[0-9]+}", "audience_get", get, False),
    ("DELETE", "/v2/bot/audienceGroup/{audienceGroupId:[0-9]+}", "audience_delete", delete, False),
]


def add_routes(app: web.Application, emu: Emulator) -> None:
    for method, path, name, handler, streams in ROUTES:
        app.router.add_route(method, path, endpoint(emu, name, handler, streams_body=streams))
