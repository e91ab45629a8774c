"""The `kizuna` command: serve, worker, migrate, demo, token, staff, richmenu, faq, import, metrics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from kizuna.storage.imports import CUSTOMERS_HEADER, ORDERS_HEADER
from kizuna.storage.roles import Role

from . import collector, demo_orders
from .settings import Settings, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kizuna", description="Kizuna: LINE chat-bot and CRM")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web app (and, without REDIS_URL, the worker too)")
    serve.add_argument("--port", type=int, help="overrides PORT")
    serve.add_argument("--host", help="overrides HOST")
    commands.add_parser("worker", help="process events and deliveries (production mode: REDIS_URL set)")
    commands.add_parser("migrate", help="bring the database schema up to date")
    commands.add_parser("demo", help="with the emulator only: a registration coupon, an example FAQ and the first console admin (when there are none)")
    demo_orders = commands.add_parser(
        "demo-orders", help="write a demo shop's order history (two years, Shift_JIS) to a CSV file for `kizuna import orders`")
    demo_orders.add_argument("file", type=Path)
    demo_orders.add_argument("--customers", type=int, default=1000, help="how many customers (default 1000)")
    demo_orders.add_argument("--seed", type=int, default=1)

    token = commands.add_parser("token", help="REST API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token; it is printed once, on the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--role", default=Role.ADMIN.value, choices=[role.value for role in Role])
    create.add_argument("--expires-in-days", type=int, metavar="DAYS", help="the token stops working after this many days (default: never)")

    staff = commands.add_parser("staff", help="console staff accounts")
    staff_commands = staff.add_subparsers(dest="staff_command", required=True)
    staff_create = staff_commands.add_parser(
        "create", help="create a console account; the password is read from standard input when it is piped, "
        "else generated and printed once, on the last line"
    )
    staff_create.add_argument("--email", required=True)
    staff_create.add_argument("--role", required=True, choices=("admin", "marketer", "support"))
    staff_create.add_argument("--name", help="display name (default: the part of the e-mail before @)")
    staff_commands.add_parser("list", help="list the console accounts")
    staff_reset = staff_commands.add_parser(
        "reset-password", help="set a new password (standard input when piped, else generated and printed once); "
        "the account's sessions end"
    )
    staff_reset.add_argument("--email", required=True)
    staff_totp = staff_commands.add_parser("reset-totp", help="remove an account's two-factor authentication (a lost phone)")
    staff_totp.add_argument("--email", required=True)

    richmenu = commands.add_parser("richmenu", help="LINE rich menus")
    richmenu_commands = richmenu.add_subparsers(dest="richmenu_command", required=True)
    richmenu_setup = richmenu_commands.add_parser(
        "setup", help="create (or reuse) the default and member rich menus, set the default, point the aliases, and link "
        "the member menu to every registered customer; safe to re-run (with the emulator, `kizuna serve` does it on start)"
    )
    richmenu_setup.add_argument(
        "--prune", action="store_true",
        help="also delete superseded member menus (members linked to them then see the default menu)",
    )

    faq = commands.add_parser("faq", help="the FAQ the bot answers from (CSV UTF-8: id,question,answer,alternates)")
    faq_commands = faq.add_subparsers(dest="faq_command", required=True)
    faq_import = faq_commands.add_parser(
        "import", help="create or update entries by id from a CSV file; all or nothing (bad rows are listed); "
        "entries not in the file are kept unless --replace"
    )
    faq_import.add_argument("file", help="CSV UTF-8 (a BOM is fine); '-' reads standard input")
    faq_import.add_argument("--replace", action="store_true", help="disable the entries that are not in the file")
    faq_export = faq_commands.add_parser("export", help="write every entry as CSV (the import's format)")
    faq_export.add_argument("-o", "--output", help="file to write (default: standard output)")

    imports = commands.add_parser("import", help="load the shop's orders from a CSV file (UTF-8 or Shift_JIS, detected)")
    import_commands = imports.add_subparsers(dest="import_command", required=True)
    import_orders = import_commands.add_parser(
        "orders", help="create or update orders by external_id, one row per order line (header: "
        + ",".join(ORDERS_HEADER) + "); a batch of 1,000 orders with a bad row is not stored; exits 1 if any row is bad",
    )
    import_orders.add_argument("file", help="CSV, UTF-8 (with or without BOM) or Shift_JIS/CP932")
    import_orders.add_argument("--dry-run", action="store_true", help="check every row, store nothing")
    import_orders.add_argument("--timezone", default="Asia/Tokyo",
                               help="the time zone of an ordered_at without an offset (default Asia/Tokyo)")
    import_customers = import_commands.add_parser(
        "customers", help="create or update customers from the shop's records, one row per customer (header: "
        + ",".join(CUSTOMERS_HEADER) + "; tags split by |); matched by their references; exits 1 if any row is bad",
    )
    import_customers.add_argument("file", help="CSV, UTF-8 (with or without BOM) or Shift_JIS/CP932")
    import_customers.add_argument("--dry-run", action="store_true", help="check every row, store nothing")

    metrics = commands.add_parser("metrics", help="customer metrics (RFM, deciles, LTV)")
    metrics_commands = metrics.add_subparsers(dest="metrics_command", required=True)
    metrics_commands.add_parser(
        "refresh", help="recompute every customer's metrics from the orders and the spend deciles of everyone, "
        "then fit the churn model (BG/NBD: p_alive, expected purchases, model LTV) "
        "(orders keep their customers' metrics current; deciles move only here and after an import, "
        "the churn model daily in a worker: run it nightly without workers)",
    )

    retention = commands.add_parser(
        "retention", help="purge what the retention policies no longer keep (the workers do it daily; see the console's データ保持)",
    )
    retention.add_argument("--dry-run", action="store_true", help="count what would be removed; remove nothing")

    args = parser.parse_args(argv)
    if args.command == "demo-orders":  # writes a file: no settings, no database
        return _demo_orders(args.file, args.customers, args.seed)
    overrides = {key: value for key, value in (("port", getattr(args, "port", None)), ("host", getattr(args, "host", None))) if value is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        print(f"kizuna: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "serve":
        return _serve(settings)
    if args.command == "worker":
        return _worker(settings)
    if args.command == "demo":
        return asyncio.run(_demo(settings))
    if args.command == "migrate":
        return _migrate(settings)
    if args.command == "token":
        return asyncio.run(_create_token(settings, args.name, args.role, expires_in_days=args.expires_in_days))
    if args.command == "staff":
        return asyncio.run(_staff(settings, args))
    if args.command == "faq":
        if args.faq_command == "import":
            return asyncio.run(_faq_import(settings, args.file, replace=args.replace))
        return asyncio.run(_faq_export(settings, args.output))
    if args.command == "richmenu":
        return asyncio.run(_richmenu_setup(settings, prune=args.prune))
    if args.command == "import":
        return asyncio.run(_import(settings, args.import_command, args.file, dry_run=args.dry_run,
                                   zone=getattr(args, "timezone", "Asia/Tokyo")))
    if args.command == "metrics":
        return asyncio.run(_metrics_refresh(settings))
    if args.command == "retention":
        return asyncio.run(_retention(settings, dry_run=args.dry_run))
    return 2


async def _retention(settings: Settings, *, dry_run: bool) -> int:
    from kizuna.campaigns import retention
    from kizuna.storage import audit
    from kizuna.storage.db import create_engine, session_factory
    from kizuna.storage.models import RetentionRunStatus, RetentionTrigger
    from kizuna.storage.types import utcnow

    engine = create_engine(settings.database_url)
    try:
        run = await retention.run(session_factory(engine), now=utcnow(), dry_run=dry_run, trigger=RetentionTrigger.CLI, actor=audit.CLI)
    finally:
        await engine.dispose()
    verb = "would remove" if dry_run else "removed"
    print(f"kizuna retention{' (dry run)' if dry_run else ''}: run {run.id} {run.status}")
    for key, count in run.counts.items():
        print(f"  {key}: {verb} {count:,}")
    if run.status == RetentionRunStatus.INCOMPLETE:
        print("  the time budget ran out: run it again (or let the workers go on tomorrow)")
    return 0


async def _metrics_refresh(settings: Settings) -> int:
    import time

    from kizuna.campaigns import churn
    from kizuna.storage import customer_metrics
    from kizuna.storage.db import create_engine, session_factory, transaction

    engine = create_engine(settings.database_url)
    started = time.perf_counter()
    try:
        sessions = session_factory(engine)
        async with transaction(sessions) as session:
            await customer_metrics.refresh_all(session)
        print(f"kizuna metrics refresh: metrics and deciles done in {time.perf_counter() - started:.1f} s")
        status = await churn.refresh_model(sessions)
    finally:
        await engine.dispose()
    if status.fitted:
        model = status.bgnbd or {}
        print(f"kizuna metrics refresh: churn model fitted on {status.fit_sample:,} of {status.customers:,} customers "
              f"(r={model.get('r', 0):.3f} alpha={model.get('alpha', 0):.3f} a={model.get('a', 0):.3f} b={model.get('b', 0):.3f})"
              + (f"; no model LTV: {status.spend_reason}" if status.spend_reason else ""))
    else:
        print(f"kizuna metrics refresh: churn model not available: {status.reason}")
    print(f"kizuna metrics refresh: done in {time.perf_counter() - started:.1f} s")
    return 0


def _serve(settings: Settings) -> int:
    from .app import create_app

    urls = [f"Kizuna is running on {settings.base_url}"]
    if settings.emulator:
        urls.append(f"  LINE emulator chat: {settings.base_url}/emulator/")
    urls.append(f"  Staff console:      {settings.base_url}/console/")
    urls += [f"  REST API:           {settings.base_url}/api/v1/openapi.json", f"  Health:             {settings.base_url}/healthz"]
    mode = "embedded (SQLite/in-process queue)" if settings.embedded else "production (ingest only; run `kizuna worker`)"
    urls.append(f"  Mode: {mode}")

    def started(_message: str) -> None:
        collector.freeze_what_started()
        print("\n".join(urls), flush=True)

    collector.tune()
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=started, access_log=None)
    return 0


def _worker(settings: Settings) -> int:
    if settings.embedded:
        print("kizuna: setting REDIS_URL: is required for `kizuna worker` (without it `kizuna serve` runs the worker itself)", file=sys.stderr)
        return 2
    collector.tune()
    asyncio.run(_run_worker(settings))
    return 0


async def _run_worker(settings: Settings) -> None:
    from kizuna.storage.db import create_engine, session_factory

    from .app import build_services, build_worker, line_client_for, live_updates, redis_client, stop_worker, work_queue

    engine = create_engine(settings.database_url)
    redis = redis_client(settings)
    line = line_client_for(settings, redis)
    services = build_services(
        settings, sessions=session_factory(engine), queue=work_queue(settings, redis), broadcaster=live_updates(settings, redis), line=line
    )
    worker = build_worker(settings, services=services, line=line)
    task = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    collector.freeze_what_started()
    logging.getLogger("kizuna.worker").info("worker started")
    try:
        waiter = asyncio.create_task(stopped.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        await stop_worker(worker, task)
    finally:
        await line.close()
        await redis.aclose()
        await engine.dispose()


DEMO_FAQ = Path(__file__).parent / "assets" / "demo_faq.csv"  # a cosmetics shop's FAQ (shared/data/faq)
# Replies support staff pick in 1:1チャット (the console's 定型文); {name} becomes the customer's name.
DEMO_CANNED = (
    ("greeting", "はじめのあいさつ", "{name}様、お問い合わせありがとうございます。担当の者がお伺いします。"),
    ("checking", "確認中", "確認いたしますので、少々お待ちください。"),
    ("thanks", "お礼・締め", "{name}様、ご連絡ありがとうございました。ほかにもご不明な点があれば、いつでもお送りください。"),
)


async def _demo(settings: Settings) -> int:
    """What `make run` needs for a first try in the emulator: registering gives a coupon,
    questions get answers from an example FAQ (only while the knowledge base is empty), and
    the first console admin is created (only while there is no staff account)."""
    if not settings.emulator:
        print("kizuna demo: skipped (real LINE credentials are set; create coupons and the FAQ through the API, "
              "the first admin with `kizuna staff create --email E --role admin`)")
        return 0
    from kizuna.storage import audit, canned, coupons, faq
    from kizuna.storage.db import create_engine, session_factory, transaction
    from kizuna.storage.models import CouponCreate

    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            existing = await coupons.registration_coupon(session)
            if existing is None:
                existing = await coupons.create_coupon(session, CouponCreate(
                    title="会員登録特典 500円OFF", description="お会計から500円引きになります(1回限り)。",
                    discount_type="amount", discount_value=500, valid_days=30, trigger="registration",
                ))
                print(f"kizuna demo: created the registration coupon {existing.title!r} (id {existing.id})")
            else:
                print(f"kizuna demo: registration coupon {existing.title!r} (id {existing.id}) already exists")
            if await faq.list_entries(session, limit=1):
                print("kizuna demo: the FAQ already has entries; left as it is")
            else:
                report = await faq.import_entries(session, faq.parse_csv(DEMO_FAQ.read_bytes()))
                print(f"kizuna demo: imported the example FAQ ({len(report.created)} entries; replace it with `kizuna faq import`)")
            if not await canned.list_all(session):
                for shortcut, title, text in DEMO_CANNED:
                    await canned.create(session, shortcut=shortcut, title=title, text=text, actor=audit.CLI)
                print(f"kizuna demo: added {len(DEMO_CANNED)} example canned responses (定型文) for 1:1チャット")
        login = await _demo_admin(session_factory(engine))
    finally:
        await engine.dispose()
    print("kizuna demo: `kizuna serve` sets the rich menus up in the emulator when it starts")
    console = f"{settings.base_url}/console/"
    if login is None:
        print(f"kizuna demo: console at {console} (staff accounts exist; `kizuna staff list`, `kizuna staff reset-password --email E`)")
    else:
        print("kizuna demo: created the first console admin (the password is shown only now):")
        print(f"    console:  {console}")
        print(f"    e-mail:   {login[0]}")
        print(f"    password: {login[1]}")
    return 0


DEMO_ADMIN_EMAIL = "admin@example.com"


def _demo_orders(path: Path, customers: int, seed: int) -> int:
    if not 1 <= customers <= 1_000_000:
        print("kizuna demo-orders: --customers must be from 1 to 1,000,000", file=sys.stderr)
        return 2
    try:
        orders, lines = demo_orders.write(path, customers, seed=seed)
    except OSError as error:
        print(f"kizuna demo-orders: {path}: {error.strerror}", file=sys.stderr)
        return 1
    print(f"kizuna demo-orders: wrote {orders:,} orders ({lines:,} lines) of {customers:,} customers to {path} (Shift_JIS); "
          f"load them with `kizuna import orders {path}`")
    return 0


async def _demo_admin(sessions) -> tuple[str, str] | None:
    """The first console admin, when there is no staff account yet: (e-mail, password)."""
    from kizuna.storage import audit
    from kizuna.storage import staff as staff_store
    from kizuna.storage.db import transaction

    async with sessions() as session:
        if await staff_store.count(session):
            return None
    password = staff_store.generate_password()
    new = await staff_store.prepare(email=DEMO_ADMIN_EMAIL, display_name="オーナー", role="admin", password=password)
    async with transaction(sessions) as session:
        if await staff_store.count(session):
            return None
        await staff_store.create(session, new, actor=audit.CLI)
    return DEMO_ADMIN_EMAIL, password


def _migrate(settings: Settings) -> int:
    from kizuna.storage.migrate import upgrade

    upgrade(settings.database_url)
    print("database is up to date")
    return 0


async def _create_token(settings: Settings, name: str, role: str, *, expires_in_days: int | None = None) -> int:
    from datetime import timedelta

    from kizuna.storage import audit, tokens
    from kizuna.storage.db import create_engine, session_factory, transaction
    from kizuna.storage.errors import Invalid
    from kizuna.storage.types import utcnow

    if expires_in_days is not None and not 1 <= expires_in_days <= tokens.EXPIRY_MAX.days:
        print(f"kizuna token create: --expires-in-days must be from 1 to {tokens.EXPIRY_MAX.days}", file=sys.stderr)
        return 2
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            token, plain = await tokens.create(session, name=name, role=role, actor=audit.CLI, expires_at=expires_at)
    except Invalid as error:
        print(f"kizuna token create: {error}", file=sys.stderr)
        return 2
    finally:
        await engine.dispose()
    expiry = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
    print(f"created {token.role} token {token.name!r} (id {token.id}{expiry}); it is shown only now:")
    print(plain)
    return 0


# -- staff accounts ------------------------------------------------------------------------


def _password_from_stdin() -> str | None:
    """A piped password (the first line of standard input), or None at a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    return line or None


