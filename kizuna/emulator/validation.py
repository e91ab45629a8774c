"""Request-body checks in the spirit of LINE's Messaging API validation.

LINE answers an invalid body with 400 and one detail per problem, each naming the JSON property
(``messages[0].text``). The emulator reproduces the rules the bot is most likely to break —
counts, lengths, required fields, enumerations, URL schemes — so a message the emulator accepts
is one LINE would accept too. It is not a complete copy of LINE's validator: where the emulator
is unsure, it accepts (a false 400 in tests is worse than a missed one).

Lengths are counted in UTF-16 code units, as LINE does (an emoji outside the BMP counts 2).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

MAX_MESSAGES = 5

MESSAGE_TYPES = (
    "text", "textV2", "sticker", "image", "video", "audio", "location", "imagemap", "template",
    "flex",
)
QUICK_REPLY_ACTIONS = (
    "message", "postback", "uri", "datetimepicker", "camera", "cameraRoll", "location",
    "clipboard",
)
TEMPLATE_ACTIONS = ("message", "postback", "uri", "datetimepicker", "clipboard")
FLEX_ACTIONS = ("message", "postback", "uri", "datetimepicker", "clipboard", "richmenuswitch")
RICH_MENU_ACTIONS = ("message", "postback", "uri", "datetimepicker", "richmenuswitch", "clipboard")
FLEX_COMPONENTS = ("box", "text", "button", "image", "icon", "separator", "filler", "span", "video")
BOX_LAYOUTS = ("horizontal", "vertical", "baseline")
BASELINE_CHILDREN = ("text", "icon", "filler")
DATETIME_FORMATS = {
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "time": re.compile(r"^\d{2}:\d{2}$"),
    "datetime": re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}$"),
}
LOOPBACK_HOSTS = ("localhost",)

Detail = dict[str, str]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class Errors:
    """Collects LINE-style error details: ``{"message": ..., "property": ...}``."""

    def __init__(self) -> None:
        self.details: list[Detail] = []

    def add(self, prop: str, message: str) -> None:
        self.details.append({"message": message, "property": prop})

    def __bool__(self) -> bool:
        return bool(self.details)

    # --- field helpers -------------------------------------------------------------------

    def string(
        self,
        obj: dict[str, Any],
        key: str,
        prop: str,
        *,
        required: bool = True,
        max_len: int | None = None,
        min_len: int = 1,
    ) -> str | None:
        value = obj.get(key)
        where = f"{prop}.{key}" if prop else key
        if value is None:
            if required:
                self.add(where, "must be specified")
            return None
        if not isinstance(value, str):
            self.add(where, "must be a string")
            return None
        length = utf16_len(value)
        if length < min_len or (max_len is not None and length > max_len):
            upper = max_len if max_len is not None else "unbounded"
            if min_len and length == 0:
                self.add(where, "May not be empty")
            else:
                self.add(where, f"Length must be between {min_len} and {upper}")
            return None
        return value

    def integer(
        self,
        obj: dict[str, Any],
        key: str,
        prop: str,
        *,
        required: bool = True,
        low: int | None = None,
        high: int | None = None,
    ) -> int | None:
        value = obj.get(key)
        where = f"{prop}.{key}" if prop else key
        if value is None:
            if required:
                self.add(where, "must be specified")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(where, "must be an integer")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.add(where, f"must be between {low} and {high}")
            return None
        return value

    def number(self, obj: dict[str, Any], key: str, prop: str) -> None:
        value = obj.get(key)
        where = f"{prop}.{key}"
        if value is None:
            self.add(where, "must be specified")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(where, "must be a number")

    def array(
        self, obj: dict[str, Any], key: str, prop: str, *, low: int, high: int, required: bool = True
    ) -> list[Any] | None:
        value = obj.get(key)
        where = f"{prop}.{key}" if prop else key
        if value is None:
            if required:
                self.add(where, "must be specified")
            return None
        if not isinstance(value, list):
            self.add(where, "must be an array")
            return None
        if not low <= len(value) <= high:
            self.add(where, f"Size must be between {low} and {high}")
            return None
        return value

    def one_of(self, obj: dict[str, Any], key: str, prop: str, allowed: tuple[str, ...]) -> str | None:
        value = obj.get(key)
        where = f"{prop}.{key}" if prop else key
        if value is None:
            self.add(where, "must be specified")
            return None
        if value not in allowed:
            self.add(where, f"Must be one of the following values: [{', '.join(allowed)}]")
            return None
        return value

    def url(
        self,
        obj: dict[str, Any],
        key: str,
        prop: str,
        *,
        required: bool = True,
        max_len: int = 2000,
    ) -> None:
        value = self.string(obj, key, prop, required=required, max_len=max_len)
        if value is not None and not is_https_url(value):
            self.add(f"{prop}.{key}", "must be a valid HTTPS URL")

    def obj(self, parent: dict[str, Any], key: str, prop: str, *, required: bool = True) -> dict[str, Any] | None:
        value = parent.get(key)
        where = f"{prop}.{key}" if prop else key
        if value is None:
            if required:
                self.add(where, "must be specified")
            return None
        if not isinstance(value, dict):
            self.add(where, "must be an object")
            return None
        return value


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_https_url(value: str) -> bool:
    """LINE requires HTTPS for media. The emulator also allows plain http to loopback hosts
    (127.0.0.1, localhost, ::1) because tests and `make run` serve images from a local server
    without TLS; anywhere else http stays refused, as on LINE."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and _is_loopback(parts.hostname)


