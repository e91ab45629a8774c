"""The event processor: stored webhook events -> customer, timeline, handlers, replies.

One source (a LINE user, else a group or room) is drained by one task at a time,
oldest event first (the queue's `hold` guarantees it across workers). Everything an
event changes - customer, timeline rows, handler effects, the outbound deliveries and
the event's `done` mark - commits in one transaction, so a crash at any point
leaves the event pending and re-running it starts from a clean slate. The done mark
is fenced by the attempt's number: if another worker took the event over meanwhile
(this worker's hold lapsed), this transaction rolls back instead of committing the
event twice. Replies and LINE-side effects are sent after the commit from their
delivery (outbox) rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from linebot.v3.webhooks import Event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.flows.services import Services
from kizuna.handlers import HandlerContext, Router
from kizuna.storage import conversations, customers, deliveries, events
from kizuna.storage.db import is_unavailable, lost_connection, transaction
from kizuna.storage.models import Customer, DeliveryKind, Direction, InboundEvent, Interaction
from kizuna.storage.queue import Lease
from kizuna.storage.types import utcnow

from .line import LineClient, LineError
from .sender import DeliverySender

log = logging.getLogger("kizuna.processor")

MAX_MESSAGES_PER_REQUEST = 5
REPLY_TOKEN_LIFETIME = timedelta(seconds=60)
REDELIVERED_REPLY_TOKEN_LIFETIME = timedelta(minutes=20)


class EventProcessor:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        line: LineClient,
        router: Router,
        services: Services,
        sender: DeliverySender,
        publish_many: Callable[[list[dict]], Awaitable[None]] | None = None,
        max_attempts: int = 3,
        loading_delay: float = 0.5,
        retry_backoff: float = 0.2,
    ) -> None:
        self.sessions = sessions
        self.line = line
        self.router = router
        self.services = services
        self.sender = sender
        self.publish_many = publish_many  # the live updates of what was committed (storage/broadcast.py)
        self.max_attempts = max_attempts
        self.loading_delay = loading_delay
        self.retry_backoff = retry_backoff
        # (event id, attempt) of attempts that a database outage cut short.
        self._cut_short: list[tuple[int, int]] = []

    async def drain(self, source_key: str, *, lease: Lease | None = None, stop: asyncio.Event | None = None) -> int:
        """Process the source's pending events in order until none is left, `stop` is
        set or the lease is lost (then the source may already be another worker's)."""
        lease = lease or Lease()
        await self._uncount_cut_short_attempts()
        processed = 0
        while not (stop is not None and stop.is_set()) and not lease.lost:
            claimed = await self._claim_next(source_key)
            if claimed is None:
                return processed
            row, known_customer = claimed
            lease.touch()
            try:
                more = await self._process(row, row.attempts, known_customer)
            except events.Superseded:
                # Another worker holds this source now (this worker's lock lapsed): leave
                # the rest to it, or the two would keep taking events from each other.
                log.info("event %s was taken over by another worker; leaving %s to it", row.webhook_event_id, source_key)
                lease.lost = True
                return processed
            lease.touch()
            processed += 1
            if not more:
                return processed
        return processed

    async def process_batch(self, leases: dict[str, Lease]) -> None:
        """One pending event of each source in `leases` (held by the caller), all in one
        transaction: what `drain` does per event, with the claims, the customers, the done
        marks and the commit shared by the batch. The claims are committed first (as in
        `drain`: an event that kills its worker every time is still parked); the done
        marks are fenced by each claim's attempt. When any event fails, or one was
        superseded, the batch rolls back and its events run one by one as `drain` runs them
        (the failed one is recorded without running it again), so a failure, a parking or a
        take-over is the same as for a single event. The caller looks for more pending
        events of these sources after letting go of them."""
        await self._uncount_cut_short_attempts()
        sources = [key for key, lease in leases.items() if not lease.lost]
        if not sources:
            return
        claimed = await self._claim_batch(sources)
        _touch(leases)
        ready = []
        for row, known in claimed:
            if row.attempts > self.max_attempts:
                await self._process(row, row.attempts, known)  # parked: its attempts never finished
            else:
                ready.append((row, known))
        if not ready:
            return
        try:
            delivery_ids, updates = await self._handle_batch(ready)
        except _BatchFailed as failed:
            await self._one_by_one(ready, failed, leases)
            _touch(leases)
            return
        _touch(leases)
        await self._send_all(delivery_ids)
        await self._publish_all(updates)

    async def _send_all(self, delivery_ids: list[list[int]]) -> None:
        """The batch's deliveries after its commit: the events' (different customers') at
        the same time, each event's in order."""
        async def in_order(ids: list[int]) -> None:
            for delivery_id in ids:
                await self.sender.send(delivery_id)

        results = await asyncio.gather(*(in_order(ids) for ids in delivery_ids if ids), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # the database went away: the sweeper resends them

    async def _claim_batch(self, sources: list[str]) -> list[tuple[InboundEvent, bool | None]]:
        """`_claim_next` for several sources (one statement on PostgreSQL), oldest first."""
        claimed = sorted(await events.claim_next_many(self.sessions, sources), key=lambda pair: pair[0].id)
        return [(row, known if _needs_known(row) else None) for row, known in claimed]

    async def _handle_batch(self, ready: list[tuple[InboundEvent, bool | None]]) -> tuple[list[list[int]], list[dict]]:
        """The batch's handlers, done marks and commit; raises _BatchFailed (rolled back)."""
        profiles = {}
        for row, known in ready:
            if row.line_user_id:
                profiles[row.id] = await self._profile_if_needed(row, known)
        delivery_ids: list[list[int]] = []  # each event's
        updates: list[dict] = []
        try:
            async with transaction(self.sessions) as session:
                user_ids = sorted({row.line_user_id for row, _known in ready if row.line_user_id})
                # The customers, and their conversations (a customer's message asks whether a
                # person owns one) for those with one event in the batch.
                events_of = Counter(row.line_user_id for row, _known in ready if row.line_user_id)
                loaded = await conversations.customers_with_active(
                    session, user_ids, remember={user_id for user_id, count in events_of.items() if count == 1}
                )
                for row, _known in ready:
                    try:
                        ids, row_updates = await self._run_handlers(session, row, profiles.get(row.id), loaded.get(row.line_user_id))
                    except Exception as exc:
                        raise _BatchFailed(row, exc) from exc
                    delivery_ids.append(ids)
                    updates += row_updates
                done = await events.mark_done_many(session, [(row.id, row.attempts) for row, _known in ready])
                if len(done) < len(ready):
                    superseded = [row.id for row, _known in ready if row.id not in done]
                    raise _BatchFailed(None, events.Superseded(superseded))
        except _BatchFailed:
            raise
        except Exception as exc:  # the batch's own statements or its commit
            raise _BatchFailed(None, exc) from exc
        return delivery_ids, updates

    async def _one_by_one(self, ready: list[tuple[InboundEvent, bool | None]], failed: "_BatchFailed", leases: dict[str, Lease]) -> None:
        """After a batch rolled back: each of its events on its own, as `drain` runs one."""
        if await self._outage(failed.error):
            self._cut_short.extend((row.id, row.attempts) for row, _known in ready)
            raise failed.error
        for index, (row, known) in enumerate(ready):
            lease = leases[row.source_key]
            if lease.lost:
                self._cut_short.append((row.id, row.attempts))  # not run: not the event's attempt
                continue
            try:
                if row is failed.row:
                    await self._failed(row, row.attempts, failed.error)
                else:
                    await self._process(row, row.attempts, known)
            except events.Superseded:
                log.info("event %s was taken over by another worker; leaving %s to it", row.webhook_event_id, row.source_key)
                lease.lost = True
            except Exception:
                # The database went away: the events not run yet were not their attempts.
                self._cut_short.extend((later.id, later.attempts) for later, _known in ready[index + 1:])
                raise
            lease.touch()

    async def _claim_next(self, source_key: str) -> tuple[InboundEvent, bool | None] | None:
        """The source's oldest pending event, its attempt counted and committed (one
        transaction: the claim is committed before handlers run, so an event that kills
        its worker every time is parked), and whether its LINE user is a customer already
        (None when the event does not need to know: see `_profile_if_needed`)."""
        async with transaction(self.sessions) as session:
            row = await events.claim_next(session, source_key)
            if row is None:
                return None
            known = None
            if row.line_user_id and row.event_type not in ("follow", "unfollow"):
                known = await customers.exists(session, row.line_user_id)
        return row, known

    async def _process(self, row: InboundEvent, attempt: int, known_customer: bool | None) -> bool:
        """Run one claimed event's handlers and commit; raises events.Superseded when another
        worker claimed the event meanwhile (nothing of this attempt is committed then).
        Returns False when the source had no other pending event as this one was committed."""
        if attempt > self.max_attempts:
            # Earlier attempts died with their worker (no error was recorded).
            async with transaction(self.sessions) as session:
                await events.record_failure(session, row.id, attempt, f"gave up after {attempt - 1} attempts that did not finish", park=True)
            log.error("event %s parked: its attempts never finished", row.webhook_event_id)
            return True
        try:
            delivery_ids, updates, more = await self._handle(row, attempt, known_customer)
        except events.Superseded:
            raise
        except Exception as exc:
            if await self._outage(exc):
                # Not the event's failure: it stays pending and is tried again once the
                # database is back; the worker backs off.
                self._cut_short.append((row.id, attempt))
                raise
            await self._failed(row, attempt, exc)
            return True
        for delivery_id in delivery_ids:
            await self.sender.send(delivery_id)
        await self._publish_all(updates)
        return more

    async def _outage(self, exc: BaseException) -> bool:
        """Whether `exc` is the database going away rather than the event's failure."""
        return lost_connection(exc) or (is_unavailable(exc) and not await self._database_answers())

    async def _failed(self, row: InboundEvent, attempt: int, exc: Exception) -> None:
        """The attempt's handlers failed (rolled back): recorded, parked after the last
        attempt; raises events.Superseded when another worker claimed the event meanwhile."""
        if not await self._still_claimed(row.id, attempt):
            # E.g. the other worker's reply row is there already (same retry key).
            raise events.Superseded(row.id) from exc
        # A handler bug must not block the customer's later events.
        park = attempt >= self.max_attempts
        log.error(
            "event %s failed (attempt %d/%d)%s", row.webhook_event_id, attempt, self.max_attempts, ", parked" if park else "",
            exc_info=exc,
        )
        async with transaction(self.sessions) as session:
            await events.record_failure(session, row.id, attempt, f"{type(exc).__name__}: {exc}", park=park)
        if not park:
            await asyncio.sleep(self.retry_backoff * 2 ** (attempt - 1))

    async def _publish_all(self, updates: list[dict]) -> None:
        if self.publish_many is not None and updates:
            await self.publish_many(updates)  # one PUBLISH for a batch's updates with Redis

    async def _still_claimed(self, event_id: int, attempt: int) -> bool:
        async with self.sessions() as session:
            return await events.is_claimed(session, event_id, attempt)

    async def _database_answers(self) -> bool:
        try:
            async with self.sessions() as session:
                await session.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def _uncount_cut_short_attempts(self) -> None:
        while self._cut_short:
            event_id, attempt = self._cut_short.pop()
            try:
                async with transaction(self.sessions) as session:
                    await events.uncount_attempt(session, event_id, attempt)
            except Exception:
                self._cut_short.append((event_id, attempt))  # the database is still away
                raise

    async def _handle(self, row: InboundEvent, attempt: int, known_customer: bool | None) -> tuple[list[int], list[dict], bool]:
        """Runs the handlers and commits; the deliveries to send, the live updates to publish
        and whether the source has another pending event (seen in the same transaction)."""
        profile = await self._profile_if_needed(row, known_customer) if row.line_user_id else None
        async with transaction(self.sessions) as session:
            delivery_ids, updates = await self._run_handlers(session, row, profile)
            more = await events.mark_done(session, row.id, attempt, row.source_key)
        return delivery_ids, updates, more

    async def _run_handlers(
        self, session: AsyncSession, row: InboundEvent, profile: customers.Profile | None, customer: Customer | None = None
    ) -> tuple[list[int], list[dict]]:
        """One event's work inside the caller's transaction: the customer (given, when the
        caller loaded it already), the timeline row, the handlers, the deliveries to send
        and the live updates to publish after the commit."""
        payload = row.payload
        user_id = row.line_user_id
        event_time = datetime.fromtimestamp(row.event_timestamp / 1000, tz=timezone.utc) if row.event_timestamp else utcnow()
        if user_id:
            if customer is None:
                customer, _created = await customers.get_or_create(session, user_id, profile)
            customer.last_interaction_at = utcnow()
            kind, text = describe_inbound(payload)
            # Added, not flushed: it is written with the next statement (the batch's rows
            # together), and any handler that reads the timeline sees it (autoflush).
            session.add(
                Interaction(
                    customer_id=customer.id, direction=Direction.IN, kind=kind, text=text, payload=payload,
                    sender_type="customer", sender_id=user_id, inbound_event_id=row.id,
                )
            )

        async def refresh_profile() -> None:
            if customer is not None and profile is not None:
                customers.apply_profile(customer, profile)

        ctx = HandlerContext(
            session=session, customer=customer, event_type=row.event_type, payload=payload,
            event_time=event_time, refresh_profile=refresh_profile, services=self.services,
        )
        await self._dispatch(parse_event(payload), ctx, user_id)
        delivery_ids = []
        if customer is not None:
            # Standby events (another channel is active) are recorded, never answered.
            if ctx.replies and payload.get("mode") != "standby":
                delivery_ids = await self._create_deliveries(session, row, customer.id, ctx.replies, event_time)
            delivery_ids += await self._create_effects(session, row, customer.id, ctx.effects)
        return delivery_ids, ctx.updates

    async def _dispatch(self, event: Event | None, ctx: HandlerContext, user_id: str | None) -> None:
        if not (user_id and ctx.event_type == "message"):
            await self.router.dispatch(event, ctx)
            return
        # Show LINE's loading animation only when the bot is slow to answer: it is
        # limited to 100 requests/s, so it is not spent on instant replies.
        loading = asyncio.create_task(self._loading_after(user_id))
        try:
            await self.router.dispatch(event, ctx)
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)

    async def _loading_after(self, user_id: str) -> None:
        await asyncio.sleep(self.loading_delay)
        await self.line.show_loading(user_id)

    async def _profile_if_needed(self, row: InboundEvent, known_customer: bool | None) -> customers.Profile | None:
        """Fetch the profile on first contact and on every follow; never in a transaction.
        `known_customer`: whether the user was a customer when the event was claimed."""
        if row.event_type == "unfollow":
            return None  # LINE answers 404 for people who blocked the account
        if row.event_type != "follow" and known_customer:
            return None
        try:
            return await self.line.get_profile(row.line_user_id)
        except LineError as error:
            # The profile is refreshed on the next follow; the event must not wait for it.
            log.warning("profile of %s not fetched: %s", row.line_user_id, error)
            return None

    async def _create_effects(self, session: AsyncSession, row: InboundEvent, customer_id: int, effects: list[dict]) -> list[int]:
        ids = []
        for index, effect in enumerate(effects):
            delivery = await deliveries.create_effect(
                session, customer_id=customer_id, kind=DeliveryKind(effect["type"]), effect={k: v for k, v in effect.items() if k != "type"},
                retry_key=deliveries.retry_key_for("effect", row.webhook_event_id, index), inbound_event_id=row.id,
            )
            ids.append(delivery.id)
        return ids

    async def _create_deliveries(
        self, session: AsyncSession, row: InboundEvent, customer_id: int, messages: list[dict], event_time: datetime
    ) -> list[int]:
        reply_token = row.payload.get("replyToken")
        lifetime = REDELIVERED_REPLY_TOKEN_LIFETIME if row.is_redelivery else REPLY_TOKEN_LIFETIME
        ids = []
        for index in range(0, len(messages), MAX_MESSAGES_PER_REQUEST):
            first = index == 0
            delivery = await deliveries.create(
                session,
                customer_id=customer_id,
                messages=messages[index : index + MAX_MESSAGES_PER_REQUEST],
                sender_type="bot",
                retry_key=deliveries.retry_key_for("event", row.webhook_event_id, index),
                inbound_event_id=row.id,
                reply_token=reply_token if first else None,
                reply_deadline=event_time + lifetime if first and reply_token else None,
            )
            ids.append(delivery.id)
        return ids


class _BatchFailed(Exception):
    """A batch rolled back: `row` is the event whose handlers raised `error` (None when the
    batch's own statements failed, or an event was superseded)."""

    def __init__(self, row: InboundEvent | None, error: BaseException) -> None:
        super().__init__(str(error))
        self.row = row
        self.error = error


def _touch(leases: dict[str, Lease]) -> None:
    for lease in leases.values():
        lease.touch()


def _needs_known(row: InboundEvent) -> bool:
    """Whether the event needs to know if its LINE user is a customer (`_profile_if_needed`)."""
    return bool(row.line_user_id) and row.event_type not in ("follow", "unfollow")


def parse_event(payload: dict) -> Event | None:
    """The SDK's typed event, or None for types it does not know (recorded only)."""
    try:
        return Event.from_dict(payload)
    except (ValueError, TypeError, KeyError):
        return None


def describe_inbound(payload: dict) -> tuple[str, str | None]:
    """Timeline kind and text of an inbound event."""
    event_type = str(payload.get("type", "unknown"))
    if event_type == "message":
        message = payload.get("message") or {}
        return f"message.{message.get('type', 'unknown')}"[:40], message.get("text")
    if event_type == "postback":
        return "postback", (payload.get("postback") or {}).get("data")
    return event_type[:40], None
