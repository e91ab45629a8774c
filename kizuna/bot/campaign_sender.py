"""Sends campaigns' batches to LINE (issue 15 §2): the delivery engine's loop, in every worker.

Each round claims a few batches of running campaigns in one statement, reads their recipients in
one, sends them concurrently (multicast of up to 500 for identical content; one push per
recipient for personalised content) under the LINE client's rate limiter, and records the
outcomes in one transaction. Every request carries the batch's stored retry key (a push: a key
derived from it and the customer), so a retry after a crash, a timeout or a 5xx is executed by
LINE once; a 409 is "already sent" and counted as a duplicate avoided. A batch whose key is
older than 23 h is marked undetermined instead of risking a second send (LINE forgets keys
after 24 h). 4xx fail the batch (a multicast) or the recipient (a push) with LINE's reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.campaigns import campaigns, links as tracked_links, messages as campaign_messages
from kizuna.flows.coupons import coupon_flex
from kizuna.storage import campaign_batches, coupons, faq
from kizuna.storage.campaign_batches import Audience, ClaimedBatch, Outcome
from kizuna.storage.db import is_unavailable, transaction
from kizuna.storage.models import BatchStatus, Campaign, CampaignStatus, CampaignVariant, DeliveryMethod, RecipientStatus
from kizuna.storage.types import utcnow

from .line import LineClient, LineError, LineUnavailable, check_messages
from .narrowcast_sender import NarrowcastSender
from .sender import RETRY_KEY_SAFE_AGE

log = logging.getLogger("kizuna.campaigns")

CLAIM_SIZE = 8  # batches a round: 8 multicasts = 4,000 recipients, ~40 ms of LINE's 200/s
# A batch whose claim was not renewed for this long belongs to a dead sender. A live one renews its
# claims every third of it while it sends, however long LINE takes; a worker killed mid-round
# leaves its batches to the others within this (kill -9 every 2-5 s: bench/campaign_chaos.py).
CLAIM_TIMEOUT = timedelta(seconds=30)


class CampaignSender:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], line: LineClient, secret_key: str, public_url: str,
        clock: Callable[[], datetime] = utcnow, claim_size: int = CLAIM_SIZE, claim_timeout: timedelta = CLAIM_TIMEOUT,
        narrowcast_threshold: int = campaigns.NARROWCAST_THRESHOLD,
    ) -> None:
        self.sessions = sessions
        self.secret_key = secret_key  # signs the tracked links' tokens
        self.public_url = public_url.rstrip("/")
        self.line = line
        self.clock = clock
        self.claim_size = claim_size
        self.claim_timeout = claim_timeout
        self.narrowcast_threshold = narrowcast_threshold  # `auto` delivery narrowcasts from this many queued recipients
        # A narrowcast stage leased longer ago than a batch's claim belongs to a dead worker too.
        self.narrowcasts = NarrowcastSender(sessions=sessions, line=line, clock=clock, lease=claim_timeout)
        self._variants: dict[int, CampaignVariant] = {}  # variants never change once a campaign runs
        # campaign id -> (its coupon id, its LINE aggregation unit): fixed once it runs, like the variants
        self._fixed: dict[int, tuple[int | None, str | None]] = {}

    # -- the scheduler's tick ------------------------------------------------------------------------

    async def start_due(self) -> Campaign | None:
        """Settle finished campaigns, then start (or hold for quiet hours, or refuse over quota) one due campaign."""
        async with transaction(self.sessions) as session:
            await campaign_batches.complete_finished(session, now=self.clock())
            campaign = await campaigns.start_due(session, now=self.clock(), quota_left=self._quota_left,
                                                 narrowcast_threshold=self.narrowcast_threshold)
        if campaign is not None:
            log.info("campaign %s: %s %s", campaign.id, campaign.status, campaign.note or campaign.audience or "")
        return campaign

    async def _quota_left(self) -> int | None:
        quota = await self.line.get_quota()
        if quota.get("type") != "limited":
            return None
        return max(0, int(quota.get("value", 0)) - await self.line.get_quota_consumption())

    # -- one round of sending ------------------------------------------------------------------------

    async def send_some(self) -> int:
        """Claim, send and record up to `claim_size` batches; the number handled (0: nothing due)."""
        now = self.clock()
        async with transaction(self.sessions) as session:
            quiet = campaigns.quiet_until(now, await faq.shop_timezone(session)) is not None
            claimed = await campaign_batches.claim(session, now=now, limit=self.claim_size,
                                                   stale_before=now - self.claim_timeout, quiet=quiet)
            if not claimed:
                return 0
            for batch in claimed:
                if batch.variant_id not in self._variants:
                    variant = await session.get(CampaignVariant, batch.variant_id)
                    # Kept across rounds, so out of this session: a rollback (PostgreSQL restarted
                    # mid-transaction) expires the session's objects, and an expired cached variant
                    # failed every later round of this worker (bench/campaign_chaos.py).
                    session.expunge(variant)
                    self._variants[batch.variant_id] = variant
                if batch.campaign_id not in self._fixed:
                    campaign = await session.get(Campaign, batch.campaign_id)
                    self._fixed[batch.campaign_id] = (campaign.coupon_id, campaign.aggregation_unit)
            personal = {batch.variant_id for batch in claimed if self._variants[batch.variant_id].method == DeliveryMethod.PUSH}
            audience = await campaign_batches.recipients(session, claimed, named=personal)
        keeping = asyncio.create_task(self._keep_claims(claimed))
        try:
            results = await asyncio.gather(*(self._send(batch, audience[batch.id]) for batch in claimed))
        finally:
            keeping.cancel()
        outcomes = [outcome for outcome, _ in results]
        failures = [failure for _, batch_failures in results for failure in batch_failures]
        async with transaction(self.sessions) as session:
            await campaign_batches.finish(session, outcomes, now=self.clock())
            if failures:
                await campaign_batches.mark_recipients(session, failures)
            await campaign_batches.complete_finished(session, now=self.clock())
            for outcome in outcomes:
                if outcome.error and "monthly limit" in outcome.error:
                    await _pause_for_quota(session, outcome.batch.campaign_id, now=self.clock())
        return len(claimed)

    async def _keep_claims(self, claimed: list[ClaimedBatch]) -> None:
        """Renew the round's claims until it is recorded (cancelled then)."""
        while True:
            await asyncio.sleep(self.claim_timeout.total_seconds() / 3)
            try:
                async with transaction(self.sessions) as session:
                    await campaign_batches.renew(session, claimed, now=self.clock())
            except Exception as error:  # the round goes on; if the claims lapse, the fencing holds
                if not is_unavailable(error):
                    log.exception("renewing campaign batch claims failed")

    async def _send(self, batch: ClaimedBatch, audience: Audience) -> tuple[Outcome, list[dict]]:
        if self.clock() - batch.first_attempt_at > RETRY_KEY_SAFE_AGE:
            return Outcome(batch, BatchStatus.UNDETERMINED, error="retry key older than 23 h: not sent again"), []
        if not audience.customer_ids:  # everyone left out at send time (blocked or opted out meanwhile)
            return Outcome(batch, BatchStatus.SENT), []
        variant = self._variants[batch.variant_id]
        if variant.method == DeliveryMethod.MULTICAST:
            return await self._multicast(batch, variant, audience), []
        return await self._pushes(batch, variant, audience)

    async def _multicast(self, batch: ClaimedBatch, variant: CampaignVariant, audience: Audience) -> Outcome:
        try:
            accepted = await self.line.multicast(audience.line_user_ids, variant.messages, retry_key=batch.retry_key,
                                                 custom_aggregation_unit=self._fixed[batch.campaign_id][1])
        except LineUnavailable as error:
            log.warning("campaign batch %s not sent yet (%s); retried with the same key", batch.id, error)
            return Outcome(batch, BatchStatus.PENDING, error=str(error))
        except LineError as error:
            if _over_quota(error):
                return Outcome(batch, BatchStatus.PENDING, error=str(error))
            log.error("campaign batch %s refused by LINE: %s %s", batch.id, error, error.details)
            return Outcome(batch, BatchStatus.FAILED, request_id=error.request_id, error=_reason(error))
        return Outcome(batch, BatchStatus.SENT, request_id=accepted.request_id, duplicate=accepted.duplicate)

    async def _pushes(self, batch: ClaimedBatch, variant: CampaignVariant, audience: Audience) -> tuple[Outcome, list[dict]]:
        coupon_id, unit = self._fixed[batch.campaign_id]
        cards, refused = await self._coupon_cards(batch, audience.customer_ids, coupon_id) if coupon_id else ({}, [])
        refused_ids = {failure["cu"] for failure in refused}
        recipients = [(customer_id, line_user_id) for customer_id, line_user_id in zip(audience.customer_ids, audience.line_user_ids)
                      if customer_id not in refused_ids]

        def body_for(customer_id: int) -> list[dict]:
            display_name, full_name = audience.names[customer_id]
            body = campaign_messages.render(variant.messages, display_name=display_name, full_name=full_name)
            if variant.links:
                body = tracked_links.apply(body, variant.links, lambda link: self._tracked_url(
                    tracked_links.Tap(batch.campaign_id, batch.variant_id, customer_id, link)))
            if customer_id in cards:
                body = [*body, cards[customer_id]]
            return body

        async def push(customer_id: int, line_user_id: str):
            try:
                return await self.line.push(line_user_id, body_for(customer_id), custom_aggregation_unit=unit, checked=True,
                                            retry_key=campaign_batches.push_key(batch.retry_key, customer_id))
            except LineError as error:
                return error

        if recipients:
            # Every recipient's messages have the same shape (only names, link tokens and coupon
            # codes differ): the SDK's models check it once a batch, not once a push.
            try:
                check_messages(body_for(recipients[0][0]))
            except ValueError as error:
                log.error("campaign batch %s: messages LINE would refuse: %s", batch.id, error)
                return Outcome(batch, BatchStatus.FAILED, error=f"invalid messages: {error}"[:200]), []
        results = await asyncio.gather(*(push(customer_id, line_user_id) for customer_id, line_user_id in recipients))
        unavailable = [r for r in results if isinstance(r, LineUnavailable) or (isinstance(r, LineError) and _over_quota(r))]
        if unavailable:
            # Some went, some did not: the batch goes again; the ones that went answer 409.
            return Outcome(batch, BatchStatus.PENDING, error=str(unavailable[0])), []
        failures = refused + [{"c": batch.campaign_id, "cu": customer_id, "s": RecipientStatus.FAILED, "why": _reason(result)}
                              for (customer_id, _), result in zip(recipients, results) if isinstance(result, LineError)]
        duplicate = any(not isinstance(r, LineError) and r.duplicate for r in results)
        return Outcome(batch, BatchStatus.SENT, duplicate=duplicate,
                       error=f"{len(failures)} refused by LINE" if failures else None), failures

    async def _coupon_cards(self, batch: ClaimedBatch, customer_ids: list[int], coupon_id: int) -> tuple[dict[int, dict], list[dict]]:
        """Each recipient's own grant of the campaign's coupon (issued once per campaign and customer:
        a retried batch finds the grants it issued), as coupon cards; and the recipients refused one
        (sold out, ended meanwhile), who are then not sent the campaign."""
        cards, refused = {}, []
        async with transaction(self.sessions) as session:
            for customer_id in customer_ids:
                result = await coupons.issue(session, coupon_id=coupon_id, customer_id=customer_id, now=self.clock(),
                                             by=f"campaign:{batch.campaign_id}", key=f"campaign:{batch.campaign_id}")
                if result.grant is None:
                    refused.append({"c": batch.campaign_id, "cu": customer_id, "s": RecipientStatus.FAILED,
                                    "why": f"coupon not issued: {result.refusal}"})
                else:
                    cards[customer_id] = coupon_flex(result.grant, result.coupon, public_url=self.public_url, locale="ja")
        return cards, refused

    def _tracked_url(self, tap: tracked_links.Tap) -> str:
        return f"{self.public_url}/r/{tracked_links.token(self.secret_key, tap)}"

    async def write_timeline(self) -> int:
        """Timeline rows of sent batches, behind the sender (a few batches a call)."""
        async with transaction(self.sessions) as session:
            return await campaign_batches.write_timeline(session)


def _over_quota(error: LineError) -> bool:
    return error.status == 429 and "monthly limit" in error.message


def _reason(error: LineError) -> str:
    details = "; ".join(f"{d.get('property', '')}: {d.get('message', '')}" for d in error.details or [] if isinstance(d, dict))
    return f"LINE {error.status}: {error.message}{' — ' + details if details else ''}"[:200]


async def _pause_for_quota(session: AsyncSession, campaign_id: int, *, now: datetime) -> None:
    campaign = await session.get(Campaign, campaign_id)
    if campaign is not None and campaign.status == CampaignStatus.RUNNING:
        campaign.status = CampaignStatus.PAUSED
        campaign.note = "LINE の月間送信上限に達したため一時停止しました（上限が増えたら再開できます）"
        campaign.updated_at = now
