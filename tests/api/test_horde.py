"""The AI Horde v2 subset, driven by the published horde-sdk client against a fake GPU host."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

from lightbox_node.api.horde import horde_id, job_id_of
from lightbox_node.sched.jobs import new_job_id
from tests.api.conftest import User
from tests.api.harness import ApiServer

horde_sdk = pytest.importorskip("horde_sdk")


@pytest.fixture
def apikey(client: httpx.Client, user: User) -> str:
    response = client.post(
        "/api/v1/account/api-keys", json={"label": "horde"}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    key = response.json()["apikey"]
    assert len(key) == 22  # what Horde clients insist on
    return key


@pytest.fixture
def horde(server: ApiServer, monkeypatch: pytest.MonkeyPatch):
    from horde_sdk.ai_horde_api.ai_horde_clients import AIHordeAPIManualClient
    from horde_sdk.ai_horde_api.apimodels import base

    monkeypatch.setattr(base, "AI_HORDE_BASE_URL", server.url + "api/")
    return AIHordeAPIManualClient()


def test_horde_sdk_submits_checks_and_fetches_a_txt2img_request(horde, apikey: str):
    from horde_sdk.ai_horde_api.apimodels import (
        ImageGenerateAsyncRequest,
        ImageGenerationInputPayload,
    )

    request = ImageGenerateAsyncRequest(
        apikey=apikey,
        prompt="a lighthouse at dawn ### blurry",
        params=ImageGenerationInputPayload(width=64, height=128, n=2, steps=10, seed="42"),
        models=["stable_diffusion"],
    )
    accepted = horde.submit_request(request, request.get_default_success_response_type())
    assert job_id_of(str(accepted.id_)) is not None
    deadline = time.monotonic() + 15
    while not (check := horde.get_generate_check(accepted.id_)).done:
        assert not check.faulted and time.monotonic() < deadline
        time.sleep(0.05)
    assert check.finished == 2
    status = horde.get_generate_status(accepted.id_)
    assert [g.seed for g in status.generations] == ["42", "43"]
    image = Image.open(io.BytesIO(base64.b64decode(status.generations[0].img)))
    assert image.size == (64, 128)


def test_horde_find_user_and_models(horde, apikey: str, user: User):
    from horde_sdk.ai_horde_api.apimodels import FindUserRequest

    found = horde.submit_request(
        FindUserRequest(apikey=apikey), FindUserRequest.get_default_success_response_type()
    )
    assert found.username == f"{user.name}#1" and found.kudos == pytest.approx(1000, abs=1)


def test_horde_models_delete_and_refusals(client: httpx.Client, apikey: str, user: User):
    models = client.get("/api/v2/status/models").json()
    assert {"txt2img", "img2img"} <= {m["name"] for m in models}
    assert all(m["type"] == "image" for m in models)
    anonymous = client.post(
        "/api/v2/generate/async", json={"prompt": "x"}, headers={"apikey": "0000000000"}
    )
    assert anonymous.status_code == 401 and "register" in anonymous.json()["message"]
    wrong = client.post(
        "/api/v2/generate/async", json={"prompt": "x"}, headers={"apikey": "x" * 22}
    )
    assert wrong.status_code == 401
    assert client.get("/api/v2/generate/check/not-a-uuid").status_code == 404
    stranger = "12345678-1234-4234-8234-123456789012"
    assert client.get(f"/api/v2/generate/status/{stranger}").status_code == 404
    job = client.post(
        "/api/v1/jobs", json={"task": "sleep", "inputs": {"seconds": 5}}, headers=user.headers
    ).json()
    cancelled = client.delete(f"/api/v2/generate/status/{horde_id(job['job_id'])}")
    assert cancelled.status_code == 200 and cancelled.json()["faulted"] is True
    assert cancelled.json()["generations"] == []
    empty = client.post("/api/v2/generate/async", json={"prompt": " "}, headers={"apikey": apikey})
    assert empty.status_code == 400


def test_horde_ids_carry_job_ids_as_version_4_uuids():
    import uuid

    for _ in range(50):
        job_id = new_job_id()
        request_id = horde_id(job_id)
        assert uuid.UUID(request_id).version == 4
        assert str(uuid.UUID(request_id, version=4)) == request_id  # what horde-sdk does to it
        assert job_id_of(request_id) == job_id
    assert job_id_of(str(uuid.uuid4())) is None
