"""Kizuna's two rich menus: set them up on LINE (`kizuna richmenu setup`) and switch a
customer between them (the "rich_menu" effect).

- "default" (alias `kizuna-default`): the channel's default menu, what every friend sees:
  会員登録 / クーポン / お問い合わせ / 会員情報.
- "registered" (alias `kizuna-registered`): linked to a customer when they register:
  会員情報 / クーポン / お問い合わせ / 登録内容の変更. 会員登録 is of no use to a member;
  its highlighted place goes to 会員情報 (the member's details, with the お知らせ switch),
  and 登録内容の変更 (`action=profile_edit`, straight to the list of details to change)
  takes the freed place. クーポン and お問い合わせ stay where they were.

Every area is a postback (`action=...`, see docs/ARCHITECTURE.md) with a displayText, so
the chat shows what was tapped. The images are the committed PNGs in `assets/`
(tools/make_richmenu_images.py made them).

Setup is idempotent and thrifty with LINE's limit of 100 creates/deletes an hour: a menu's
name carries a hash of its definition and image (`kizuna-default#<hash>`). A run reuses the
menu with the same name, creates one only when the design changed, points the alias and
the default at it, and deletes only what nobody can be shown: duplicates of the current
design and superseded default menus. A superseded member menu is kept, because members
stay linked to it (LINE has no "who is linked to this menu"); `prune=True` deletes it too,
and those members then see the default menu.

Given the database (`sessions`), setup then links the member menu to every registered
customer who has not blocked the account (`relink_members`): members who registered
before the menus were set up kept the channel's default menu, and members of a
superseded design get the current one. They are read in pages of `RELINK_PAGE` (keyset on
the customer id, one query per page) and linked one request each, at most
`RELINK_CONCURRENCY` in flight, paced by the LINE client's limiter for that endpoint
(LINE allows 2,000 a second). In emulator mode (`make run`) the server runs all this
itself once it is listening (bot/app.py), so a newcomer sees the menus at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import audit
from kizuna.storage.db import transaction
from kizuna.storage.errors import Conflict
from kizuna.storage.models import Customer

from .line import LineClient, LineError, LineUnavailable

log = logging.getLogger("kizuna.richmenu")
RELINK_PAGE = 500
RELINK_CONCURRENCY = 16
MAX_REPORTED_FAILURES = 10

WIDTH, HEIGHT = 2500, 1686
CONTENT_TYPE = "image/png"
# Deletes are 100 an hour per channel, shared with creates: one run never spends many.
MAX_DELETES_PER_RUN = 10


@dataclass(frozen=True)
class Area:
    label: str  # on the image; also the displayText and the action's accessibility label
    action: str  # postback data

    def to_json(self, bounds: dict) -> dict:
        return {
            "bounds": bounds,
            "action": {"type": "postback", "label": self.label[:20], "data": self.action, "displayText": self.label},
        }


@dataclass(frozen=True)
class MenuSpec:
    key: str  # "default" | "registered": what effects ask for
    alias: str
    chat_bar_text: str
    image_file: str
    areas: tuple[Area, Area, Area, Area]  # top-left, top-right, bottom-left, bottom-right

    def image(self) -> bytes:
        return resources.files("kizuna.bot.assets").joinpath(self.image_file).read_bytes()

    def definition(self) -> dict:
        """The rich menu object without its name."""
        half_w, half_h = WIDTH // 2, HEIGHT // 2
        cells = [(0, 0), (half_w, 0), (0, half_h), (half_w, half_h)]
        return {
            "size": {"width": WIDTH, "height": HEIGHT},
            "selected": True,  # open when the chat opens: the menu is the shop's front door
            "chatBarText": self.chat_bar_text,
            "areas": [
                area.to_json({"x": x, "y": y, "width": WIDTH - x if x else half_w, "height": HEIGHT - y if y else half_h})
                for area, (x, y) in zip(self.areas, cells)
            ],
        }

    def digest(self) -> str:
        canonical = json.dumps(self.definition(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode() + b"\0" + self.image()).hexdigest()[:12]

    @property
    def name_prefix(self) -> str:
        return f"{self.alias}#"

    def name(self) -> str:
        return self.name_prefix + self.digest()

    def body(self) -> dict:
        return {**self.definition(), "name": self.name()}


DEFAULT = MenuSpec(
    key="default",
    alias="kizuna-default",
    chat_bar_text="メニュー",
    image_file="richmenu_default.png",
    areas=(
        Area("会員登録", "action=register"),
        Area("クーポン", "action=coupons"),
        Area("お問い合わせ", "action=inquiry"),
        Area("会員情報", "action=member_info"),
    ),
)
REGISTERED = MenuSpec(
    key="registered",
    alias="kizuna-registered",
    chat_bar_text="会員メニュー",
    image_file="richmenu_registered.png",
    areas=(
        Area("会員情報", "action=member_info"),
        Area("クーポン", "action=coupons"),
        Area("お問い合わせ", "action=inquiry"),
        Area("登録内容の変更", "action=profile_edit"),
    ),
)
MENUS = {spec.key: spec for spec in (DEFAULT, REGISTERED)}


# -- setup -------------------------------------------------------------------------------


@dataclass
class MenuResult:
    key: str
    alias: str
    rich_menu_id: str
    name: str
    menu: str  # created | reused (found by name, not yet the alias's) | unchanged
    alias_change: str  # created | updated | unchanged


@dataclass
class RelinkReport:
    """The member menu linked to the registered customers (`relink_members`)."""

    members: int = 0  # registered customers who have not blocked the account
    linked: int = 0
    failed: int = 0  # LINE refused (e.g. a user LINE no longer knows)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (LINE user id, reason), the first few
    stopped: str | None = None  # LINE stayed unavailable: the rest were not tried

    def lines(self) -> list[str]:
        out = [f"member menu linked to {self.linked} of {self.members} registered customers"
               + (f" ({self.failed} refused by LINE)" if self.failed else "")]
        out += [f"  not linked: {user} ({reason})" for user, reason in self.failures]
        if self.failed > len(self.failures):
            out.append(f"  ... and {self.failed - len(self.failures)} more")
        if self.stopped:
            out.append(f"  stopped early, LINE is unavailable ({self.stopped}); run setup again later")
        return out


@dataclass
class SetupReport:
    menus: list[MenuResult] = field(default_factory=list)
    default_change: str = "unchanged"  # set | unchanged
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (id, name)
    kept: list[tuple[str, str]] = field(default_factory=list)  # superseded member menus left in place
    left_for_later: list[tuple[str, str]] = field(default_factory=list)  # over MAX_DELETES_PER_RUN
    relinked: RelinkReport | None = None  # with the database: the member menu linked to the members

    def menu(self, key: str) -> MenuResult:
        return next(result for result in self.menus if result.key == key)

    def lines(self) -> list[str]:
        out = []
        for result in self.menus:
            out.append(f"{result.key} menu: {result.menu} {result.rich_menu_id} ({result.name})")
            out.append(f"  alias {result.alias} -> {result.rich_menu_id}: {result.alias_change}")
        default_id = self.menu("default").rich_menu_id
        out.append(f"default rich menu: {default_id} ({'set' if self.default_change == 'set' else 'already set'})")
        for menu_id, name in self.deleted:
            out.append(f"deleted old menu {menu_id} ({name})")
        for menu_id, name in self.kept:
            out.append(
                f"kept old member menu {menu_id} ({name}): members linked to it keep it; "
                "run with --prune to delete it (they then see the default menu)"
            )
        for menu_id, name in self.left_for_later:
            out.append(f"not deleted yet (LINE allows 100 deletes an hour): {menu_id} ({name}); run setup again later")
        if self.relinked is not None:
            out += self.relinked.lines()
        return out


async def setup(line: LineClient, *, prune: bool = False, sessions=None) -> SetupReport:
    """Make LINE's rich menus match MENUS; safe to run any number of times. With `sessions`
    (the database), also link the member menu to every registered customer."""
    report = SetupReport()
    existing = await line.list_rich_menus()
    chosen: dict[str, str] = {}
    for spec in MENUS.values():
        result = await _ensure_menu(line, spec, existing)
        chosen[spec.key] = result.rich_menu_id
        report.menus.append(result)

    if await line.get_default_rich_menu_id() != chosen["default"]:
        await line.set_default_rich_menu(chosen["default"])
        report.default_change = "set"

    if any(result.menu != "unchanged" for result in report.menus):
        # A create retried after a lost answer leaves a twin made in this very run.
        existing = await line.list_rich_menus()
    doomed: list[tuple[str, str]] = []
    for spec in MENUS.values():
        current_name = spec.name()
        for menu in existing:
            name, menu_id = menu.get("name") or "", menu["richMenuId"]
            if menu_id == chosen[spec.key] or not name.startswith(spec.name_prefix):
                continue
            if name == current_name or spec.key == "default" or prune:
                # A duplicate of the current design was never shown (aliases and the default
                # point at the chosen one); an old default menu is shown to nobody now.
                doomed.append((menu_id, name))
            else:
                report.kept.append((menu_id, name))
    for menu_id, name in doomed[:MAX_DELETES_PER_RUN]:
        await line.delete_rich_menu(menu_id)
        report.deleted.append((menu_id, name))
    report.left_for_later = doomed[MAX_DELETES_PER_RUN:]
    # The effect's cached alias lookups in this process are stale now.
    alias_cache(line).clear()
    if sessions is not None:
        report.relinked = await relink_members(line, sessions, chosen["registered"])
    return report


async def relink_members(line: LineClient, sessions, menu_id: str) -> RelinkReport:
    """Link `menu_id` to every registered customer who has not blocked the account (see the
    module docstring). A refusal for one customer is counted and the rest go on; LINE
    staying unavailable stops the run (a later setup finishes it: linking is idempotent)."""
    report = RelinkReport()
    limit = asyncio.Semaphore(RELINK_CONCURRENCY)

    async def link(line_user_id: str) -> None:
        async with limit:
            if report.stopped:
                return
            try:
                await line.link_rich_menu(line_user_id, menu_id)
            except LineUnavailable as error:
                report.stopped = error.message
            except LineError as error:
                report.failed += 1
                if len(report.failures) < MAX_REPORTED_FAILURES:
                    report.failures.append((line_user_id, f"LINE {error.status}: {error.message}"))
            else:
                report.linked += 1

    after = 0
    while not report.stopped:
        async with sessions() as session:
            page = (await session.execute(
                sa.select(Customer.id, Customer.line_user_id)
                .where(Customer.registered.is_(True), Customer.blocked.is_(False), Customer.id > after)
                .order_by(Customer.id).limit(RELINK_PAGE)
            )).all()
        if not page:
            break
        report.members += len(page)
        after = page[-1][0]
        await asyncio.gather(*(link(line_user_id) for _id, line_user_id in page))
    log.info("member rich menu %s linked to %d of %d members (%d refused)", menu_id, report.linked, report.members, report.failed)
    return report


async def _ensure_menu(line: LineClient, spec: MenuSpec, existing: list[dict]) -> MenuResult:
    name = spec.name()
    current = await line.get_rich_menu_alias(spec.alias)
    same = [menu["richMenuId"] for menu in existing if menu.get("name") == name]
    if current in same:
        # The alias can only point at a menu that has its image (LINE refuses otherwise).
        menu_id, outcome = current, "unchanged"
    elif same:
        # Made by an earlier run that stopped before pointing the alias (or by a retried
        # create): the image may be missing.
        menu_id, outcome = same[0], "reused"
        if await line.get_rich_menu_image(menu_id) is None:
            await _upload(line, menu_id, spec)
    else:
        menu_id, outcome = await line.create_rich_menu(spec.body()), "created"
        log.info("created rich menu %s (%s)", menu_id, name)
        await _upload(line, menu_id, spec)
    if current is None:
        await line.create_rich_menu_alias(spec.alias, menu_id)
        alias_change = "created"
    elif current != menu_id:
        await line.update_rich_menu_alias(spec.alias, menu_id)
        alias_change = "updated"
    else:
        alias_change = "unchanged"
    return MenuResult(spec.key, spec.alias, menu_id, name, outcome, alias_change)


async def _upload(line: LineClient, menu_id: str, spec: MenuSpec) -> None:
    try:
        await line.upload_rich_menu_image(menu_id, spec.image(), CONTENT_TYPE)
    except LineError as error:
        # LINE never replaces an image: "already uploaded" on a menu made for this image
        # means an earlier attempt whose answer was lost did upload it.
        if error.status == 400 and "already" in error.message.lower():
            log.info("rich menu %s already has its image", menu_id)
            return
        raise


# -- for the console: status and setup through Services.rich_menus -----------------------


@dataclass(frozen=True)
class MenuStatus:
    key: str
    alias: str
    chat_bar_text: str
    labels: tuple[str, ...]  # the four areas: top-left, top-right, bottom-left, bottom-right
    rich_menu_id: str | None  # where the alias points; None: not set up
    current: bool  # the alias points at a menu of today's design (name and image)


@dataclass(frozen=True)
class RichMenuStatus:
    menus: tuple[MenuStatus, ...]
    default_set: bool  # the channel's default menu is our "default" menu

    @property
    def set_up(self) -> bool:
        return self.default_set and all(menu.current for menu in self.menus)


class RichMenus:
    """The rich menus as staff see them in the console (`Services.rich_menus`, built by the
    app factory): the console may not import bot/ or talk to LINE, so it gets this object.
    A refusal or an outage of LINE is raised as `Conflict("line_error")`, a service error
    the console shows like any other."""

    def __init__(self, line: LineClient, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.line = line
        self.sessions = sessions

    async def status(self) -> RichMenuStatus:
        try:
            names = {menu["richMenuId"]: menu.get("name") for menu in await self.line.list_rich_menus()}
            default_id = await self.line.get_default_rich_menu_id()
            aliases = {spec.key: await self.line.get_rich_menu_alias(spec.alias) for spec in MENUS.values()}
        except LineError as error:
            raise Conflict("line_error", str(error)) from None
        menus = tuple(
            MenuStatus(spec.key, spec.alias, spec.chat_bar_text, tuple(area.label for area in spec.areas),
                       aliases[spec.key], aliases[spec.key] is not None and names.get(aliases[spec.key]) == spec.name())
            for spec in MENUS.values()
        )
        return RichMenuStatus(menus, default_set=default_id is not None and default_id == aliases["default"])

    async def setup(self, *, actor: audit.Actor) -> SetupReport:
        """`setup` (never prunes: members keep their menu; relinks the members), then the audit entry."""
        try:
            report = await setup(self.line, sessions=self.sessions)
        except LineError as error:
            raise Conflict("line_error", str(error)) from None
        async with transaction(self.sessions) as session:
            audit.record(session, actor, audit.Action.RICH_MENU_SETUP, target="rich_menus",
                         menus=", ".join(f"{result.key} {result.menu}" for result in report.menus),
                         default=report.default_change, deleted=len(report.deleted))
        return report

    @staticmethod
    def image(key: str) -> bytes | None:
        spec = MENUS.get(key)
        return spec.image() if spec is not None else None


# -- switching one customer (the "rich_menu" effect) -------------------------------------


class AliasCache:
    """alias -> rich menu id, remembered for `ttl` seconds (`miss_ttl` for "no such
    alias"), so registrations do not cost a LINE call each."""

    def __init__(self, line: LineClient, *, ttl: float = 300.0, miss_ttl: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.line = line
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self.clock = clock
        self._entries: dict[str, tuple[str | None, float]] = {}
        self._lock = asyncio.Lock()

    async def resolve(self, alias: str) -> str | None:
        entry = self._entries.get(alias)
        if entry is not None and entry[1] > self.clock():
            return entry[0]
        async with self._lock:  # many registrations at once share one lookup
            entry = self._entries.get(alias)
            if entry is not None and entry[1] > self.clock():
                return entry[0]
            menu_id = await self.line.get_rich_menu_alias(alias)
            self._entries[alias] = (menu_id, self.clock() + (self.ttl if menu_id else self.miss_ttl))
            return menu_id

    def forget(self, alias: str) -> None:
        self._entries.pop(alias, None)

    def clear(self) -> None:
        self._entries.clear()


# One cache per LineClient, i.e. per process in production (tests make a client per emulator).
_caches: weakref.WeakKeyDictionary[LineClient, AliasCache] = weakref.WeakKeyDictionary()


def alias_cache(line: LineClient) -> AliasCache:
    cache = _caches.get(line)
    if cache is None:
        cache = _caches[line] = AliasCache(line)
    return cache


async def switch_user_menu(line: LineClient, line_user_id: str, menu: str | None) -> str:
    """Show `menu` ("registered" or "default") to one customer; says what it did.

    "registered" links the member menu; "default" unlinks, so LINE shows the channel's
    default menu. Without `kizuna richmenu setup` there is nothing to do: the bot works
    without rich menus."""
    if menu not in MENUS:
        log.error("rich_menu effect for %s names no known menu: %r", line_user_id, menu)
        return "unknown menu"
    cache = alias_cache(line)
    # The member menu is the only one Kizuna links: if it is not set up, nothing of ours
    # can be linked to the customer either.
    alias = REGISTERED.alias
    menu_id = await cache.resolve(alias)
    if menu_id is None:
        log.info("no rich menu is set up (alias %s missing; run `kizuna richmenu setup`): %s keeps the menu it has", alias, line_user_id)
        return "not set up"
    if menu == "default":
        await line.unlink_rich_menu(line_user_id)
        return "unlinked"
    try:
        await line.link_rich_menu(line_user_id, menu_id)
    except LineError as error:
        if error.status not in (400, 404):
            raise
        # The cached menu may have been replaced and deleted since: look again, once.
        cache.forget(alias)
        fresh = await cache.resolve(alias)
        if fresh is None or fresh == menu_id:
            raise
        await line.link_rich_menu(line_user_id, fresh)
        menu_id = fresh
    log.info("linked rich menu %s to %s", menu_id, line_user_id)
    return "linked"