async def _staff(settings: Settings, args) -> int:
    from kizuna.storage import audit
    from kizuna.storage import staff as staff_store
    from kizuna.storage.db import create_engine, session_factory, transaction
    from kizuna.storage.types import utcnow

    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        if args.staff_command == "list":
            async with sessions() as session:
                members = await staff_store.list_all(session)
            for member in members:
                state = "disabled" if member.disabled_at else "active"
                totp = "2FA" if member.totp_enabled_at else "no 2FA"
                print(f"{member.id:>4}  {member.email:<40} {member.role:<9} {state:<8} {totp}")
            if not members:
                print("no staff accounts yet: kizuna staff create --email E --role admin")
            return 0
        try:
            email = staff_store.normalize_email(args.email)
        except staff_store.StaffInvalid as invalid:
            print(f"kizuna: --email: {invalid.message}", file=sys.stderr)
            return 2
        if args.staff_command == "reset-totp":
            async with transaction(sessions) as session:
                member = await staff_store.get_by_email(session, email)
                if member is None:
                    print(f"kizuna: no staff account {email}", file=sys.stderr)
                    return 1
                await staff_store.reset_totp(session, member, actor=audit.CLI)
            print(f"two-factor authentication of {email} removed; they can set it up again under アカウント")
            return 0
        piped = _password_from_stdin()
        password = piped or staff_store.generate_password()
        try:
            staff_store.check_password(password, email=email)
        except staff_store.StaffInvalid as invalid:
            print(f"kizuna: the password from standard input: {invalid.message}", file=sys.stderr)
            return 2
        if args.staff_command == "create":
            try:
                new = await staff_store.prepare(
                    email=email, display_name=args.name or email.split("@")[0], role=args.role, password=password
                )
                async with transaction(sessions) as session:
                    member = await staff_store.create(session, new, actor=audit.CLI)
            except staff_store.StaffInvalid as invalid:
                print(f"kizuna: {invalid.field}: {invalid.message}", file=sys.stderr)
                return 1
            print(f"created {member.role} {member.email} (id {member.id}); log in at {settings.base_url}/console/")
        else:
            password_hash = await staff_store.hash_password(password)
            async with transaction(sessions) as session:
                member = await staff_store.get_by_email(session, email)
                if member is None:
                    print(f"kizuna: no staff account {email}", file=sys.stderr)
                    return 1
                ended = await staff_store.set_password(session, member, password_hash, actor=audit.CLI, now=utcnow())
            print(f"new password set for {member.email}; {ended} session(s) ended")
    finally:
        await engine.dispose()
    if piped is None:
        print("the password is shown only now:")
        print(password)
    return 0


