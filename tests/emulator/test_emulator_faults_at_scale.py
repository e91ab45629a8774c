"""Random faults for benchmarks, the record of accepted deliveries, and multicast at scale."""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
import uuid

import pytest
from linebot.v3.messaging import ApiException, AsyncApiClient, AsyncMessagingApi, Configuration, MulticastRequest

from kizuna.emulator import Emulator
from kizuna.emulator.faults import FaultPlan, FaultRates
from tests.emulator.test_emulator_standalone import free_port

TOKEN = "test-access-token"
TEXT = [{"type": "text", "text": "お知らせ"}]


def friends(emu: Emulator, count: int) -> list[str]:
    return [emu.add_user(f"友{i}", followed=True).user_id for i in range(count)]


async def send(line: AsyncMessagingApi, to: list[str], key: str, messages=TEXT) -> int:
    try:
        await line.multicast(MulticastRequest.from_dict({"to": to, "messages": messages}), x_line_retry_key=key)
        return 200
    except ApiException as error:
        return error.status


async def test_faults_before_executing_send_nothing_and_after_executing_send_once(line, emu) -> None:
    users = friends(emu, 3)
    emu.faults.set_rates("multicast", FaultRates(before=1.0))
    assert await send(line, users, str(uuid.uuid4())) == 500
    assert all(emu.messages_to(u) == [] for u in users)

    emu.faults.set_rates("multicast", FaultRates(after=1.0))
    key = str(uuid.uuid4())
    assert await send(line, users, key) == 500  # executed: the acknowledgement is what got lost
    emu.faults.set_rates("multicast", FaultRates())
    assert await send(line, users, key) == 409
    assert all(len(emu.messages_to(u)) == 1 for u in users)

    emu.faults.set_rates("*", FaultRates(rate_limited=1.0))
    assert await send(line, users, str(uuid.uuid4())) == 429
    assert emu.faults.injected == {"multicast before": 1, "multicast after": 1, "multicast rate_limited": 1}


def test_random_faults_follow_their_rates_and_repeat_with_the_seed() -> None:
    def run(seed: int) -> list[tuple[int, bool] | None]:
        plan = FaultPlan(seed)
        plan.set_rates("multicast", FaultRates(before=0.05, after=0.05, rate_limited=0.02))
        out = []
        for _ in range(10_000):
            failure = plan.draw("multicast")
            out.append(None if failure is None else (failure.status, failure.after_executing))
        return out

    first = run(7)
    assert first == run(7) and first != run(8)
    assert 400 < first.count((500, False)) < 600 and 400 < first.count((500, True)) < 600
    assert 140 < first.count((429, False)) < 260
    with pytest.raises(ValueError):
        FaultRates(before=0.6, after=0.6)


async def test_the_delivery_record_counts_duplicates_per_content(line, emu, running, http) -> None:
    a, b, c = friends(emu, 3)
    await send(line, [a, b], str(uuid.uuid4()))
    await send(line, [b, c], str(uuid.uuid4()))  # b gets the same content a second time
    await send(line, [a], str(uuid.uuid4()), [{"type": "text", "text": "別の内容"}])
    async with http.get(running.url("/api/admin/deliveries?users=duplicates")) as r:
        groups = {g["deliveries"]: g for g in (await r.json())["fingerprints"]}
    same, other = groups[4], groups[1]
    assert (same["requests"], same["retry_keys"], same["users"], same["duplicated_users"]) == (2, 2, 3, 1)
    assert same["counts"] == {b: 2} and other["duplicated_users"] == 0
    async with http.get(running.url(f"/api/admin/deliveries?fingerprint={same['fingerprint']}&users=all")) as r:
        [group] = (await r.json())["fingerprints"]
    assert group["counts"] == {a: 1, b: 2, c: 1}


async def test_faults_and_limits_are_set_over_http(line, emu, running, http) -> None:
    users = friends(emu, 1)
    async with http.post(running.url("/api/admin/fault_rates"), json={"endpoint": "multicast", "before": 1.0, "seed": 3}) as r:
        assert (await r.json())["rates"] == {"multicast": {"before": 1.0, "after": 0.0, "rate_limited": 0.0}}
    assert await send(line, users, str(uuid.uuid4())) == 500
    async with http.post(running.url("/api/admin/fault_rates"), json={"endpoint": "multicast"}) as r:
        assert (await r.json())["injected"] == {"multicast before": 1}
    async with http.post(running.url("/api/admin/rate_limits_off"), json={}) as r:
        assert (await r.json())["unlimited"] is True
    results = await asyncio.gather(*(send(line, users, str(uuid.uuid4())) for _ in range(250)))
    assert set(results) == {200}  # above LINE's 200 a second: the limit is lifted


async def test_the_standalone_emulator_takes_faults_and_limits_from_its_command_line(http) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kizuna.emulator", "--port", str(port), "--access-token", "T",
        "--faults", "multicast=0,1,0", "--fault-seed", "5", "--rate-limit", "push=1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 15)
        base = f"http://127.0.0.1:{port}"
        async with http.post(f"{base}/api/admin/users/bulk", json={"count": 2}) as r:
            users = (await r.json())["user_ids"]
        async with AsyncApiClient(Configuration(host=base, access_token="T")) as client:
            api = AsyncMessagingApi(client)
            key = str(uuid.uuid4())
            assert await send(api, users, key) == 500
            async with http.get(f"{base}/api/admin/deliveries") as r:
                [group] = (await r.json())["fingerprints"]
            assert group["deliveries"] == 2  # executed although answered 500
        async with http.get(f"{base}/api/admin/fault_rates") as r:
            assert (await r.json())["seed"] == 5
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_multicast_stores_its_messages_once_and_little_per_recipient(line, emu, running, http) -> None:
    users = friends(emu, 5000)
    emu.rate_limiter.unlimited = True
    emu.request_log_limit = 10
    await send(line, users[:500], str(uuid.uuid4()))  # warm up (first-time allocations)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            await send(line, users[(i % 10) * 500 : (i % 10 + 1) * 500], str(uuid.uuid4()))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    recipients = 20 * 500
    assert grown / recipients < 120, f"{grown / recipients:.0f} bytes per recipient"
    # Every recipient's chat still shows the message, and the record counts every delivery.
    assert [d.message["text"] for d in emu.messages_to(users[0])] == ["お知らせ"] * 3
    async with http.get(running.url(f"/api/users/{users[-1]}/timeline")) as r:
        assert [i["message"]["text"] for i in (await r.json())["items"]] == ["お知らせ"] * 2
