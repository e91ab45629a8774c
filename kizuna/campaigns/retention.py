"""The retention purge (issue 16 part 4): what the workers run daily, `kizuna retention` runs
from the command line and the console's 「データ保持」 page runs by hand.

A run applies every enabled policy (storage/retention.py) as of `now`: a dry run counts what
each target would lose; a purge deletes it in bounded batches, one short transaction each,
until nothing is left or its time budget is spent (then it is `incomplete`, and the next run
goes on where it stopped). Each run is a `retention_runs` row with its counts, committed as
it goes, so a page shows a run in progress and a crash leaves the counts of what was removed.

The schedule: once a day, at `hour` in the shop's zone, by one worker of N. The claim is the
run's row itself: `scheduled_for` (the shop-local date) is unique, so of the workers that find
the day's run due, one inserts the row and runs it; the others' inserts fail and they go on.

Customers who left: their personal data goes through an `eraser` the run is given; the default is
`erasure.erase_customer`, the data-subject erase (everything about a customer, everywhere); on
embedded SQLite the WAL is checkpointed after a purge, as after an erase by request.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kizuna.storage import audit, erasure, retention
from kizuna.storage.coupons import zone as shop_zone
from kizuna.storage.db import transaction
from kizuna.storage.models import RetentionRun, RetentionRunStatus, RetentionTrigger
from kizuna.storage.retention import Eraser
from kizuna.storage.types import utcnow

log = logging.getLogger("kizuna.retention")



async def erase_unfollowed(session: AsyncSession, customer_id: int) -> None:
    """The unfollowed-customers policy's eraser: the data-subject erase (storage/erasure.py),
    everything about the customer everywhere, as the retention purge's own act."""
    await erasure.erase_customer(session, customer_id, actor="retention", now=utcnow())


DEFAULT_ERASER: Eraser = erase_unfollowed
TIME_BUDGET = timedelta(minutes=10)  # a purge stops here; the next run goes on
RUNS_SHOWN = 20


async def run(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, dry_run: bool, trigger: RetentionTrigger,
    actor: audit.Actor | None = None, eraser: Eraser | None = None, budget: timedelta = TIME_BUDGET,
    batch: int = retention.BATCH, run_id: int | None = None,
) -> RetentionRun:
    """A dry run or a purge of every enabled policy as of `now`; its row, finished."""
    if run_id is None:
        async with transaction(sessions) as session:
            row = RetentionRun(trigger=trigger, dry_run=dry_run, started_at=now, started_by=actor.label[:254] if actor else None)
            session.add(row)
            await session.flush()
            run_id = row.id
    eraser = eraser or DEFAULT_ERASER
    started = time.monotonic()
    deadline = started + budget.total_seconds()
    counts: dict[str, int] = {}
    status = RetentionRunStatus.DONE
    try:
        async with sessions() as session:
            policies = {policy.kind: policy for policy in await retention.policies(session)}
        for target in retention.TARGETS:
            policy = policies[target.kind]
            if not policy.enabled:
                continue
            cutoff = policy.cutoff(now)
            if dry_run:
                async with sessions() as session:
                    counts[target.key] = await target.count(session, cutoff)
            else:
                counts[target.key], finished = await _purge(sessions, target, cutoff, batch=batch, eraser=eraser, deadline=deadline)
                if not finished:
                    status = RetentionRunStatus.INCOMPLETE
            await _save(sessions, run_id, counts=counts)
            if status == RetentionRunStatus.INCOMPLETE:
                break
    except Exception as error:
        await _save(sessions, run_id, counts=counts, status=RetentionRunStatus.FAILED, finished_at=now, error=repr(error)[:2000])
        raise
    async with transaction(sessions) as session:
        row = await session.get(RetentionRun, run_id)
        # `now` is the services' clock (tests move it): the run ends its own duration later.
        row.counts, row.status, row.finished_at = dict(counts), status, now + timedelta(seconds=time.monotonic() - started)
        audit.record_by(session, actor, audit.Action.RETENTION_RUN, target=f"retention_run:{run_id}", dry_run=dry_run,
                        counts=counts, status=str(status))
    if not dry_run:
        await erasure.checkpoint(sessions.kw["bind"])  # erased and deleted values leave the SQLite WAL too
    log.info("retention %s %s: %s", "dry run" if dry_run else "purge", status,
             ", ".join(f"{key}={value}" for key, value in counts.items()) or "nothing enabled")
    async with sessions() as session:
        return await session.get(RetentionRun, run_id)


async def _purge(sessions, target: retention.Target, cutoff: datetime, *, batch: int, eraser: Eraser,
                 deadline: float) -> tuple[int, bool]:
    """Batches until none is full or the deadline passes: (rows removed, finished)."""
    removed = 0
    state: dict = {}
    while True:
        async with transaction(sessions) as session:
            done = await target.purge_batch(session, cutoff, batch, eraser=eraser, state=state)
        removed += done
        if done == 0:  # (one empty look more than needed, rather than a rule per target about full batches)
            return removed, True
        if time.monotonic() > deadline:
            return removed, False


async def _save(sessions, run_id: int, *, counts: dict, **values) -> None:
    async with transaction(sessions) as session:
        await session.execute(sa.update(RetentionRun).where(RetentionRun.id == run_id).values(counts=dict(counts), **values))


# -- the schedule ---------------------------------------------------------------------------


def local_day_if_due(now: datetime, *, zone: str, hour: int) -> date | None:
    """The shop-local date whose run is due at `now` (its hour has come), else None."""
    local = now.astimezone(shop_zone(zone))
    return local.date() if local.hour >= hour else None


async def claim_scheduled(sessions: async_sessionmaker[AsyncSession], *, day: date, now: datetime) -> int | None:
    """The day's run, if this caller is the one to run it: its row's id (None: taken already)."""
    try:
        async with transaction(sessions) as session:
            row = RetentionRun(scheduled_for=day, trigger=RetentionTrigger.SCHEDULE, dry_run=False, started_at=now)
            session.add(row)
            await session.flush()
            return row.id
    except sa.exc.IntegrityError:
        return None


async def run_if_due(sessions: async_sessionmaker[AsyncSession], *, now: datetime, zone: str, hour: int,
                     eraser: Eraser | None = None, budget: timedelta = TIME_BUDGET) -> RetentionRun | None:
    """The workers' look: the day's purge when its hour has come and no worker has run it yet."""
    day = local_day_if_due(now, zone=zone, hour=hour)
    if day is None:
        return None
    async with sessions() as session:
        taken = (await session.execute(sa.select(RetentionRun.id).where(RetentionRun.scheduled_for == day))).first()
    if taken is not None:
        return None  # the cheap look first: most looks of the day end here
    run_id = await claim_scheduled(sessions, day=day, now=now)
    if run_id is None:
        return None
    return await run(sessions, now=now, dry_run=False, trigger=RetentionTrigger.SCHEDULE, eraser=eraser, budget=budget,
                     run_id=run_id)


async def recent_runs(session: AsyncSession, limit: int = RUNS_SHOWN) -> list[RetentionRun]:
    return list((await session.execute(sa.select(RetentionRun).order_by(RetentionRun.id.desc()).limit(limit))).scalars())
