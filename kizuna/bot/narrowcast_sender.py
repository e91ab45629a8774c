"""Narrowcast delivery (issue 15 §2): a campaign's snapshot sent as ONE narrowcast request per
variant to a LINE audience uploaded from it, for very large sends.

The worker's tick calls `advance()`, which leases one row of campaign_narrowcasts with work due
and does one stage (storage/campaign_narrowcasts.py lists them), storing the result before the
next: a worker killed at any stage leaves the next one a stored state to continue from.

- upload: the variant's queued recipients (after the snapshot: opt-outs, blocks, the cap and the
  control group are already out; who blocked or opted out since is left out now) go up in
  customer order, 10,000 a request (LINE's JSON limit): the first chunk creates the audience, the
  next ones add to it; the last uploaded customer is stored after each chunk. LINE's audience API
  takes no retry key: re-adding a chunk after a crash is harmless (an audience is a set), but a
  crash between LINE creating the audience and us storing its id leaves a spare audience on LINE
  (it expires after 180 days) — never a second send, because only the stored id is sent to.
- wait: LINE builds the audience asynchronously; its status is looked at on later ticks (no
  sleeping loop in a request) until READY.
- send: the campaign row is marked as handed to LINE (the pause/cancel fence) and the stored retry
  key used; a retry after a crash or 5xx reuses it, and a 409 answers with the original request id.
- progress: LINE's progress endpoint is polled until succeeded or failed. LINE reports counts, not
  names: when it says every targeted friend got it (failureCount 0) the variant's batches are
  sent; when some failed or it failed part-way, they are undetermined (LINE does not say who), and
  when it failed having sent nothing, failed, with LINE's reason. LINE's counts are kept and shown.
- the audience is deleted once the narrowcast is done (or cancelled before it went).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import campaign_batches, campaign_narrowcasts as stages
from kizuna.storage.campaign_narrowcasts import Leased
from kizuna.storage.db import transaction
from kizuna.storage.models import BatchStatus, CampaignStatus, CampaignVariant, NarrowcastState
from kizuna.storage.types import utcnow

from .line import AUDIENCE_JSON_MAX, LineClient, LineError, LineUnavailable
from .sender import RETRY_KEY_SAFE_AGE

log = logging.getLogger("kizuna.campaigns.narrowcast")

LEASE = timedelta(seconds=120)  # a row leased longer ago belongs to a dead worker
CHUNKS_PER_TURN = 10  # 100,000 ids uploaded per turn, then the lease is renewed by the next turn
LOOK_AGAIN = timedelta(seconds=1)  # between looks at an audience being built or a narrowcast's progress
BACK_OFF = timedelta(seconds=5)  # after LINE was unavailable


class NarrowcastSender:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], line: LineClient,
                 clock: Callable[[], datetime] = utcnow, lease: timedelta = LEASE) -> None:
        self.sessions = sessions
        self.line = line
        self.clock = clock
        self.lease = lease

    async def advance(self) -> bool:
        """Do one stage of one narrowcast with work due; False when there was none."""
        now = self.clock()
        async with transaction(self.sessions) as session:
            leased = await stages.lease(session, now=now, until=now + self.lease)
        if leased is None:
            return False
        try:
            await self._stage(leased)
        except LineUnavailable as error:
            log.warning("narrowcast %s (%s): LINE unavailable (%s); trying again", leased.id, leased.state, error)
            await self._save(leased, next_look_at=self.clock() + BACK_OFF, error=str(error)[:500])
        except _LeaseLost:
            log.warning("narrowcast %s: another worker took it over", leased.id)
        return True

    async def advance_all(self, *, turns: int = 20) -> int:
        """Advance until nothing is due (at most `turns` stages); the number done."""
        done = 0
        while done < turns and await self.advance():
            done += 1
        return done

    async def _stage(self, leased: Leased) -> None:
        state = leased.state
        if state in (NarrowcastState.DONE, NarrowcastState.CANCELLED):
            return await self._delete_audience(leased)
        if leased.campaign_status == CampaignStatus.CANCELLED and state in (NarrowcastState.UPLOADING, NarrowcastState.WAITING):
            await self._save(leased, release=False, state=NarrowcastState.CANCELLED)  # the lease kept for the deletion
            return await self._delete_audience(leased)
        if state == NarrowcastState.UPLOADING:
            return await self._upload(leased)
        if state == NarrowcastState.WAITING:
            return await self._wait_for_audience(leased)
        if state == NarrowcastState.SENDING:
            return await self._send(leased)
        return await self._follow_progress(leased)

    async def _save(self, leased: Leased, *, release: bool = True, **values) -> bool:
        async with transaction(self.sessions) as session:
            return await stages.save(session, leased, now=self.clock(), release=release, **values)

    # -- upload -------------------------------------------------------------------------------

    async def _upload(self, leased: Leased) -> None:
        group_id, through, uploaded = leased.audience_group_id, leased.uploaded_through, leased.uploaded
        if group_id is None and through == 0:
            async with transaction(self.sessions) as session:
                left = await stages.leave_out_changed(session, leased.campaign_id, leased.variant_id)
            if left:
                log.info("narrowcast %s: %s left out (blocked or opted out since the snapshot)", leased.id, left)
        for _ in range(CHUNKS_PER_TURN):
            async with self.sessions() as session:
                chunk = await stages.next_ids(session, leased.campaign_id, leased.variant_id, after=through, limit=AUDIENCE_JSON_MAX)
            if not chunk:
                break
            ids = [line_user_id for _, line_user_id in chunk]
            if group_id is None:
                group_id = await self.line.create_audience(f"kizuna c{leased.campaign_id} v{leased.variant_id}", ids,
                                                           upload_description=f"campaign {leased.campaign_id}")
            else:
                await self.line.add_to_audience(group_id, ids, upload_description=f"campaign {leased.campaign_id}")
            through, uploaded = chunk[-1][0], uploaded + len(chunk)
            if not await self._save(leased, release=False, audience_group_id=group_id, uploaded_through=through, uploaded=uploaded):
                return  # our lease ran out and another worker has the row
            if len(chunk) < AUDIENCE_JSON_MAX:
                chunk = []
                break
        else:
            await self._save(leased, next_look_at=self.clock())  # more to upload: the next turn continues
            return
        if group_id is None:  # everyone left out since the snapshot: nothing to send
            async with transaction(self.sessions) as session:
                await stages.finish_batches(session, leased.campaign_id, leased.variant_id, BatchStatus.SENT, now=self.clock())
                await stages.save(session, leased, now=self.clock(), state=NarrowcastState.DONE, audience_deleted=True)
                await campaign_batches.complete_finished(session, now=self.clock())
            return
        log.info("narrowcast %s: %s LINE ids uploaded to audience %s", leased.id, uploaded, group_id)
        await self._save(leased, state=NarrowcastState.WAITING, next_look_at=self.clock() + LOOK_AGAIN)

    async def _wait_for_audience(self, leased: Leased) -> None:
        assert leased.audience_group_id is not None
        found = await self.line.get_audience(leased.audience_group_id)
        status = ((found or {}).get("audience_group") or (found or {}).get("audienceGroup") or {}).get("status")
        if found is None:  # LINE lost it (deleted from LINE's manager?): upload again
            log.warning("narrowcast %s: audience %s is gone; uploading again", leased.id, leased.audience_group_id)
            await self._save(leased, state=NarrowcastState.UPLOADING, audience_group_id=None, uploaded_through=0, uploaded=0,
                             next_look_at=self.clock())
            return
        if status != "READY":
            if status in ("FAILED", "EXPIRED"):
                await self._done(leased, BatchStatus.FAILED, error=f"LINE could not build the audience ({status})")
                return
            await self._save(leased, next_look_at=self.clock() + LOOK_AGAIN)
            return
        async with transaction(self.sessions) as session:
            if not await stages.hand_to_line(session, leased.campaign_id, now=self.clock()):
                # Paused or cancelled first: nothing goes (a cancelled one's audience is deleted next).
                await stages.save(session, leased, now=self.clock(), next_look_at=self.clock() + LOOK_AGAIN)
                return
            if not await stages.save(session, leased, now=self.clock(), release=False, state=NarrowcastState.SENDING,
                                     first_attempt_at=self.clock()):
                return
        await self._send(leased, first_attempt_at=self.clock())

    # -- the request --------------------------------------------------------------------------

    async def _send(self, leased: Leased, *, first_attempt_at: datetime | None = None) -> None:
        first = first_attempt_at or leased.first_attempt_at or self.clock()
        if self.clock() - first > RETRY_KEY_SAFE_AGE:
            await self._done(leased, BatchStatus.UNDETERMINED, error="retry key older than 23 h: not sent again")
            return
        async with self.sessions() as session:
            variant = await session.get(CampaignVariant, leased.variant_id)
        try:
            request_id = await self.line.narrowcast(
                variant.messages, retry_key=leased.retry_key,
                recipient={"type": "audience", "audienceGroupId": leased.audience_group_id})
        except LineUnavailable:
            raise
        except LineError as error:
            log.error("narrowcast %s refused by LINE: %s %s", leased.id, error, error.details)
            await self._done(leased, BatchStatus.FAILED, error=f"LINE {error.status}: {error.message}"[:200])
            return
        log.info("narrowcast %s accepted by LINE: request %s", leased.id, request_id)
        await self._save(leased, state=NarrowcastState.DELIVERING, request_id=request_id, error=None,
                         next_look_at=self.clock() + LOOK_AGAIN)

    async def _follow_progress(self, leased: Leased) -> None:
        assert leased.request_id is not None
        progress = await self.line.get_narrowcast_progress(leased.request_id)
        phase = progress.get("phase")
        counts = {"target_count": progress.get("targetCount", progress.get("target_count")),
                  "success_count": progress.get("successCount", progress.get("success_count")),
                  "failure_count": progress.get("failureCount", progress.get("failure_count"))}
        if phase not in ("succeeded", "failed"):
            await self._save(leased, phase=phase, next_look_at=self.clock() + LOOK_AGAIN, **counts)
            return
        delivered, failed = counts["success_count"] or 0, counts["failure_count"] or 0
        if phase == "succeeded" and not failed:
            status, error = BatchStatus.SENT, None
        elif delivered or failed:  # some went, some did not, and LINE does not say who
            status = BatchStatus.UNDETERMINED
            error = f"LINE delivered {delivered} and failed {failed} of {counts['target_count']}; it does not say to whom"
        else:
            status = BatchStatus.FAILED
            error = f"LINE narrowcast failed ({progress.get('errorCode', progress.get('error_code'))}): " \
                    f"{progress.get('failedDescription', progress.get('failed_description')) or ''}"
        await self._done(leased, status, error=error, phase=phase, request_id=leased.request_id, **counts)

    async def _done(self, leased: Leased, status: BatchStatus, *, error: str | None, request_id: str | None = None,
                    **values) -> None:
        async with transaction(self.sessions) as session:
            await stages.finish_batches(session, leased.campaign_id, leased.variant_id, status, now=self.clock(),
                                        request_id=request_id, error=error)
            if not await stages.save(session, leased, now=self.clock(), release=False, state=NarrowcastState.DONE,
                                     error=error, **values):
                raise _LeaseLost()
            await campaign_batches.complete_finished(session, now=self.clock())
        await self._delete_audience(leased)

    async def _delete_audience(self, leased: Leased) -> None:
        if leased.audience_group_id is not None and not leased.audience_deleted:
            await self.line.delete_audience(leased.audience_group_id)
        await self._save(leased, audience_deleted=True)


class _LeaseLost(Exception):
    """Another worker took the row over while this one worked: its transaction is rolled back."""
