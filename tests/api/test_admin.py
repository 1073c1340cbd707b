"""Administration over HTTP: only admin tokens (or the operator) pass; what each route does."""

from __future__ import annotations

import re
import time

import pytest

from lightbox_node.api.openapi import OPERATIONS
from lightbox_node.identity import Identity
from tests.api.conftest import User
from tests.api.harness import ADMIN, ApiServer, bearer, login

PEER = str(Identity.from_seed(b"\x05" * 32).peer_id)
ADMIN_OPERATIONS = [op for op in OPERATIONS if op.auth == "admin"]


def concrete(path: str, user: str) -> str:
    values = {"user": user, "peer_id": PEER, "job_id": "j-" + "0" * 24, "concept": "rex"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


@pytest.mark.parametrize(
    "op", ADMIN_OPERATIONS, ids=[f"{op.method} {op.path}" for op in ADMIN_OPERATIONS]
)
def test_a_user_token_gets_403_on_every_admin_route(client, user: User, op):
    response = client.request(
        op.method, concrete(op.path, user.name), json={}, headers=user.headers
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "wrong_scope"
    anonymous = client.request(op.method, concrete(op.path, user.name), json={})
    assert anonymous.status_code == 401


def test_there_are_admin_routes_for_users_peers_hosts_queues_and_status():
    paths = {op.path for op in ADMIN_OPERATIONS}
    assert len(ADMIN_OPERATIONS) >= 15
    for part in ("users", "peers", "hosts", "queues", "status", "host-tokens", "jobs"):
        assert any(f"/admin/{part}" in path for path in paths), part


def test_an_admin_who_loses_the_role_loses_admin_tokens(client, admin_headers, user: User):
    promoted = client.post(
        f"/api/v1/admin/users/{user.name}/role", json={"role": "admin"}, headers=admin_headers
    )
    assert promoted.status_code == 200 and promoted.json()["account"]["role"] == "admin"
    token = login(client, user.name, scope="admin")
    assert client.get("/api/v1/admin/status", headers=bearer(token)).status_code == 200
    client.post(
        f"/api/v1/admin/users/{user.name}/role", json={"role": "user"}, headers=admin_headers
    )
    lost = client.get("/api/v1/admin/status", headers=bearer(token))
    assert lost.status_code == 403 and lost.json()["error"] == "not_admin"
    own = client.post(
        f"/api/v1/admin/users/{ADMIN}/role", json={"role": "user"}, headers=admin_headers
    )
    assert own.status_code == 400


def test_admins_set_trust_suspend_restore_and_see_users(client, admin_headers, user: User):
    set_trust = client.post(
        f"/api/v1/admin/users/{user.name}/trust", json={"trust": 0}, headers=admin_headers
    )
    assert set_trust.status_code == 200 and set_trust.json()["trust"] < 1
    refused = client.post("/api/v1/jobs", json={"task": "noop"}, headers=user.headers)
    assert refused.status_code == 429 and refused.json()["error"] == "trust_exhausted"
    assert int(refused.headers["retry-after"]) >= 1
    bad = client.post(
        f"/api/v1/admin/users/{user.name}/trust", json={"trust": 5000}, headers=admin_headers
    )
    assert bad.status_code == 400
    client.post(
        f"/api/v1/admin/users/{user.name}/trust", json={"trust": 1000}, headers=admin_headers
    )
    users = client.get("/api/v1/admin/users", headers=admin_headers).json()["users"]
    row = next(u for u in users if u["username"] == user.name)
    assert row["account"]["role"] == "user" and row["trust"] == 1000.0
    assert "password" not in str(users) and "argon2" not in str(users)
    one = client.get(f"/api/v1/admin/users/{user.name}", headers=admin_headers).json()
    assert one["suspended"] is False and one["active_jobs"] == 0


def test_admin_suspension_is_kept_in_the_database(
    client, admin_headers, user: User, server: ApiServer
):
    client.post(
        f"/api/v1/admin/users/{user.name}/suspend", json={"reason": "abuse"}, headers=admin_headers
    )
    from lightbox_node.store import TrustStore, open_database

    db = open_database(server.data_dir / "node.sqlite3")
    try:
        row = next(r for r in TrustStore(db).load() if r.user == user.name)
    finally:
        db.close()
    assert row.suspended and row.reason == "abuse"
    client.post(f"/api/v1/admin/users/{user.name}/restore", headers=admin_headers)


def test_admins_block_and_allow_peers(client, admin_headers, server: ApiServer):
    blocked = client.post(
        f"/api/v1/admin/peers/{PEER}/block", json={"reason": "spam"}, headers=admin_headers
    )
    assert blocked.status_code == 200
    assert blocked.json()["verdict"] == "block" and "spam" in blocked.json()["refused"]
    listed = client.get("/api/v1/admin/peers", headers=admin_headers).json()
    assert listed["policy"] == [
        {
            "peer_id": PEER,
            "verdict": "block",
            "reason": "spam",
            "decided_at": listed["policy"][0]["decided_at"],
        }
    ]
    assert server.network.policy.is_blocked(Identity.from_seed(b"\x05" * 32).peer_id)
    allowed = client.post(f"/api/v1/admin/peers/{PEER}/allow", json={}, headers=admin_headers)
    assert allowed.json()["verdict"] == "allow" and allowed.json()["refused"] is None
    cleared = client.post(f"/api/v1/admin/peers/{PEER}/unblock", headers=admin_headers)
    assert cleared.json()["verdict"] is None
    bad = client.post("/api/v1/admin/peers/lb1bad/block", json={}, headers=admin_headers)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_peer_id"
    long = client.post(
        f"/api/v1/admin/peers/{PEER}/block", json={"reason": "x" * 600}, headers=admin_headers
    )
    assert long.status_code == 400


def test_admins_see_hosts_queues_and_node_status(
    client, admin_headers, server: ApiServer, user: User
):
    hosts = client.get("/api/v1/admin/hosts", headers=admin_headers).json()["hosts"]
    assert hosts[0]["peer_id"] == str(server.identity.peer_id) and hosts[0]["online"]
    assert "txt2img" in hosts[0]["tasks"] and hosts[0]["slots"] == 4
    queues = client.get("/api/v1/admin/queues", headers=admin_headers).json()
    assert set(queues) == {"queues", "unplaced"}
    status = client.get("/api/v1/admin/status", headers=admin_headers).json()
    assert status["node"]["peer_id"] == str(server.identity.peer_id)
    assert status["accounts"] >= 2 and "submitted" in status["jobs"]["counters"]


def test_an_admin_logs_a_user_out_everywhere(client, admin_headers, user: User):
    assert (
        client.post(
            f"/api/v1/admin/users/{user.name}/revoke-tokens", headers=admin_headers
        ).status_code
        == 200
    )
    assert client.get("/api/v1/account", headers=user.headers).status_code == 401
    missing = client.post("/api/v1/admin/users/nobody-here/revoke-tokens", headers=admin_headers)
    assert missing.status_code == 404


def test_admins_list_and_cancel_anyones_jobs(client, admin_headers, user: User, other_user: User):
    mine = client.post(
        "/api/v1/jobs", json={"task": "sleep", "inputs": {"seconds": 5}}, headers=user.headers
    ).json()
    client.post("/api/v1/jobs", json={"task": "noop"}, headers=other_user.headers)
    listed = client.get(f"/api/v1/admin/jobs?user={user.name}", headers=admin_headers).json()
    assert [j["job_id"] for j in listed["jobs"]] == [mine["job_id"]]
    assert "priority" in listed["jobs"][0]
    everyone = client.get("/api/v1/admin/jobs?limit=1000", headers=admin_headers).json()["jobs"]
    assert {user.name, other_user.name} <= {j["owner"] for j in everyone}
    cancelled = client.post(f"/api/v1/admin/jobs/{mine['job_id']}/cancel", headers=admin_headers)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    missing = client.post(
        "/api/v1/admin/jobs/j-000000000000000000000000/cancel", headers=admin_headers
    )
    assert missing.status_code == 404
    assert client.get("/api/v1/admin/jobs?state=lost", headers=admin_headers).status_code == 400


def test_a_drained_host_gets_no_new_jobs_until_it_is_resumed(
    client, admin_headers, server: ApiServer, user: User
):
    host = str(server.identity.peer_id)
    drained = client.post(f"/api/v1/admin/hosts/{host}/drain", headers=admin_headers)
    try:
        assert drained.status_code == 200 and drained.json() == {"peer_id": host, "drained": True}
        listed = client.get("/api/v1/admin/hosts", headers=admin_headers).json()["hosts"]
        assert listed[0]["drained"] is True
        job = client.post("/api/v1/jobs", json={"task": "noop"}, headers=user.headers).json()
        time.sleep(0.5)
        waiting = client.get(f"/api/v1/jobs/{job['job_id']}", headers=user.headers).json()
        assert waiting["state"] == "queued"
    finally:
        resumed = client.post(f"/api/v1/admin/hosts/{host}/resume", headers=admin_headers)
    assert resumed.json()["drained"] is False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = client.get(f"/api/v1/jobs/{job['job_id']}", headers=user.headers).json()["state"]
        if state == "done":
            break
        time.sleep(0.05)
    assert state == "done"
    unknown = client.post(f"/api/v1/admin/hosts/{PEER}/drain", headers=admin_headers)
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_host"
    bad = client.post("/api/v1/admin/hosts/lb1bad/drain", headers=admin_headers)
    assert bad.status_code == 400