def is_action_uri(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    if parts.scheme in ("http", "https"):
        return bool(parts.hostname)
    return parts.scheme in ("tel", "line") and len(value) > len(parts.scheme) + 1


# --- actions ---------------------------------------------------------------------------------


def validate_action(
    errors: Errors,
    action: Any,
    prop: str,
    *,
    allowed: tuple[str, ...],
    label_required: bool,
    label_max: int = 20,
) -> None:
    if not isinstance(action, dict):
        errors.add(prop, "must be an object")
        return
    kind = errors.one_of(action, "type", prop, allowed)
    errors.string(action, "label", prop, required=label_required, max_len=label_max)
    if kind == "message":
        errors.string(action, "text", prop, max_len=300)
    elif kind == "postback":
        errors.string(action, "data", prop, max_len=300)
        errors.string(action, "displayText", prop, required=False, max_len=300)
        errors.string(action, "text", prop, required=False, max_len=300)
        errors.string(action, "fillInText", prop, required=False, max_len=300)
        if action.get("inputOption") is not None:
            errors.one_of(action, "inputOption", prop,
                          ("closeRichMenu", "openRichMenu", "openKeyboard", "openVoice"))
    elif kind == "uri":
        uri = errors.string(action, "uri", prop, max_len=1000)
        if uri is not None and not is_action_uri(uri):
            errors.add(f"{prop}.uri", "must be a http, https, tel or line URI")
    elif kind == "datetimepicker":
        errors.string(action, "data", prop, max_len=300)
        mode = errors.one_of(action, "mode", prop, tuple(DATETIME_FORMATS))
        if mode is not None:
            for key in ("initial", "max", "min"):
                value = action.get(key)
                if value is not None and not (
                    isinstance(value, str) and DATETIME_FORMATS[mode].match(value)
                ):
                    errors.add(f"{prop}.{key}", f"invalid format for mode {mode}")
    elif kind == "richmenuswitch":
        errors.string(action, "richMenuAliasId", prop, max_len=32)
        errors.string(action, "data", prop, max_len=300)
    elif kind == "clipboard":
        errors.string(action, "clipboardText", prop, max_len=1000)
    # camera, cameraRoll and location carry only a label.


def validate_quick_reply(errors: Errors, quick_reply: Any, prop: str) -> None:
    if not isinstance(quick_reply, dict):
        errors.add(prop, "must be an object")
        return
    items = errors.array(quick_reply, "items", prop, low=1, high=13)
    for i, item in enumerate(items or []):
        where = f"{prop}.items[{i}]"
        if not isinstance(item, dict):
            errors.add(where, "must be an object")
            continue
        errors.one_of(item, "type", where, ("action",))
        errors.url(item, "imageUrl", where, required=False, max_len=2000)
        if "action" not in item:
            errors.add(f"{where}.action", "must be specified")
        else:
            validate_action(errors, item["action"], f"{where}.action",
                            allowed=QUICK_REPLY_ACTIONS, label_required=True, label_max=20)


# --- messages --------------------------------------------------------------------------------


def validate_messages(messages: Any, prop: str = "messages") -> list[Detail]:
    errors = Errors()
    if messages is None:
        errors.add(prop, "must be specified")
        return errors.details
    if not isinstance(messages, list):
        errors.add(prop, "must be an array")
        return errors.details
    if not 1 <= len(messages) <= MAX_MESSAGES:
        errors.add(prop, f"Size must be between 1 and {MAX_MESSAGES}")
        return errors.details
    for i, message in enumerate(messages):
        validate_message(errors, message, f"{prop}[{i}]")
    return errors.details


def validate_message(errors: Errors, message: Any, prop: str) -> None:
    if not isinstance(message, dict):
        errors.add(prop, "must be an object")
        return
    kind = errors.one_of(message, "type", prop, MESSAGE_TYPES)
    if kind in ("text", "textV2"):
        errors.string(message, "text", prop, max_len=5000)
        emojis = errors.array(message, "emojis", prop, low=0, high=20, required=False)
        for j, emoji in enumerate(emojis or []):
            where = f"{prop}.emojis[{j}]"
            if not isinstance(emoji, dict):
                errors.add(where, "must be an object")
                continue
            errors.integer(emoji, "index", where, low=0)
            errors.string(emoji, "productId", where)
            errors.string(emoji, "emojiId", where)
    elif kind == "sticker":
        errors.string(message, "packageId", prop)
        errors.string(message, "stickerId", prop)
    elif kind == "image":
        errors.url(message, "originalContentUrl", prop)
        errors.url(message, "previewImageUrl", prop)
    elif kind == "video":
        errors.url(message, "originalContentUrl", prop)
        errors.url(message, "previewImageUrl", prop)
        errors.string(message, "trackingId", prop, required=False, max_len=100)
    elif kind == "audio":
        errors.url(message, "originalContentUrl", prop)
        errors.integer(message, "duration", prop, low=0)
    elif kind == "location":
        errors.string(message, "title", prop, max_len=100)
        errors.string(message, "address", prop, max_len=100)
        errors.number(message, "latitude", prop)
        errors.number(message, "longitude", prop)
    elif kind == "imagemap":
        _validate_imagemap(errors, message, prop)
    elif kind == "template":
        _validate_template_message(errors, message, prop)
    elif kind == "flex":
        _validate_flex_message(errors, message, prop)

    if message.get("quickReply") is not None:
        validate_quick_reply(errors, message["quickReply"], f"{prop}.quickReply")
    sender = message.get("sender")
    if sender is not None:
        if not isinstance(sender, dict):
            errors.add(f"{prop}.sender", "must be an object")
        else:
            errors.string(sender, "name", f"{prop}.sender", required=False, max_len=20)
            errors.url(sender, "iconUrl", f"{prop}.sender", required=False, max_len=2000)


def _validate_imagemap(errors: Errors, message: dict[str, Any], prop: str) -> None:
    # A light check: the fields without which LINE cannot show an imagemap at all.
    errors.url(message, "baseUrl", prop)
    errors.string(message, "altText", prop, max_len=1500)
    base = errors.obj(message, "baseSize", prop)
    if base is not None:
        errors.integer(base, "width", f"{prop}.baseSize", low=1040, high=1040)
        errors.integer(base, "height", f"{prop}.baseSize", low=1)
    actions = errors.array(message, "actions", prop, low=0, high=50)
    for i, action in enumerate(actions or []):
        where = f"{prop}.actions[{i}]"
        if not isinstance(action, dict):
            errors.add(where, "must be an object")
            continue
        kind = errors.one_of(action, "type", where, ("uri", "message", "clipboard"))
        if kind == "uri":
            uri = errors.string(action, "linkUri", where, max_len=1000)
            if uri is not None and not is_action_uri(uri):
                errors.add(f"{where}.linkUri", "must be a http, https, tel or line URI")
        elif kind == "message":
            errors.string(action, "text", where, max_len=400)
        elif kind == "clipboard":
            errors.string(action, "clipboardText", where, max_len=1000)
        if errors.obj(action, "area", where) is None:
            continue


def _validate_template_message(errors: Errors, message: dict[str, Any], prop: str) -> None:
    errors.string(message, "altText", prop, max_len=400)
    template = errors.obj(message, "template", prop)
    if template is None:
        return
    where = f"{prop}.template"
    kind = errors.one_of(template, "type", where, ("buttons", "confirm", "carousel", "image_carousel"))

    def actions(obj: dict[str, Any], at: str, low: int, high: int) -> int:
        items = errors.array(obj, "actions", at, low=low, high=high)
        for i, action in enumerate(items or []):
            validate_action(errors, action, f"{at}.actions[{i}]", allowed=TEMPLATE_ACTIONS,
                            label_required=True, label_max=20)
        return len(items) if items is not None else -1

    def default_action(obj: dict[str, Any], at: str) -> None:
        if obj.get("defaultAction") is not None:
            validate_action(errors, obj["defaultAction"], f"{at}.defaultAction",
                            allowed=TEMPLATE_ACTIONS, label_required=False)

    if kind == "buttons":
        short = bool(template.get("title") or template.get("thumbnailImageUrl"))
        errors.string(template, "text", where, max_len=60 if short else 160)
        errors.string(template, "title", where, required=False, max_len=40)
        errors.url(template, "thumbnailImageUrl", where, required=False)
        actions(template, where, 1, 4)
        default_action(template, where)
    elif kind == "confirm":
        errors.string(template, "text", where, max_len=240)
        actions(template, where, 2, 2)
    elif kind == "carousel":
        columns = errors.array(template, "columns", where, low=1, high=10)
        counts = set()
        for i, column in enumerate(columns or []):
            at = f"{where}.columns[{i}]"
            if not isinstance(column, dict):
                errors.add(at, "must be an object")
                continue
            short = bool(column.get("title") or column.get("thumbnailImageUrl"))
            errors.string(column, "text", at, max_len=60 if short else 120)
            errors.string(column, "title", at, required=False, max_len=40)
            errors.url(column, "thumbnailImageUrl", at, required=False)
            counts.add(actions(column, at, 1, 3))
            default_action(column, at)
        if len(counts) > 1:
            errors.add(f"{where}.columns", "all columns must have the same number of actions")
    elif kind == "image_carousel":
        columns = errors.array(template, "columns", where, low=1, high=10)
        for i, column in enumerate(columns or []):
            at = f"{where}.columns[{i}]"
            if not isinstance(column, dict):
                errors.add(at, "must be an object")
                continue
            errors.url(column, "imageUrl", at)
            if "action" not in column:
                errors.add(f"{at}.action", "must be specified")
            else:
                validate_action(errors, column["action"], f"{at}.action",
                                allowed=TEMPLATE_ACTIONS, label_required=False, label_max=12)


# --- flex ------------------------------------------------------------------------------------

FLEX_BUBBLE_MAX_BYTES = 30 * 1024
FLEX_CAROUSEL_MAX_BYTES = 50 * 1024


def _validate_flex_message(errors: Errors, message: dict[str, Any], prop: str) -> None:
    errors.string(message, "altText", prop, max_len=1500)
    contents = errors.obj(message, "contents", prop)
    if contents is None:
        return
    where = f"{prop}.contents"
    kind = errors.one_of(contents, "type", where, ("bubble", "carousel"))
    size = len(json.dumps(contents, ensure_ascii=False, separators=(",", ":")).encode())
    if kind == "bubble":
        if size > FLEX_BUBBLE_MAX_BYTES:
            errors.add(where, "the size of a bubble must be 30 KB or less")
        _validate_bubble(errors, contents, where)
    elif kind == "carousel":
        if size > FLEX_CAROUSEL_MAX_BYTES:
            errors.add(where, "the size of a carousel must be 50 KB or less")
        bubbles = errors.array(contents, "contents", where, low=1, high=12)
        for i, bubble in enumerate(bubbles or []):
            at = f"{where}.contents[{i}]"
            if not isinstance(bubble, dict):
                errors.add(at, "must be an object")
                continue
            if errors.one_of(bubble, "type", at, ("bubble",)) is not None:
                _validate_bubble(errors, bubble, at)


def _validate_bubble(errors: Errors, bubble: dict[str, Any], prop: str) -> None:
    for block in ("header", "hero", "body", "footer"):
        value = bubble.get(block)
        if value is None:
            continue
        at = f"{prop}.{block}"
        if not isinstance(value, dict):
            errors.add(at, "must be an object")
            continue
        allowed = ("box", "image", "video") if block == "hero" else ("box",)
        if errors.one_of(value, "type", at, allowed) is not None:
            _validate_component(errors, value, at, parent_layout=None)
    if bubble.get("action") is not None:
        validate_action(errors, bubble["action"], f"{prop}.action", allowed=FLEX_ACTIONS,
                        label_required=False, label_max=40)


def _validate_component(errors: Errors, comp: Any, prop: str, parent_layout: str | None) -> None:
    if not isinstance(comp, dict):
        errors.add(prop, "must be an object")
        return
    allowed = BASELINE_CHILDREN if parent_layout == "baseline" else tuple(
        c for c in FLEX_COMPONENTS if c not in ("span", "icon")
    )
    kind = errors.one_of(comp, "type", prop, allowed)
    if kind is None:
        return
    if kind == "box":
        layout = errors.one_of(comp, "layout", prop, BOX_LAYOUTS)
        children = errors.array(comp, "contents", prop, low=0, high=10_000)
        for i, child in enumerate(children or []):
            _validate_component(errors, child, f"{prop}.contents[{i}]", parent_layout=layout)
    elif kind == "text":
        spans = errors.array(comp, "contents", prop, low=0, high=10_000, required=False)
        errors.string(comp, "text", prop, required=not spans, min_len=0 if spans else 1)
        for i, span in enumerate(spans or []):
            at = f"{prop}.contents[{i}]"
            if not isinstance(span, dict):
                errors.add(at, "must be an object")
                continue
            if errors.one_of(span, "type", at, ("span",)) is not None:
                errors.string(span, "text", at)
        if comp.get("weight") is not None:
            errors.one_of(comp, "weight", prop, ("regular", "bold"))
    elif kind == "button":
        if "action" not in comp:
            errors.add(f"{prop}.action", "must be specified")
        else:
            validate_action(errors, comp["action"], f"{prop}.action", allowed=FLEX_ACTIONS,
                            label_required=True, label_max=40)
        if comp.get("style") is not None:
            errors.one_of(comp, "style", prop, ("primary", "secondary", "link"))
        return
    elif kind in ("image", "icon"):
        errors.url(comp, "url", prop)
    elif kind == "video":
        errors.url(comp, "url", prop)
        errors.url(comp, "previewUrl", prop)
        alt = errors.obj(comp, "altContent", prop)
        if alt is not None and errors.one_of(alt, "type", f"{prop}.altContent", ("box", "image")):
            _validate_component(errors, alt, f"{prop}.altContent", parent_layout=None)
    # separator and filler carry no required fields.
    if comp.get("action") is not None and kind in ("box", "text", "image"):
        validate_action(errors, comp["action"], f"{prop}.action", allowed=FLEX_ACTIONS,
                        label_required=False, label_max=40)


# --- rich menus ------------------------------------------------------------------------------


def validate_rich_menu(body: Any) -> list[Detail]:
    errors = Errors()
    if not isinstance(body, dict):
        errors.add("", "must be an object")
        return errors.details
    size = errors.obj(body, "size", "")
    width = height = None
    if size is not None:
        width = errors.integer(size, "width", "size", low=800, high=2500)
        height = errors.integer(size, "height", "size", low=250, high=1686)
    if not isinstance(body.get("selected"), bool):
        errors.add("selected", "must be specified" if "selected" not in body else "must be a boolean")
    errors.string(body, "name", "", max_len=300)
    errors.string(body, "chatBarText", "", max_len=14)
    areas = errors.array(body, "areas", "", low=0, high=20)
    for i, area in enumerate(areas or []):
        at = f"areas[{i}]"
        if not isinstance(area, dict):
            errors.add(at, "must be an object")
            continue
        bounds = errors.obj(area, "bounds", at)
        if bounds is not None:
            where = f"{at}.bounds"
            x = errors.integer(bounds, "x", where, low=0)
            y = errors.integer(bounds, "y", where, low=0)
            w = errors.integer(bounds, "width", where, low=1)
            h = errors.integer(bounds, "height", where, low=1)
            if None not in (x, y, w, h, width, height) and (x + w > width or y + h > height):
                errors.add(where, "the area must be inside the rich menu")
        if "action" not in area:
            errors.add(f"{at}.action", "must be specified")
        else:
            validate_action(errors, area["action"], f"{at}.action", allowed=RICH_MENU_ACTIONS,
                            label_required=False, label_max=20)
    return errors.details
