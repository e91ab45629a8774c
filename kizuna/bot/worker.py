"""The worker: consumers that drain sources from the queue, and the sweeper.

Runs inside `kizuna serve` in embedded mode and as `kizuna worker` in production.
The sweeper makes the database the source of truth: on start, every
`sweep_interval`, and at once when Redis lost queued entries (a restart or a flush),
it re-queues sources with pending events and resends deliveries that a dead worker
left behind, so a lost queue entry or a killed process never loses an acknowledged
event.

Outages of Redis or the database are waited out, never fatal: consumers and the
sweeper back off while a dependency is down (one log line when it goes, one when it
is back) and carry on when it returns, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.campaigns import automations, churn, insight, retention, sequences
from kizuna.flows.coupons import coupon_flex
from kizuna.storage import customer_metrics, deliveries, events
from kizuna.storage.coupons import get_shop
from kizuna.storage.db import is_unavailable, transaction
from kizuna.storage.types import utcnow
from kizuna.storage.dependency import Dependency
from kizuna.storage.queue import Job, QueueUnavailable, SourceBusy, WorkQueue

from .automation_webhooks import WebhookPoster
from .campaign_sender import CampaignSender
from .processor import EventProcessor
from .sender import DeliverySender

log = logging.getLogger("kizuna.worker")
RESCORE_LOOK = 2.0  # seconds between looks for a rescore asked for by a metric-settings change
# Seconds between looks for a due campaign, and an idle campaign sender's wait: a campaign starts
# within a second of its time, and a paused one resumes as fast.
CAMPAIGN_LOOK = 0.5
# Seconds between looks for due sequence steps: a day-0 step goes out this soon after its trigger
# (one indexed range query on the active enrolments when nothing is due).
SEQUENCE_LOOK = 1.0
SEQUENCE_BATCH = 200  # due steps per transaction
SEQUENCE_SENDS = 16  # pushes of one batch in flight at once (the LINE client's limiter paces them)
SEGMENT_ENTRY_LOOK = 60.0  # seconds between looks for segment_entered sequences due a look (each every 10 min)
INSIGHT_LOOK = 300.0  # seconds between looks for campaigns whose LINE insight is due a refresh (each hourly)
# Seconds between looks for pending automation causes (a rule fires this soon after its cause),
# and for webhook calls due (new or retried).
AUTOMATION_LOOK = 1.0
AUTOMATION_BATCH = 100  # causes per transaction
AUTOMATION_DAILY_LOOK = 60.0  # seconds between looks whether the day's birthday / coupon looks are due


class Worker:
    def __init__(
        self,
        *,
        queue: WorkQueue,
        processor: EventProcessor,
        sender: DeliverySender,
        sessions: async_sessionmaker[AsyncSession],
        concurrency: int,
        sweep_interval: float,
        database: Dependency | None = None,
        decile_refresh: float = 3600.0,
        churn_model_refresh: float = churn.DAILY.total_seconds(),
        batch_size: int = 32,
        campaign_sender: CampaignSender | None = None,
        campaign_senders: int = 8,
        retention_hour: int = 4,
        retention_look: float = 60.0,
    ) -> None:
        self.queue = queue
        self.processor = processor
        self.sender = sender
        self.sessions = sessions
        self.concurrency = concurrency
        self.sweep_interval = sweep_interval
        self.database = database or Dependency("the database")
        self.decile_refresh = decile_refresh
        self.churn_model_refresh = churn_model_refresh
        # Sources a consumer works on at once, when the queue can hold several (RedisQueue):
        # one event of each per transaction (bench/live_latency.py: the per-event cost of
        # a transaction, the claims, the locks and the publishes is shared by the batch).
        self.batch_size = batch_size if hasattr(queue, "hold_many") else 1
        self.campaign_sender = campaign_sender
        # Sending rounds at once: each waits on the database and LINE (and the rate limiter) most of
        # the time. With LINE's limits lifted one worker multicast 1.58× LINE's ceiling with 4, 1.87×
        # with 8, 1.93× with 16 (bench/campaign_send.py --lifted); 8 leaves the database pool room.
        self.campaign_senders = campaign_senders
        self.retention_hour = retention_hour
        self.retention_look = retention_look
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Run until `stop()`; every task it started has ended when it returns."""
        async with asyncio.TaskGroup() as group:
            for index in range(self.concurrency):
                group.create_task(self._consume(), name=f"kizuna-consumer-{index}")
            group.create_task(self._sweep_forever(), name="kizuna-sweeper")
            group.create_task(self._repeat(self._deciles, seconds=min(self.decile_refresh, 300.0), what="decile refresh"),
                              name="kizuna-deciles")
            group.create_task(self._repeat(self._churn_model, seconds=min(self.churn_model_refresh, 60.0), what="churn model run"),
                              name="kizuna-churn-model")
            group.create_task(self._repeat(self._rescore, seconds=RESCORE_LOOK, what="metric rescore"), name="kizuna-rescore")
            if self.campaign_sender is not None:
                group.create_task(self._repeat(self.campaign_sender.start_due, seconds=CAMPAIGN_LOOK, what="campaign start"),
                                  name="kizuna-campaign-start")
                for index in range(self.campaign_senders):
                    group.create_task(self._send_campaigns(), name=f"kizuna-campaign-sender-{index}")
                group.create_task(self._repeat(self._campaign_timeline, seconds=CAMPAIGN_LOOK, what="campaign timeline"),
                                  name="kizuna-campaign-timeline")
                group.create_task(self._repeat(self._campaign_insight, seconds=INSIGHT_LOOK, what="campaign insight"),
                                  name="kizuna-campaign-insight")
                # Narrowcast stages (upload, wait for the audience, send, follow LINE's progress): each a stored state.
                group.create_task(self._repeat(self.campaign_sender.narrowcasts.advance_all, seconds=CAMPAIGN_LOOK,
                                               what="campaign narrowcast"), name="kizuna-campaign-narrowcast")
            group.create_task(self._repeat(self._sequence_steps, seconds=SEQUENCE_LOOK, what="sequence steps"),
                              name="kizuna-sequences")
            group.create_task(self._repeat(self._segment_entries, seconds=SEGMENT_ENTRY_LOOK, what="segment entries"),
                              name="kizuna-segment-entries")
            group.create_task(self._repeat(self.retention_tick, seconds=self.retention_look, what="retention purge"),
                              name="kizuna-retention")
            group.create_task(self._repeat(self._automations, seconds=AUTOMATION_LOOK, what="automation rules"),
                              name="kizuna-automations")
            group.create_task(self._repeat(self._automation_webhooks, seconds=AUTOMATION_LOOK, what="automation webhooks"),
                              name="kizuna-automation-webhooks")
            group.create_task(self._repeat(self._automation_daily, seconds=AUTOMATION_DAILY_LOOK, what="automation daily looks"),
                              name="kizuna-automation-daily")

    def stop(self) -> None:
        """Finish the events in hand, then return from `run()` (a graceful stop: the
        events not yet started stay pending in the database for the next start)."""
        self._stopping.set()
        self.queue.wake(self.concurrency)

    async def _consume(self) -> None:
        if self.batch_size > 1:
            await self._consume_batches()
            return
        while not self._stopping.is_set():
            job = await self.queue.get()
            if job is None:
                continue
            try:
                await self._work_on(job)
            except Exception:  # a bug here must not end the consumer (and with it the worker)
                log.exception("working on %s failed", job.source_key)
            finally:
                await self.queue.done(job)

    async def _work_on(self, job: Job) -> None:
        try:
            async with self.queue.hold(job) as lease:
                await self.processor.drain(job.source_key, lease=lease, stop=self._stopping)
            # An event stored while this worker was letting go of the source found it busy
            # and its job was dropped: look once more now that the source is free.
            if not self._stopping.is_set():
                if await events.any_pending(self.sessions, job.source_key):
                    await self._put([job.source_key])
        except (SourceBusy, QueueUnavailable):
            return  # the holder looks again when it lets go; or Redis is down and the sweeper re-queues
        except Exception as error:
            if not is_unavailable(error):
                raise
            self.database.failed(error)
            await self._pause(self.database.backoff())
            # Its events are pending in the database: look again after the backoff (a
            # connection that a server restart closed fails once, and the pool replaces it),
            # not only when the sweeper finds them a sweep interval later.
            if not self._stopping.is_set():
                await self._put([job.source_key])
            return
        self.database.succeeded()

    async def _consume_batches(self) -> None:
        while not self._stopping.is_set():
            jobs = await self.queue.get_many(self.batch_size)
            if not jobs:
                continue
            try:
                await self._work_on_batch(list(dict.fromkeys(job.source_key for job in jobs)))
            except Exception:  # a bug here must not end the consumer (and with it the worker)
                log.exception("working on a batch of %d source(s) failed", len(jobs))
            finally:
                await self.queue.done_many(jobs)

    async def _work_on_batch(self, source_keys: list[str]) -> None:
        """`_work_on` for several sources: one event of each (`EventProcessor.process_batch`),
        then the sources with more pending events go back to the queue (also those stored
        while this worker was letting go of them: their jobs found them busy and were dropped)."""
        held: list[str] = []
        try:
            async with self.queue.hold_many(source_keys) as leases:
                held = list(leases)
                if leases:
                    await self.processor.process_batch(leases)
            if held and not self._stopping.is_set():
                more = await events.pending_among(self.sessions, held)
                if more:
                    await self._put([key for key in held if key in more])
        except QueueUnavailable:
            return  # the sweeper re-queues once Redis is back
        except Exception as error:
            if not is_unavailable(error):
                raise
            self.database.failed(error)
            await self._pause(self.database.backoff())
            if held and not self._stopping.is_set():
                await self._put(held)
            return
        self.database.succeeded()

    async def _put(self, source_keys: list[str]) -> None:
        try:
            await self.queue.put(source_keys)
        except QueueUnavailable:
            pass  # the sweeper queues them again once Redis is back

    async def _pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _repeat(self, job, *, seconds: float, what: str) -> None:
        """Run `job()` every `seconds` until stopped. A failure is logged (not when the database is
        away: the sweeper reports that) and never ends the worker."""
        while not self._stopping.is_set():
            try:
                await job()
            except Exception as error:
                if not is_unavailable(error):
                    log.exception("%s failed; trying again later", what)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
            except TimeoutError:
                pass

    async def _deciles(self) -> None:
        """Customers' spend deciles, every `decile_refresh` seconds by one worker of all: each
        looks now and then whether a refresh is due and claims it in the database
        (`customer_metrics.refresh_population_if_due`), so N workers run it once."""
        async with transaction(self.sessions) as session:
            await customer_metrics.refresh_population_if_due(session, now=utcnow(), every=timedelta(seconds=self.decile_refresh))

    async def _churn_model(self) -> None:
        """The churn model's fit (campaigns/churn.py), every `churn_model_refresh` seconds (a day)
        by one worker of all, claimed in the database like the deciles; looked for every minute,
        so a run a CSV import or a settings change made due starts soon after. The fit runs in
        a thread: this worker's consumers go on meanwhile."""
        await churn.refresh_model_if_due(self.sessions, now=utcnow(), every=timedelta(seconds=self.churn_model_refresh))

    async def _rescore(self) -> None:
        """A rescore the shop's new metric settings asked for (`customer_metrics.rescore_if_requested`),
        looked for every RESCORE_LOOK seconds: the scores follow a change within seconds."""
        await customer_metrics.rescore_if_requested(self.sessions, now=utcnow())

    async def _send_campaigns(self) -> None:
        """Campaign batches, round after round while there are any; a short wait when idle."""
        assert self.campaign_sender is not None
        while not self._stopping.is_set():
            try:
                handled = await self.campaign_sender.send_some()
            except Exception as error:
                if not is_unavailable(error):
                    log.exception("sending campaign batches failed; trying again")
                handled = 0
            if not handled:
                await self._pause(CAMPAIGN_LOOK)

    async def _campaign_timeline(self) -> None:
        """The sent batches' timeline rows, behind the senders, until none are left."""
        assert self.campaign_sender is not None
        while not self._stopping.is_set() and await self.campaign_sender.write_timeline():
            pass

    def _clock(self) -> Callable[[], datetime]:
        """The services' clock (tests move it), or the wall clock for a worker without services."""
        services = getattr(self.processor, "services", None)
        return services.clock if services is not None else utcnow

    def _coupon_message(self, grant, coupon, customer) -> dict:
        """A coupon's card for a sequence step or an automation's grant, in the customer's language."""
        services = getattr(self.processor, "services", None)
        locale = "en" if (customer.language or "").startswith("en") else "ja"
        return coupon_flex(grant, coupon, public_url=services.public_url if services is not None else "", locale=locale)

    async def _campaign_insight(self) -> None:
        """LINE's opens and clicks of recent campaigns, kept in the database for the results page
        (campaigns/insight.py): LINE is asked here, never on a page view."""
        assert self.campaign_sender is not None
        await insight.refresh_due(self.sessions, self.campaign_sender.line.get_statistics_per_unit, now=self._clock()())

    async def _sequence_steps(self) -> None:
        """Due step-sequence steps (campaigns/sequences.py `send_due`) into the outbox, then sent
        at once; N workers share them (each due step is claimed by one). A delivery left unsent
        by a crash between the commit and the send is the sweeper's, like any other."""
        clock = self._clock()
        in_flight = asyncio.Semaphore(SEQUENCE_SENDS)

        async def send(delivery_id: int) -> None:
            async with in_flight:
                await self.sender.send(delivery_id)

        while not self._stopping.is_set():
            created = await sequences.send_due(self.sessions, now=clock(), limit=SEQUENCE_BATCH, coupon_message=self._coupon_message)
            # A send that fails is the sweeper's to retry (the outbox row stays pending): log, go on.
            for outcome in await asyncio.gather(*(send(delivery_id) for delivery_id in created), return_exceptions=True):
                if isinstance(outcome, Exception) and not is_unavailable(outcome):
                    log.error("sending a sequence step failed: %r", outcome)
            if len(created) < SEQUENCE_BATCH:
                return

    async def _segment_entries(self) -> None:
        """Customers who entered the segment of a segment_entered sequence are enrolled
        (campaigns/sequences.py `enter_segments`; each sequence's look claimed by one worker)."""
        await sequences.enter_segments(self.sessions, now=self._clock()())

    async def retention_tick(self) -> None:
        """The daily retention purge (campaigns/retention.py), at `retention_hour` in the shop's
        zone, run by one worker of all (its day's row is the claim)."""
        async with self.sessions() as session:
            shop_zone = (await get_shop(session)).timezone
        await retention.run_if_due(self.sessions, now=self._clock()(), zone=shop_zone, hour=self.retention_hour)

    async def _automations(self) -> None:
        """Pending automation causes evaluated against the rules (campaigns/automations.py), then
        what the firings put in the outbox sent at once and their webhook calls posted; N workers
        share the causes, and each rule fires once per cause whoever evaluates it."""
        clock = self._clock()
        in_flight = asyncio.Semaphore(SEQUENCE_SENDS)  # (the LINE client's limiter paces them)

        async def send(delivery_id: int) -> None:
            async with in_flight:
                await self.sender.send(delivery_id)

        while not self._stopping.is_set():
            handoff = await automations.evaluate_pending(self.sessions, now=clock(), limit=AUTOMATION_BATCH,
                                                         coupon_message=self._coupon_message)
            for outcome in await asyncio.gather(*(send(delivery_id) for delivery_id in handoff.deliveries), return_exceptions=True):
                if isinstance(outcome, Exception) and not is_unavailable(outcome):
                    log.error("sending an automation's message failed: %r", outcome)  # the sweeper retries it
            if handoff.webhook_calls:
                await self._automation_webhooks()
            if handoff.causes < AUTOMATION_BATCH:
                return

    async def _automation_webhooks(self) -> None:
        services = getattr(self.processor, "services", None)
        public_url = services.public_url if services is not None else ""
        # http to localhost only on a development install (served over plain http).
        await WebhookPoster(self.sessions, clock=self._clock(), allow_http_localhost=public_url.startswith("http://")).post_due()

    async def _automation_daily(self) -> None:
        """The day's birthday and coupon looks when due, and the segment_entered rules' looks."""
        clock = self._clock()
        await automations.run_daily(self.sessions, now=clock())
        await automations.enter_segments(self.sessions, now=clock())

    async def _sweep_forever(self) -> None:
        everything = True  # on start every pending source is ours to queue
        ready = False
        while not self._stopping.is_set():
            try:
                await self.sweep(everything=everything)
                everything = False
                self.database.succeeded()
                if not ready:
                    log.info("worker ready: %d consumers", self.concurrency)
                    ready = True
            except Exception as error:
                if is_unavailable(error):
                    self.database.failed(error)
                else:
                    log.exception("sweep failed; trying again in %.1f s", self.sweep_interval)
            if await self._wait_for_next_sweep():
                everything = True

    async def _wait_for_next_sweep(self) -> bool:
        """Wait a sweep interval (less while the database is down); True when Redis lost
        queued entries meanwhile, so the next sweep must queue every pending source."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        reset = asyncio.ensure_future(self.queue.reset.wait())
        interval = min(self.sweep_interval, self.database.backoff()) if self.database.down else self.sweep_interval
        try:
            await asyncio.wait([stopping, reset], timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            reset.cancel()
        if self.queue.reset.is_set():
            self.queue.reset.clear()
            return True
        return False

    async def sweep(self, *, everything: bool) -> None:
        # Normally only sources that have waited longer than a sweep interval: the rest
        # are on their way already.
        older_than = None if everything else timedelta(seconds=self.sweep_interval)
        async with self.sessions() as session:
            sources = await events.pending_sources(session, older_than=older_than)
            stuck = await deliveries.due_for_retry(
                session, older_than=timedelta(seconds=self.sweep_interval), claim_timeout=self.sender.claim_timeout
            )
        if sources:
            log.info("sweeper: %d source(s) with pending events re-queued", len(sources))
            await self._put(sources)
        for delivery_id in stuck:
            await self.sender.send(delivery_id)
