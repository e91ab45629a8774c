"""``python -m kizuna.emulator`` as its own process (how benchmarks and multi-process tests run it)."""

from __future__ import annotations

import asyncio
import socket
import sys

from linebot.v3.messaging import AsyncApiClient, AsyncMessagingApi, Configuration, PushMessageRequest, TextMessage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_runs_standalone(http) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kizuna.emulator", "--host", "127.0.0.1", "--port", str(port),
        "--channel-secret", "S", "--access-token", "T", "--quota", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert b"LINE emulator ready" in line, line
        base = f"http://127.0.0.1:{port}"
        async with http.post(f"{base}/api/users", json={"display_name": "別プロセス"}) as r:
            user_id = (await r.json())["user_id"]
        async with http.post(f"{base}/api/admin/users/bulk", json={"count": 1}) as r:
            friend = (await r.json())["user_ids"][0]
        async with AsyncApiClient(Configuration(host=base, access_token="T")) as client:
            api = AsyncMessagingApi(client)
            assert (await api.get_message_quota()).value == 5
            await api.push_message(PushMessageRequest(to=friend, messages=[TextMessage(text="やあ")]))
        async with http.get(f"{base}/api/admin/messages/{friend}") as r:
            [sent] = (await r.json())["messages"]
        assert sent["message"]["text"] == "やあ" and sent["delivered"] is True
        async with http.get(f"{base}/api/users/{user_id}/timeline") as r:
            assert (await r.json())["items"] == []
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