async def _richmenu_setup(settings: Settings, *, prune: bool) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from kizuna.storage.db import create_engine, session_factory

    from .app import line_client_for
    from .line import LineError
    from .richmenu import setup

    line = line_client_for(settings)
    engine = create_engine(settings.database_url)
    try:
        # With the database: members who registered before the menus existed (or under an
        # older design) get the member menu too.
        report = await setup(line, prune=prune, sessions=session_factory(engine))
    except LineError as error:
        print(f"kizuna: rich menu setup failed: {error}", file=sys.stderr)
        if error.status is None and settings.emulator:
            print(f"kizuna: is `kizuna serve` running? Its LINE emulator answers at {settings.line_api_base_url}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(f"kizuna: the menus are set up, but the registered customers could not be read ({type(error).__name__}); "
              "is the database migrated (`kizuna migrate`)?", file=sys.stderr)
        return 1
    finally:
        await line.close()
        await engine.dispose()
    print("\n".join(report.lines()))
    return 0 if report.relinked is None or report.relinked.stopped is None else 1


async def _faq_import(settings: Settings, path: str, *, replace: bool) -> int:
    from kizuna.storage import audit, faq
    from kizuna.storage.db import create_engine, session_factory, transaction

    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
    except OSError as error:
        print(f"kizuna: cannot read {path}: {error.strerror}", file=sys.stderr)
        return 1
    try:
        parsed = faq.parse_csv(data)
    except faq.CsvError as error:
        print(f"kizuna: {path}: nothing was imported; fix these rows (row 1 is the header):", file=sys.stderr)
        for row in error.errors:
            print(f"  {row}", file=sys.stderr)
        if error.total > len(error.errors):
            print(f"  ... and {error.total - len(error.errors)} more", file=sys.stderr)
        return 1
    engine = create_engine(settings.database_url)
    try:
        async with transaction(session_factory(engine)) as session:
            report = await faq.import_entries(session, parsed, replace=replace, actor=audit.CLI)
    finally:
        await engine.dispose()
    print(f"imported {path}:\n  " + "\n  ".join(report.lines()))
    return 0


