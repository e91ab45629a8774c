"""Support-console fixtures for the issue 13 benchmarks (bench/live_latency.py, bench/inbox_page.py).

- `load_support_data`: customers, their support conversations and a timeline for each,
  bulk-loaded server-side (INSERT ... SELECT FROM generate_series), so that a million
  customers take seconds, not the minutes that rows sent one by one from Python would;
- `create_staff`: a console account made with `kizuna staff create`, as an operator would;
- `console_login`: that account logged in over HTTP with the login form (CSRF token, cookie),
  as a browser would, giving a client that holds the session cookie.

The data has the shape that the inbox's queries meet in production: conversations spread
over the customers, the timeline rows of all customers interleaved by time (ids are given
in arrival order, so one customer's rows lie on many heap pages), inbound rows carrying a
payload of the size LINE's events have, pending conversations that no person has answered
yet (the "latest staff reply" lookup then walks the customer's whole timeline), and resolved
conversations of other customers beside the active ones.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

# The first staff member (created with the CLI, logged in over HTTP) owns every
# `STAFF_COUNT`-th open conversation; colleagues (plain rows) own the others.
STAFF_COUNT = 5
PASSWORD = "bench-password correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Shape:
    customers: int = 1_000_000
    active: int = 10_000            # pending or open conversations (one per customer)
    pending_share: float = 0.4      # of the active ones: waiting for a person; the rest are open
    resolved: int = 40_000          # resolved conversations of other customers
    timeline: int = 30              # timeline rows of each customer with an active conversation
    background: int = 1_000_000     # other timeline rows, spread over all customers


def create_staff(cli: list[str], env: dict[str, str], email: str, role: str = "support",
                 password: str = PASSWORD, cwd=None) -> int:
    """`kizuna staff create` with the password piped on standard input; returns the id."""
    result = subprocess.run([*cli, "staff", "create", "--email", email, "--role", role], env=env, cwd=cwd,
                            input=password + "\n", capture_output=True, text=True, timeout=120)
    found = re.search(r"\(id (\d+)\)", result.stdout)
    if result.returncode != 0 or not found:
        raise RuntimeError(f"kizuna staff create failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return int(found.group(1))


async def console_login(base_url: str, email: str, password: str = PASSWORD):
    """An aiohttp client logged in to the console at `base_url` through the login form.
    Its cookie jar holds the session; close it when done."""
    import aiohttp

    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                   timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
    try:
        async with client.get(f"{base_url}/console/login", allow_redirects=False) as response:
            page = await response.text()
        token = CSRF_INPUT.search(page)
        if response.status != 200 or token is None:
            raise RuntimeError(f"no login form at {base_url}/console/login ({response.status})")
        form = {"email": email, "password": password, "csrf_token": token.group(1)}
        async with client.post(f"{base_url}/console/login", data=form, allow_redirects=False) as response:
            await response.read()
            if response.status != 303 or "/console/login" in response.headers.get("Location", "/console/login"):
                raise RuntimeError(f"console login as {email} refused ({response.status})")
    except BaseException:
        await client.close()
        raise
    return client


async def load_support_data(dsn: str, shape: Shape, staff_id: int, *, line_user_ids: list[str] | None = None) -> dict:
    """Fill a migrated, empty database; returns what was loaded and how long each step took.

    Customer ids are 1..customers; with `line_user_ids`, the first customers get those LINE
    ids (users the emulator knows), in order, and customer i's active conversation is on
    customer 1 + i * stride (so with stride 1 the given users are exactly those in one)."""
    import asyncpg

    if shape.active > shape.customers or shape.resolved > shape.customers:
        raise ValueError("more conversations than customers")
    stride = shape.customers // shape.active if shape.active else 1
    conn = await asyncpg.connect(dsn, timeout=10)
    timings: dict[str, float] = {}
    try:
        # A bulk load is not a live workload: no WAL flush wait per statement.
        await conn.execute("SET synchronous_commit = off")
        staff_ids = [staff_id] + await _colleagues(conn, STAFF_COUNT - 1)
        for name, sql, args in _statements(shape, stride, staff_ids, line_user_ids or []):
            started = time.perf_counter()
            await conn.execute(sql, *args, timeout=600)
            timings[name] = time.perf_counter() - started
        started = time.perf_counter()
        for table in ("customers", "conversations", "interactions", "staff"):
            await conn.execute(f"VACUUM (ANALYZE) {table}", timeout=600)
        timings["vacuum analyze"] = time.perf_counter() - started
        counts = {table: await conn.fetchval(f"SELECT count(*) FROM {table}")
                  for table in ("customers", "conversations", "interactions")}
        by_status = {row["status"]: row["n"] for row in await conn.fetch(
            "SELECT status, count(*) AS n FROM conversations GROUP BY status")}
        mine = await conn.fetchval(
            "SELECT count(*) FROM conversations WHERE status <> 'resolved' AND assignee_id = $1", staff_id)
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return {"counts": counts, "by_status": by_status, "mine": mine, "staff_ids": staff_ids, "stride": stride,
            "database_mib": round(size / 2**20), "timings": timings}


async def _colleagues(conn, count: int) -> list[int]:
    """Other support members: plain rows (nobody logs in as them), the hash of the first."""
    rows = await conn.fetch(
        """INSERT INTO staff (email, display_name, role, password_hash, password_changed_at, locale, created_at)
           SELECT 'colleague' || g || '@bench.example', '同僚' || g, 'support', s.password_hash, now(), 'ja', now()
           FROM generate_series(1, $1) g, (SELECT password_hash FROM staff ORDER BY id LIMIT 1) s
           RETURNING id""", count)
    return [row["id"] for row in rows]


def _statements(shape: Shape, stride: int, staff_ids: list[int], line_user_ids: list[str]) -> list[tuple[str, str, tuple]]:
    """(what, SQL, arguments) in order. Times are laid out backwards from now: background
    rows over the past year, the active conversations' timelines over the last hours."""
    n, active, resolved = shape.customers, shape.active, shape.resolved
    staff = list(staff_ids)
    # Conversation k is pending when k % 5 < pending_fifths (0.4: 2 in 5); an open one belongs
    # to staff[(k / 5) % len(staff)], so each member owns the same share of the open ones.
    pending = f"k % 5 < {round(shape.pending_share * 5)}"
    return [
        ("customers", f"""
            INSERT INTO customers (id, line_user_id, display_name, language, followed, blocked, followed_at,
                                   last_interaction_at, created_at, registered, full_name, marketing_opt_in)
            SELECT g, coalesce(($1::text[])[g], 'U' || md5('kizuna-bench-customer-' || g)),
                   'お客様' || g, 'ja', g % 20 <> 0, g % 20 = 0, t, t, t, g % 3 = 0,
                   CASE WHEN g % 3 = 0 THEN '山田 花子' END, g % 4 = 0
            FROM generate_series(1, {n}) g, LATERAL (SELECT now() - (({n} - g) * interval '30 seconds') AS t) x""",
         (line_user_ids,)),
        ("customer id sequence", f"SELECT setval('customers_id_seq', {n})", ()),
        # Background timeline: one customer after another in a scattered order (a prime
        # stride), older than every conversation; inbound rows carry a LINE-sized payload.
        ("background timeline", f"""
            INSERT INTO interactions (customer_id, direction, kind, text, payload, sender_type, sender_id, created_at)
            SELECT c, d, 'message.text', txt,
                   CASE WHEN d = 'in' THEN {_payload_sql('g')} END,
                   CASE WHEN d = 'in' THEN 'customer' ELSE 'bot' END, NULL,
                   now() - interval '1 day' - (({shape.background} - g) * interval '30 seconds')
            FROM generate_series(1, {shape.background}) g,
                 LATERAL (SELECT 1 + ((g::bigint * 104729) % {n})::int AS c,
                                 CASE WHEN g % 2 = 0 THEN 'in' ELSE 'out' END AS d,
                                 'こんにちは、予約の件で' || g AS txt) x""", ()),
        ("resolved conversations", f"""
            INSERT INTO conversations (customer_id, status, assignee_id, priority, labels, reason, created_at,
                                       waiting_since, first_response_at, resolved_at, csat_score, csat_at)
            SELECT c, 'resolved', ($1::int[])[1 + k % {len(staff)}], 'normal', '[]'::jsonb, 'keyword',
                   t, t, t + interval '5 minutes', t + interval '1 hour', CASE WHEN k % 3 = 0 THEN 1 + k % 5 END,
                   CASE WHEN k % 3 = 0 THEN t + interval '2 hours' END
            FROM generate_series(0, {resolved} - 1) k,
                 LATERAL (SELECT 1 + ((k::bigint * 7919 + 3) % {n})::int AS c,
                                 now() - interval '2 days' - (k * interval '10 minutes') AS t) x""", (staff,)),
        ("active conversations", f"""
            INSERT INTO conversations (customer_id, status, assignee_id, priority, labels, reason, created_at,
                                       waiting_since, first_response_at)
            SELECT 1 + k * {stride}, CASE WHEN {pending} THEN 'pending' ELSE 'open' END,
                   CASE WHEN {pending} THEN NULL ELSE ($1::int[])[1 + (k / 5) % {len(staff)}] END,
                   CASE WHEN k % 47 = 0 THEN 'urgent' WHEN k % 11 = 1 THEN 'high' WHEN k % 13 = 2 THEN 'low'
                        ELSE 'normal' END,
                   CASE WHEN k % 7 = 0 THEN '["予約"]'::jsonb ELSE '[]'::jsonb END, 'keyword', t - interval '20 minutes', t,
                   CASE WHEN {pending} THEN NULL ELSE t + interval '3 minutes' END
            FROM generate_series(0, {active} - 1) k,
                 LATERAL (SELECT now() - (({active} - k) * interval '2 seconds') AS t) x""", (staff,)),
        # The active conversations' timelines: step s of every conversation, then step s + 1
        # (everyone chatting at once). Steps 0-19 customer/bot, 20 the handoff record, 21
        # the bot's "connecting you", then open ones alternate staff/customer and pending
        # ones have only the customer writing (no person has answered).
        ("conversation timelines", f"""
            INSERT INTO interactions (customer_id, direction, kind, text, payload, sender_type, sender_id, created_at)
            SELECT cv.customer_id, r.d, r.kind, r.txt, CASE WHEN r.d = 'in' THEN {_payload_sql('s * 100000 + cv.id')} END,
                   r.sender, r.sender_id, cv.created_at + s * interval '1 minute'
            FROM generate_series(0, {shape.timeline} - 1) s
            CROSS JOIN LATERAL (SELECT * FROM conversations WHERE status <> 'resolved' ORDER BY id) cv
            CROSS JOIN LATERAL (SELECT
                CASE WHEN s < 20 THEN CASE WHEN s % 2 = 0 THEN 'in' ELSE 'out' END
                     WHEN s = 20 THEN 'sys' WHEN s = 21 THEN 'out'
                     WHEN cv.status = 'open' AND s % 2 = 0 THEN 'out' ELSE 'in' END AS d,
                CASE WHEN s = 20 THEN 'conversation.bot_handoff' ELSE 'message.text' END AS kind,
                CASE WHEN s = 20 THEN NULL ELSE 'お問い合わせ ' || s END AS txt,
                CASE WHEN s = 20 THEN 'system' WHEN s = 21 OR (s < 20 AND s % 2 = 1) THEN 'bot'
                     WHEN cv.status = 'open' AND s >= 22 AND s % 2 = 0 THEN 'staff' ELSE 'customer' END AS sender,
                CASE WHEN cv.status = 'open' AND s >= 22 AND s % 2 = 0 THEN 'staff:' || cv.assignee_id END AS sender_id
            ) r
            ORDER BY s, cv.id""", ()),
    ]


def _payload_sql(seed: str) -> str:
    """A text-message event as LINE sends it (about 400 bytes of jsonb), as the processor stores it."""
    return f"""jsonb_build_object(
        'type', 'message', 'mode', 'active', 'timestamp', 1767225600000 + ({seed})::bigint,
        'webhookEventId', '01J' || upper(substr(md5(({seed})::text), 1, 23)),
        'replyToken', md5(({seed})::text || 'r'),
        'source', jsonb_build_object('type', 'user', 'userId', 'U' || md5(({seed})::text)),
        'deliveryContext', jsonb_build_object('isRedelivery', false),
        'message', jsonb_build_object('id', (({seed})::bigint + 500000000000000)::text, 'type', 'text',
                                      'quoteToken', md5(({seed})::text || 'q'), 'text', 'こんにちは、予約の件で'))"""
