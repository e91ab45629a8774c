"""Rich menu routes: menus, their images (the "api-data" host on LINE), links, aliases."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import ids, validation
from .api import ApiError, Call, Handler, endpoint, json_response, require_valid
from .state import RichMenu

if TYPE_CHECKING:
    from .core import Emulator

MAX_IMAGE_BYTES = 1024 * 1024
IMAGE_TYPES = ("image/png", "image/jpeg")
ALIAS_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_RICH_MENUS = 1000


def _menu(call: Call, menu_id: str | None = None) -> RichMenu:
    menu_id = menu_id or call.request.match_info["richMenuId"]
    menu = call.emu.rich_menus.get(menu_id)
    if menu is None:
        raise ApiError(404, "Not found")
    return menu


def _linkable(call: Call, menu_id: str) -> RichMenu:
    menu = _menu(call, menu_id)
    if menu.image is None:
        # LINE refuses to show a menu that has no image yet.
        raise ApiError(400, "must upload richmenu image before applying it to user")
    return menu


def _user(call: Call, user_id: str) -> Any:
    user = call.emu.users.get(user_id)
    if user is None:
        raise ApiError(404, "Not found")
    return user


async def create(call: Call) -> web.Response:
    body = call.json_object()
    require_valid(validation.validate_rich_menu(body))
    if len(call.emu.rich_menus) >= MAX_RICH_MENUS:
        raise ApiError(400, "The maximum number of rich menus has been reached")
    menu_id = ids.rich_menu_id()
    fields = ("size", "selected", "name", "chatBarText", "areas")
    call.emu.rich_menus[menu_id] = RichMenu(menu_id, {k: body[k] for k in fields})
    return json_response({"richMenuId": menu_id})


async def validate(call: Call) -> web.Response:
    require_valid(validation.validate_rich_menu(call.json_object()))
    return json_response({})


async def list_menus(call: Call) -> web.Response:
    return json_response({"richmenus": [m.to_json() for m in call.emu.rich_menus.values()]})


async def get_menu(call: Call) -> web.Response:
    return json_response(_menu(call).to_json())


async def delete_menu(call: Call) -> web.Response:
    menu = _menu(call)
    emu = call.emu
    del emu.rich_menus[menu.rich_menu_id]
    if emu.default_rich_menu_id == menu.rich_menu_id:
        emu.default_rich_menu_id = None
    for user in emu.users.values():
        if user.rich_menu_id == menu.rich_menu_id:
            user.rich_menu_id = None
    for alias, target in list(emu.rich_menu_aliases.items()):
        if target == menu.rich_menu_id:
            del emu.rich_menu_aliases[alias]
    return json_response({})


async def upload_image(call: Call) -> web.Response:
    menu = _menu(call)
    content_type = call.request.content_type
    if content_type not in IMAGE_TYPES:
        raise ApiError(415, "Unsupported Media Type: use image/png or image/jpeg")
    if not call.raw:
        raise ApiError(400, "The request body is empty")
    if len(call.raw) > MAX_IMAGE_BYTES:
        raise ApiError(413, "Request Entity Too Large: a rich menu image is at most 1 MB")
    if menu.image is not None:
        raise ApiError(400, "An image has already been uploaded to the richmenu")
    menu.image, menu.image_type = call.raw, content_type
    return json_response({})


async def download_image(call: Call) -> web.Response:
    menu = _menu(call)
    if menu.image is None:
        raise ApiError(404, "Not found")
    return web.Response(body=menu.image, content_type=menu.image_type or "image/png")


async def set_default(call: Call) -> web.Response:
    menu = _linkable(call, call.request.match_info["richMenuId"])
    call.emu.default_rich_menu_id = menu.rich_menu_id
    return json_response({})


async def get_default(call: Call) -> web.Response:
    if call.emu.default_rich_menu_id is None:
        raise ApiError(404, "no default richmenu")
    return json_response({"richMenuId": call.emu.default_rich_menu_id})


async def delete_default(call: Call) -> web.Response:
    call.emu.default_rich_menu_id = None
    return json_response({})


async def link_user(call: Call) -> web.Response:
    user = _user(call, call.request.match_info["userId"])
    user.rich_menu_id = _linkable(call, call.request.match_info["richMenuId"]).rich_menu_id
    return json_response({})


async def get_user_menu(call: Call) -> web.Response:
    user = _user(call, call.request.match_info["userId"])
    if user.rich_menu_id is None:
        raise ApiError(404, "the user has no richmenu")
    return json_response({"richMenuId": user.rich_menu_id})


async def unlink_user(call: Call) -> web.Response:
    user = _user(call, call.request.match_info["userId"])
    user.rich_menu_id = None
    return json_response({})


def _user_ids(call: Call, body: dict[str, Any]) -> list[str]:
    errors = validation.Errors()
    user_ids = errors.array(body, "userIds", "", low=1, high=500)
    for i, uid in enumerate(user_ids or []):
        if not (isinstance(uid, str) and ids.USER_ID_RE.match(uid)):
            errors.add(f"userIds[{i}]", "must be a user ID")
    require_valid(errors.details)
    return user_ids or []


async def bulk_link(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    menu_id = errors.string(body, "richMenuId", "")
    require_valid(errors.details)
    user_ids = _user_ids(call, body)
    menu = _linkable(call, menu_id or "")
    for uid in user_ids:
        user = call.emu.users.get(uid)
        if user is not None:
            user.rich_menu_id = menu.rich_menu_id
    return json_response({}, 202)


async def bulk_unlink(call: Call) -> web.Response:
    for uid in _user_ids(call, call.json_object()):
        user = call.emu.users.get(uid)
        if user is not None:
            user.rich_menu_id = None
    return json_response({}, 202)


async def alias_create(call: Call) -> web.Response:
    body = call.json_object()
    errors = validation.Errors()
    alias = errors.string(body, "richMenuAliasId", "", max_len=32)
    menu_id = errors.string(body, "richMenuId", "")
    if alias is not None and not ALIAS_RE.match(alias):
        errors.add("richMenuAliasId", "may contain only a-z, 0-9, '_' and '-'")
    require_valid(errors.details)
    assert alias is not None and menu_id is not None
    if alias in call.emu.rich_menu_aliases:
        raise ApiError(400, "conflict richmenu alias id")
    _linkable(call, menu_id)
    call.emu.rich_menu_aliases[alias] = menu_id
    return json_response({})


def _alias(call: Call) -> str:
    alias = call.request.match_info["richMenuAliasId"]
    if alias not in call.emu.rich_menu_aliases:
        raise ApiError(404, "Not found")
    return alias


async def alias_get(call: Call) -> web.Response:
    alias = _alias(call)
    return json_response({"richMenuAliasId": alias, "richMenuId": call.emu.rich_menu_aliases[alias]})


async def alias_update(call: Call) -> web.Response:
    alias = _alias(call)
    body = call.json_object()
    errors = validation.Errors()
    menu_id = errors.string(body, "richMenuId", "")
    require_valid(errors.details)
    call.emu.rich_menu_aliases[alias] = _linkable(call, menu_id or "").rich_menu_id
    return json_response({})


async def alias_delete(call: Call) -> web.Response:
    del call.emu.rich_menu_aliases[_alias(call)]
    return json_response({})


async def alias_list(call: Call) -> web.Response:
    aliases = [{"richMenuAliasId": a, "richMenuId": m} for a, m in call.emu.rich_menu_aliases.items()]
    return json_response({"aliases": aliases})


# Fixed paths come before the ones with a variable in the same place ("all" is not a user id,
# "list" is not a rich menu id).
ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/v2/bot/richmenu", "richmenu_create", create),
    ("POST", "/v2/bot/richmenu/validate", "richmenu_validate", validate),
    ("GET", "/v2/bot/richmenu/list", "richmenu_list", list_menus),
    ("POST", "/v2/bot/richmenu/bulk/link", "richmenu_bulk_link", bulk_link),
    ("POST", "/v2/bot/richmenu/bulk/unlink", "richmenu_bulk_unlink", bulk_unlink),
    ("POST", "/v2/bot/richmenu/alias", "richmenu_alias_create", alias_create),
    ("GET", "/v2/bot/richmenu/alias/list", "richmenu_alias_list", alias_list),
    ("GET", "/v2/bot/richmenu/alias/{richMenuAliasId}", "richmenu_alias_get", alias_get),
    ("POST", "/v2/bot/richmenu/alias/{richMenuAliasId}", "richmenu_alias_update", alias_update),
    ("DELETE", "/v2/bot/richmenu/alias/{richMenuAliasId}", "richmenu_alias_delete", alias_delete),
    ("GET", "/v2/bot/richmenu/{richMenuId}", "richmenu_get", get_menu),
    ("DELETE", "/v2/bot/richmenu/{richMenuId}", "richmenu_delete", delete_menu),
    ("POST", "/v2/bot/richmenu/{richMenuId}/content", "richmenu_image_upload", upload_image),
    ("GET", "/v2/bot/richmenu/{richMenuId}/content", "richmenu_image_download", download_image),
    ("POST", "/v2/bot/user/all/richmenu/{richMenuId}", "richmenu_default_set", set_default),
    ("GET", "/v2/bot/user/all/richmenu", "richmenu_default_get", get_default),
    ("DELETE", "/v2/bot/user/all/richmenu", "richmenu_default_delete", delete_default),
    ("POST", "/v2/bot/user/{userId}/richmenu/{richMenuId}", "richmenu_link", link_user),
    ("GET", "/v2/bot/user/{userId}/richmenu", "richmenu_user_get", get_user_menu),
    ("DELETE", "/v2/bot/user/{userId}/richmenu", "richmenu_unlink", unlink_user),
]


def add_routes(app: web.Application, emu: Emulator) -> None:
    for method, path, name, handler in ROUTES:
        app.router.add_route(method, path, endpoint(emu, name, handler))