async def _faq_export(settings: Settings, output: str | None) -> int:
    from kizuna.storage import faq
    from kizuna.storage.db import create_engine, session_factory

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            entries = await faq.list_entries(session)
    finally:
        await engine.dispose()
    text = faq.to_csv(entries)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(output, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        print(f"wrote {len(entries)} FAQ entries to {output}", file=sys.stderr)
    return 0


MAX_PRINTED_ERRORS = 100


async def _import(settings: Settings, what: str, path: str, *, dry_run: bool, zone: str) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from kizuna.storage import imports
    from kizuna.storage.db import create_engine, session_factory
    from kizuna.storage.types import utcnow

    from .progress import import_progress

    # A large file's batches are many objects alive at once: the same tuning as a long-running
    # process (9 % of a 200,000-order import was full collections with CPython's defaults).
    collector.tune()
    collector.freeze_what_started()
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"kizuna: unknown time zone {zone!r}", file=sys.stderr)
        return 2
    file = Path(path)
    try:
        info = imports.inspect(file)
    except OSError as error:
        print(f"kizuna: cannot read {path}: {error.strerror}", file=sys.stderr)
        return 1
    except imports.ImportFileError as error:
        print(f"kizuna: {path} {error}; nothing was imported", file=sys.stderr)
        return 1
    engine = None if dry_run else create_engine(settings.database_url)
    printed = 0
    try:
        with import_progress(f"{'checking' if dry_run else 'importing'} {file.name}", total=info.lines) as bar:
            def on_error(error: imports.RowError) -> None:
                nonlocal printed
                printed += 1
                if printed <= MAX_PRINTED_ERRORS:
                    bar.console.print(f"{path}: {error}", markup=False, highlight=False, soft_wrap=True)

            summary = await imports.run_import(
                imports.ORDERS if what == "orders" else imports.CUSTOMERS, file, session_factory(engine) if engine is not None else None, zone=tz, now=utcnow, dry_run=dry_run,
                progress=bar.advance, on_error=on_error,
            )
    except imports.ImportFileError as error:
        print(f"kizuna: {path} {error}; nothing was imported", file=sys.stderr)
        return 1
    finally:
        if engine is not None:
            await engine.dispose()
    if printed > MAX_PRINTED_ERRORS:
        print(f"{path}: ... and {printed - MAX_PRINTED_ERRORS} more bad rows", file=sys.stderr)
    print("\n".join(_import_summary(what, summary, encoding=info.encoding, dry_run=dry_run)))
    return 1 if summary.error_count else 0


def _import_summary(what: str, summary, *, encoding: str, dry_run: bool) -> list[str]:
    stored = summary.stored
    lines = [f"read {summary.rows} rows ({'UTF-8' if encoding.startswith('utf-8') else 'Shift_JIS/CP932'}) in "
             f"{summary.batches} batches: {summary.records} {what} in good batches"]
    if summary.error_count:
        lines.append(f"{summary.error_count} bad rows: {summary.skipped_batches} batches not "
                     f"{'importable' if dry_run else 'imported'} (fix the rows and run again; a re-run changes nothing that is stored)")
    if dry_run:
        lines.append("dry run: nothing was stored")
    elif what == "orders":
        lines.append(f"orders: {stored.created} created, {stored.updated} updated, {stored.unchanged} unchanged; "
                     f"customers created: {stored.customers_created}; merge candidates: {stored.merge_candidates}")
    else:
        lines.append(f"customers: {stored.created} created, {stored.updated} updated, {stored.unchanged} unchanged; "
                     f"merge candidates: {stored.merge_candidates}")
    return lines

if __name__ == "__main__":
    sys.exit(main())
