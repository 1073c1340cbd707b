"""Job endpoints over HTTP: tasks, submit (JSON, data URLs, multipart), read, list, cancel,
results as JSON and as files, the WebSocket of events, refusals and limits."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import httpx
import pytest
import trio
from PIL import Image
from trio_websocket import ConnectionClosed, open_websocket_url

from lightbox_node.accounts import Rate
from lightbox_node.api.settings import UNLIMITED, ApiSettings
from tests.api.conftest import User
from tests.api.harness import ApiServer, bearer, login, png, register, wait_final


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def submit(client: httpx.Client, user: User, task: str, inputs: dict, **extra) -> httpx.Response:
    return client.post(
        "/api/v1/jobs", json={"task": task, "inputs": inputs, **extra}, headers=user.headers
    )


def test_tasks_list_schemas_and_the_hosts_offering_them(client, server: ApiServer):
    tasks = {t["name"]: t for t in client.get("/api/v1/tasks").json()["tasks"]}
    assert {"noop", "sleep", "echo", "fail", "txt2img", "img2img"} <= set(tasks)
    txt2img = tasks["txt2img"]
    assert txt2img["inputs"][0]["name"] == "prompt"
    assert txt2img["hosts"] == [
        {"peer_id": str(server.identity.peer_id), "attached": True, "free_slots": 4}
    ]


def test_a_job_runs_and_its_result_comes_as_json_and_as_a_file(client, user: User):
    response = submit(client, user, "echo", {"text": "hello"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["owner"] == user.name and job["state"] in ("queued", "dispatched", "running")
    final = wait_final(client, job["job_id"], user.token)
    assert final["state"] == "done" and final["progress"] == 1.0
    result = client.get(f"/api/v1/jobs/{job['job_id']}/result", headers=user.headers).json()
    assert result["outputs"] == {"text": base64.b64encode(b"hello").decode()}
    assert result["files"][0]["media_type"] == "text/plain; charset=utf-8"
    raw = client.get(result["files"][0]["url"], headers=user.headers)
    assert raw.status_code == 200 and raw.content == b"hello"
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["x-content-type-options"] == "nosniff"


def test_image_outputs_download_as_png_with_their_content_type(client, user: User):
    job = submit(client, user, "txt2img", {"prompt": "a red fox", "batch_size": 2}).json()
    assert wait_final(client, job["job_id"], user.token)["state"] == "done"
    files = client.get(f"/api/v1/jobs/{job['job_id']}/result", headers=user.headers).json()["files"]
    assert [f["media_type"] for f in files] == ["image/png", "image/png"]
    raw = client.get(files[1]["url"], headers=user.headers)
    assert raw.headers["content-type"] == "image/png"
    assert 'filename="' in raw.headers["content-disposition"]
    assert Image.open(io.BytesIO(raw.content)).size == (512, 512)
    missing = client.get(f"/api/v1/jobs/{job['job_id']}/outputs/7", headers=user.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "no_such_output"


def test_an_image_as_a_data_url_is_checked_stored_and_used(client, user: User):
    job = submit(
        client, user, "img2img", {"image": data_url(png(64, 128, (255, 0, 0))), "prompt": "x"}
    ).json()
    assert wait_final(client, job["job_id"], user.token)["state"] == "done"
    raw = client.get(f"/api/v1/jobs/{job['job_id']}/outputs/0", headers=user.headers)
    assert raw.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(raw.content)).convert("RGB")
    assert image.size == (64, 128) and image.getpixel((0, 0))[0] < 10  # red inverted


def test_an_image_can_be_uploaded_as_a_multipart_file(client, user: User):
    request = json.dumps({"task": "img2img", "inputs": {"prompt": "x", "strength": 0.5}})
    response = client.post(
        "/api/v1/jobs",
        data={"request": request},
        files={"image": ("photo.jpg", png(128, 64, kind="JPEG"), "image/jpeg")},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    assert wait_final(client, response.json()["job_id"], user.token)["state"] == "done"


def test_a_stored_image_is_used_by_its_blob_id_with_facts_read_from_its_bytes(client, user: User):
    first = submit(client, user, "txt2img", {"prompt": "x", "width": 64, "height": 64}).json()
    blob = wait_final(client, first["job_id"], user.token)["results"][0]
    second = submit(
        client,
        user,
        "img2img",
        # The claimed size is wrong on purpose: the real one is read from the image.
        {"image": {"blob": blob, "width": 2048, "height": 8, "format": "png"}, "prompt": "y"},
    )
    assert second.status_code == 201, second.text
    assert wait_final(client, second.json()["job_id"], user.token)["state"] == "done"
    unknown = submit(
        client, user, "img2img", {"image": {"blob": "sha256-" + "0" * 64}, "prompt": "y"}
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_blob"


def test_my_jobs_are_listed_newest_first_and_filtered_by_state(
    client, user: User, other_user: User
):
    ids = [submit(client, user, "noop", {}).json()["job_id"] for _ in range(3)]
    submit(client, other_user, "noop", {})
    for job_id in ids:
        wait_final(client, job_id, user.token)
    listed = client.get("/api/v1/jobs", headers=user.headers).json()["jobs"]
    assert [j["job_id"] for j in listed] == ids[::-1]
    done = client.get("/api/v1/jobs?state=done&limit=2", headers=user.headers).json()["jobs"]
    assert len(done) == 2 and all(j["state"] == "done" for j in done)
    assert client.get("/api/v1/jobs?state=lost", headers=user.headers).status_code == 400
    assert client.get("/api/v1/jobs?limit=0", headers=user.headers).status_code == 400


def test_others_jobs_are_invisible_and_cancel_works(client, user: User, other_user: User):
    job = submit(client, user, "sleep", {"seconds": 5.0}).json()
    for path in ("", "/result", "/outputs/0"):
        response = client.get(f"/api/v1/jobs/{job['job_id']}{path}", headers=other_user.headers)
        assert response.status_code == 404 and response.json()["error"] == "unknown_job"
    refused = client.post(f"/api/v1/jobs/{job['job_id']}/cancel", headers=other_user.headers)
    assert refused.status_code == 404
    early = client.get(f"/api/v1/jobs/{job['job_id']}/result", headers=user.headers)
    assert early.status_code == 409 and early.json()["error"] == "not_done"
    cancelled = client.post(f"/api/v1/jobs/{job['job_id']}/cancel", headers=user.headers)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert (
        client.get("/api/v1/jobs/j-000000000000000000000000", headers=user.headers).status_code
        == 404
    )


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (its data is a few bytes of zlib)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("inputs", "status", "code", "says"),
    [
        ({"image": data_url(b"this is not an image"), "prompt": "x"}, 422, "not_an_image", "PNG"),
        (
            {"image": data_url(_bomb_png(100_000, 100_000)), "prompt": "x"},
            422,
            "too_many_pixels",
            "downscale",
        ),
        (
            {"image": data_url(png(64, 64, kind="GIF")), "prompt": "x"},
            415,
            "unsupported_image_format",
            "convert",
        ),
        ({"image": data_url(png(64, 64)[:60]), "prompt": "x"}, 422, "damaged_image", "export"),
        ({"image": "data:image/png;base64,@@@", "prompt": "x"}, 400, "bad_data_url", "base64"),
        ({"image": "data:image/png,rawtext", "prompt": "x"}, 400, "bad_data_url", "base64"),
        (
            {"image": data_url(b"\x89PNG" + b"\x00" * 300_000), "prompt": "x"},
            413,
            "image_too_large",
            "compress",
        ),
        (
            {"image": data_url(png(64, 64)), "prompt": "x", "steps": 0},
            422,
            "invalid_inputs",
            "steps",
        ),
        ({"image": data_url(png(68, 64)), "prompt": "x"}, 422, "invalid_inputs", "multiple of 8"),
    ],
    ids=[
        "not-an-image",
        "bomb",
        "gif",
        "truncated",
        "bad-base64",
        "not-base64",
        "too-big",
        "schema",
        "image-off-grid",
    ],
)
def test_bad_inputs_are_refused_with_what_to_fix(client, user: User, inputs, status, code, says):
    response = submit(client, user, "img2img", inputs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and says in body["detail"]
    if code != "invalid_inputs":
        assert body["field"] == "image"


def test_unknown_tasks_and_hosts_and_malformed_requests_are_4xx(client, user: User, server):
    unknown = submit(client, user, "paint_my_house", {})
    assert unknown.status_code == 404 and "tasks on offer" in unknown.json()["detail"]
    from lightbox_node.identity import Identity

    stranger = str(Identity.from_seed(b"\x09" * 32).peer_id)
    host = submit(client, user, "noop", {}, host=stranger)
    assert host.status_code == 404 and host.json()["error"] == "no_such_task"
    assert submit(client, user, "noop", {}, host="lb1nope").json()["error"] == "bad_host"
    assert client.post("/api/v1/jobs", json=[], headers=user.headers).status_code == 400
    assert client.post("/api/v1/jobs", content=b"{", headers=user.headers).status_code == 400
    huge = client.post("/api/v1/jobs", content=b"x" * 2_000_000, headers=user.headers)
    assert huge.status_code == 413
    problems = submit(client, user, "echo", {"text": 5, "extra": 1}).json()["problems"]
    assert {p["field"] for p in problems} == {"text", "extra"}
    no_request = client.post(
        "/api/v1/jobs", files={"image": ("a.png", png(8, 8), "image/png")}, headers=user.headers
    )
    assert no_request.status_code == 400 and "'request' part" in no_request.json()["detail"]


async def test_the_event_stream_sends_progress_until_the_job_ends(server: ApiServer):
    async with httpx.AsyncClient(base_url=server.url) as client:
        name = "streamer"
        await trio.to_thread.run_sync(lambda: _register_sync(server, name))
        token = (
            await client.post(
                "/api/v1/auth/login", json={"username": name, "password": "a long enough password"}
            )
        ).json()["token"]
        job = (
            await client.post(
                "/api/v1/jobs",
                json={"task": "sleep", "inputs": {"seconds": 0.5}},
                headers=bearer(token),
            )
        ).json()
    ws_url = server.url.replace("http", "ws") + f"api/v1/jobs/{job['job_id']}/events"
    seen = []
    async with open_websocket_url(
        ws_url, extra_headers=[("Authorization", f"Bearer {token}")]
    ) as ws:
        with trio.fail_after(10):
            try:
                while True:
                    seen.append(json.loads(await ws.get_message()))
            except ConnectionClosed as closed:
                assert closed.reason.code == 1000
    states = [m["job"]["state"] for m in seen]
    progress = [m["job"]["progress"] for m in seen]
    assert states[-1] == "done" and "running" in states
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress)
    assert all(m["type"] == "job" for m in seen)


def _register_sync(server: ApiServer, name: str) -> None:
    with httpx.Client(base_url=server.url) as client:
        assert register(client, name).status_code == 201


async def test_the_event_stream_shows_the_queue_position_while_waiting(server: ApiServer):
    def setup() -> tuple[str, list[str]]:
        with httpx.Client(base_url=server.url) as client:
            register(client, "queuer")
            token = login(client, "queuer")
            ids = [
                client.post(
                    "/api/v1/jobs",
                    json={"task": "sleep", "inputs": {"seconds": 0.6}},
                    headers=bearer(token),
                ).json()["job_id"]
                for _ in range(7)
            ]
            return token, ids

    token, ids = await trio.to_thread.run_sync(setup)
    url = server.url.replace("http", "ws") + f"api/v1/jobs/{ids[-1]}/events?access_token={token}"
    positions = []
    async with open_websocket_url(url) as ws:
        with trio.fail_after(15):
            try:
                while True:
                    message = json.loads(await ws.get_message())
                    positions.append((message["job"]["state"], message["job"]["queue_position"]))
            except ConnectionClosed:
                pass
    queued = [p for s, p in positions if s == "queued"]
    assert queued and all(isinstance(p, int) and p >= 1 for p in queued)
    assert queued[0] > queued[-1] or len(queued) == 1  # it moved up (or was last in line)
    assert positions[-1] == ("done", None)


async def test_the_event_stream_refuses_bad_tokens_and_others_jobs(server: ApiServer):
    def setup() -> tuple[str, str]:
        with httpx.Client(base_url=server.url) as client:
            register(client, "watcher")
            register(client, "owner1")
            mine = login(client, "owner1")
            job = client.post("/api/v1/jobs", json={"task": "noop"}, headers=bearer(mine)).json()
            return login(client, "watcher"), job["job_id"]

    token, job_id = await trio.to_thread.run_sync(setup)
    base = server.url.replace("http", "ws") + f"api/v1/jobs/{job_id}/events"
    for url, code in ((base, 4401), (base + f"?access_token={token}", 4404)):
        async with open_websocket_url(url) as ws:
            message = json.loads(await ws.get_message())
            assert message["type"] == "error"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason.code == code


def test_submissions_are_rate_limited_per_account_with_retry_after(tmp_path):
    settings = ApiSettings(
        submit_per_account=Rate(0.01, 3),
        submit_per_address=UNLIMITED,
        register_per_address=UNLIMITED,
    )
    server = ApiServer(tmp_path, settings).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            register(client, "eager")
            headers = bearer(login(client, "eager"))
            codes = [
                client.post("/api/v1/jobs", json={"task": "noop"}, headers=headers).status_code
                for _ in range(4)
            ]
            assert codes == [201, 201, 201, 429]
            limited = client.post("/api/v1/jobs", json={"task": "noop"}, headers=headers)
            assert int(limited.headers["retry-after"]) >= 60
            assert limited.json()["error"] == "rate_limited"
    finally:
        server.stop()


def test_an_account_has_a_cap_on_concurrent_jobs(tmp_path):
    settings = ApiSettings(max_active_jobs=2, register_per_address=UNLIMITED)
    server = ApiServer(tmp_path, settings).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            register(client, "busy")
            headers = bearer(login(client, "busy"))
            sleepy = {"task": "sleep", "inputs": {"seconds": 2.0}}
            jobs = [client.post("/api/v1/jobs", json=sleepy, headers=headers) for _ in range(2)]
            assert [j.status_code for j in jobs] == [201, 201]
            third = client.post("/api/v1/jobs", json=sleepy, headers=headers)
            assert third.status_code == 429 and third.json()["error"] == "too_many_active_jobs"
            assert third.headers["retry-after"] == "5"
            client.post(f"/api/v1/jobs/{jobs[0].json()['job_id']}/cancel", headers=headers)
            assert client.post("/api/v1/jobs", json=sleepy, headers=headers).status_code == 201
    finally:
        server.stop()


async def test_a_client_leaving_the_event_stream_early_harms_nothing(server: ApiServer):
    def setup() -> tuple[str, str]:
        with httpx.Client(base_url=server.url) as client:
            register(client, "leaver")
            token = login(client, "leaver")
            job = client.post(
                "/api/v1/jobs",
                json={"task": "sleep", "inputs": {"seconds": 0.5}},
                headers=bearer(token),
            ).json()
            return token, job["job_id"]

    token, job_id = await trio.to_thread.run_sync(setup)
    url = server.url.replace("http", "ws") + f"api/v1/jobs/{job_id}/events?access_token={token}"
    for _ in range(3):
        async with open_websocket_url(url) as ws:
            await ws.get_message()  # then leave while the job still runs
    await trio.sleep(0.7)

    def check() -> dict:
        with httpx.Client(base_url=server.url) as client:
            return client.get(f"/api/v1/jobs/{job_id}", headers=bearer(token)).json()

    assert (await trio.to_thread.run_sync(check))["state"] == "done"
