"""What a customer sent as an image, video, audio or file, served to the console's pages
(admins and support: it is part of the chat). The content comes from LINE's content endpoint,
cached (flows/media.py). A type a browser could run (HTML, SVG, ...) is never served inline:
only known image, video and audio types are; anything else is a download."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from kizuna.appkeys import SERVICES
from kizuna.storage.errors import Conflict, NotFound

from ..routes import CONVERSATIONS, Refused, route

INLINE = frozenset({
    "image/jpeg", "image/png", "image/gif", "image/webp",
    "video/mp4", "video/quicktime", "video/webm",
    "audio/mp4", "audio/x-m4a", "audio/m4a", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wav", "audio/webm",
})


async def media(request: web.Request) -> web.StreamResponse:
    library = request.config_dict[SERVICES].media
    if library is None:
        raise Refused(404, "error.404")
    try:
        content = await library.content(int(request.match_info["interaction_id"]))
    except NotFound:
        raise Refused(404, "error.404") from None
    except Conflict:  # LINE did not answer: the page shows the broken image; a reload tries again
        return web.Response(status=503, text="LINE did not answer; try again later", headers={"Retry-After": "10"})
    content_type = content.content_type.lower()
    inline = content_type in INLINE and content.kind != "file"
    name = content.file_name or f"{content.kind}-{request.match_info['interaction_id']}"
    headers = {
        "Content-Disposition": ("inline" if inline else f"attachment; filename*=UTF-8''{quote(name, safe='')}"),
        # Whatever it holds, it runs nothing: no scripts, no plugins, its own origin.
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return web.Response(body=content.data, content_type=content_type if inline else "application/octet-stream", headers=headers)


ROUTES = [
    route("GET", "/media/{interaction_id:[0-9]{1,18}}", media, name="media", roles=CONVERSATIONS),
]
