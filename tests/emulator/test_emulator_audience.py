"""Audiences for uploading user ids, as line-bot-sdk's manage-audience client sees them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from linebot.v3.audience import (
    AddAudienceToAudienceGroupRequest,
    ApiException,
    AsyncApiClient,
    AsyncManageAudience,
    AsyncManageAudienceBlob,
    Audience,
    Configuration,
    CreateAudienceGroupRequest,
)

from kizuna.emulator import Emulator
from tests.conftest import eventually

TOKEN = "test-access-token"  # as in conftest.py


@pytest.fixture
async def audiences(running) -> AsyncIterator[tuple[AsyncManageAudience, AsyncManageAudienceBlob]]:
    async with AsyncApiClient(Configuration(host=running.base_url, access_token=TOKEN)) as client:
        yield AsyncManageAudience(client), AsyncManageAudienceBlob(client)


def friends(emu: Emulator, count: int, prefix: str = "友") -> list[str]:
    return [emu.add_user(f"{prefix}{i}", followed=True).user_id for i in range(count)]


async def ready(api: AsyncManageAudience, audience_id: int):
    async def is_ready() -> bool:
        return (await api.get_audience_data(audience_id)).audience_group.status == "READY"

    await eventually(is_ready, timeout=5, what="the audience to be READY")
    return await api.get_audience_data(audience_id)


async def test_an_uploaded_audience_is_built_asynchronously_then_ready_with_its_users(audiences, emu) -> None:
    api, _ = audiences
    users = friends(emu, 3)
    emu.audience_ready_seconds = 0.5  # long enough to read IN_PROGRESS first, even on a busy machine
    created = await api.create_audience_group(CreateAudienceGroupRequest(
        description="春のキャンペーン", uploadDescription="first", audiences=[Audience(id=u) for u in users],
    ))
    assert created.type == "UPLOAD" and created.create_route == "MESSAGING_API" and created.permission == "READ_WRITE"
    assert created.expire_timestamp == created.created + 180 * 24 * 3600
    assert (await api.get_audience_data(created.audience_group_id)).audience_group.status == "IN_PROGRESS"

    data = await ready(api, created.audience_group_id)
    assert data.audience_group.audience_count == 3
    [job] = data.jobs
    assert job.type == "DIFF_ADD" and job.job_status == "FINISHED" and job.audience_count == 3 and job.description == "first"

    more = friends(emu, 2, "追加")
    await api.add_audience_to_audience_group(AddAudienceToAudienceGroupRequest(
        audienceGroupId=created.audience_group_id, audiences=[Audience(id=u) for u in more + users[:1]],
    ))

    async def five() -> bool:
        return (await api.get_audience_data(created.audience_group_id)).audience_group.audience_count == 5

    await eventually(five, timeout=5, what="the added users")
    assert emu.audiences[created.audience_group_id].user_ids == set(users + more)


async def test_a_big_list_is_uploaded_as_a_file_on_the_data_host(audiences, emu, tmp_path: Path, running, http) -> None:
    api, blob = audiences
    users = friends(emu, 120)
    path = tmp_path / "audience.txt"
    path.write_text("\n".join(users) + "\n")
    created = await blob.create_audience_for_uploading_user_ids(file=str(path), description="ファイルから")
    data = await ready(api, created.audience_group_id)
    assert data.audience_group.audience_count == 120

    # Adding by file: the SDK sends audienceGroupId as an int form field, which aiohttp cannot
    # encode, so this part posts the form as LINE documents it.
    more = friends(emu, 5, "追加")
    form = {"audienceGroupId": str(created.audience_group_id), "uploadDescription": "追加分"}
    import aiohttp

    data_form = aiohttp.FormData(form)
    data_form.add_field("file", "\n".join(more).encode(), filename="more.txt", content_type="text/plain")
    async with http.put(running.url("/v2/bot/audienceGroup/upload/byFile"), data=data_form,
                        headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        assert response.status == 202

    async def all_in() -> bool:
        return (await api.get_audience_data(created.audience_group_id)).audience_group.audience_count == 125

    await eventually(all_in, timeout=5, what="the users added by file")


async def test_ids_must_be_user_ids_and_lists_and_names_within_limits(audiences, emu, tmp_path, running, http) -> None:
    api, blob = audiences
    [user] = friends(emu, 1)
    with pytest.raises(ApiException) as bad_id:
        await api.create_audience_group(CreateAudienceGroupRequest(
            description="x", audiences=[Audience(id=user), Audience(id="C" + "0" * 32)],
        ))
    assert bad_id.value.status == 400
    assert json.loads(bad_id.value.body)["details"] == [
        {"message": "must be a user ID ('U' followed by 32 hex digits)", "property": "audiences[1].id"}
    ]
    for body in (
        {"description": "あ" * 121},
        {"description": ""},
        {"description": "多すぎ", "audiences": [{"id": user}] * 10_001},
    ):
        # Raw HTTP: the SDK's own models would refuse some of these before sending.
        async with http.post(running.url("/v2/bot/audienceGroup/upload"), json=body,
                             headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 400, body
            assert (await response.json())["message"] == "The request body has 1 error(s)"
    with pytest.raises(ApiException) as ifa:
        await api.create_audience_group(CreateAudienceGroupRequest(description="IFA", isIfaAudience=True))
    assert ifa.value.status == 400 and "IFA" in json.loads(ifa.value.body)["message"]

    path = tmp_path / "bad.txt"
    path.write_text(f"{user}\nnot-a-user\n")
    with pytest.raises(ApiException) as bad_line:
        await blob.create_audience_for_uploading_user_ids(file=str(path), description="壊れたファイル")
    assert "line 2" in json.loads(bad_line.value.body)["details"][0]["message"]
    assert emu.audiences == {}


async def test_an_unknown_or_deleted_audience_is_not_found(audiences, emu) -> None:
    api, _ = audiences
    created = await api.create_audience_group(CreateAudienceGroupRequest(description="消す"))
    await ready(api, created.audience_group_id)
    listed = await api.get_audience_groups(page=1, description="消")
    assert [a.audience_group_id for a in listed.audience_groups] == [created.audience_group_id]
    await api.delete_audience_group(created.audience_group_id)
    for call in (api.get_audience_data, api.delete_audience_group):
        with pytest.raises(ApiException) as missing:
            await call(created.audience_group_id)
        assert missing.value.status == 400
        assert json.loads(missing.value.body) == {
            "message": "audience group not found", "details": [{"message": "AUDIENCE_GROUP_NOT_FOUND"}],
        }


async def test_audience_endpoints_allow_60_requests_a_minute(audiences, emu, clock) -> None:
    api, _ = audiences
    for i in range(60):
        await api.create_audience_group(CreateAudienceGroupRequest(description=f"a{i}"))
    with pytest.raises(ApiException) as limited:
        await api.create_audience_group(CreateAudienceGroupRequest(description="61"))
    assert limited.value.status == 429
    clock.advance(1.0)  # a minute's 60 refill one a second
    await api.create_audience_group(CreateAudienceGroupRequest(description="next"))
