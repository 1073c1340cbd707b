"""Accounts over HTTP: registering with proof of work, logging in, scopes, revocation."""

from __future__ import annotations

import httpx

from lightbox_node.accounts import solve
from lightbox_node.accounts.tokens import Scope, issue_token
from lightbox_node.identity import Identity
from tests.api.conftest import User, fresh_name
from tests.api.harness import ADMIN, ADMIN_PASSWORD, PASSWORD, ApiServer, bearer, login, register


def test_register_with_a_solved_challenge_then_log_in_and_read_my_account(client):
    name = fresh_name()
    response = register(client, name, email="me@example.org")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["username"] == name and body["role"] == "user"
    assert body["email"] == "me@example.org" and body["email_verified"] is False
    assert body["email_verification"] == "not_configured"
    assert "password" not in response.text and "argon2" not in response.text
    token = login(client, name)
    me = client.get("/api/v1/account", headers=bearer(token)).json()
    assert me["username"] == name and me["scope"] == "user" and me["trust"] == 1000.0


def test_a_wrong_answer_is_refused_and_says_how_to_solve(client):
    challenge = client.get("/api/v1/accounts/challenge").json()
    assert challenge["difficulty"] >= 1 and challenge["algorithm"] == "sha256"
    wrong = next(
        str(i)
        for i in range(10_000)
        if not _solves(challenge["challenge"], str(i), challenge["difficulty"])
    )
    response = client.post(
        "/api/v1/accounts",
        json={
            "username": fresh_name(),
            "password": PASSWORD,
            "challenge": challenge["challenge"],
            "answer": wrong,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "bad_proof_of_work"
    assert "zero bits" in response.json()["detail"]


def _solves(challenge: str, answer: str, bits: int) -> bool:
    from lightbox_node.accounts.proof_of_work import leading_zero_bits, work_digest

    return leading_zero_bits(work_digest(challenge, answer)) >= bits


def test_a_replayed_challenge_registers_nobody_the_second_time(client):
    challenge = client.get("/api/v1/accounts/challenge").json()
    answer = solve(challenge["challenge"], challenge["difficulty"])
    first = {"challenge": challenge["challenge"], "answer": answer, "password": PASSWORD}
    ok = client.post("/api/v1/accounts", json={**first, "username": fresh_name()})
    assert ok.status_code == 201
    again = client.post("/api/v1/accounts", json={**first, "username": fresh_name()})
    assert again.status_code == 409 and again.json()["error"] == "challenge_used"


def test_a_refused_registration_does_not_use_up_its_challenge(client, user):
    challenge = client.get("/api/v1/accounts/challenge").json()
    answer = solve(challenge["challenge"], challenge["difficulty"])
    body = {"challenge": challenge["challenge"], "answer": answer, "password": PASSWORD}
    taken = client.post("/api/v1/accounts", json={**body, "username": user.name})
    assert taken.status_code == 409 and taken.json()["error"] == "username_taken"
    assert (
        client.post("/api/v1/accounts", json={**body, "username": fresh_name()}).status_code == 201
    )


def test_a_challenge_from_another_node_or_a_forged_one_is_refused(client, server: ApiServer):
    from lightbox_node.accounts.proof_of_work import issue_challenge

    foreign = issue_challenge(
        Identity.from_seed(b"\x01" * 32),
        difficulty=1,
        purpose="register",
        now_ms=_now_ms(),
        ttl_ms=60_000,
    )
    body = {
        "username": fresh_name(),
        "password": PASSWORD,
        "challenge": foreign.text,
        "answer": solve(foreign.text, 1),
    }
    response = client.post("/api/v1/accounts", json=body)
    assert response.status_code == 400 and "another node" in response.json()["detail"]
    body["challenge"] = "lbc1.AAAA"
    assert client.post("/api/v1/accounts", json=body).json()["error"] == "bad_proof_of_work"


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def test_bad_user_names_passwords_and_emails_say_what_to_fix(client):
    for body, code in (
        ({"username": "Bad Name"}, "bad_username"),
        ({"username": "operator"}, "bad_username"),
        ({"password": "short"}, "bad_password"),
        ({"email": "not-an-email"}, "bad_email"),
    ):
        payload = {"username": fresh_name(), "password": PASSWORD, **body}
        response = register(client, **payload)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == code
    assert client.post("/api/v1/accounts", content=b"{nope").json()["error"] == "bad_json"


def test_login_with_a_wrong_password_or_unknown_name_says_the_same(client, user: User):
    wrong = client.post("/api/v1/auth/login", json={"username": user.name, "password": "x" * 12})
    unknown = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "x" * 12})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_scopes_are_never_interchangeable(client, user: User, admin_headers):
    # A user cannot log in as admin, nor ask for a gpu-host token.
    refused = client.post(
        "/api/v1/auth/login", json={"username": user.name, "password": PASSWORD, "scope": "admin"}
    )
    assert refused.status_code == 403 and refused.json()["error"] == "not_admin"
    host = client.post(
        "/api/v1/auth/login",
        json={"username": user.name, "password": PASSWORD, "scope": "gpu-host"},
    )
    assert host.status_code == 403 and host.json()["error"] == "wrong_scope"
    # An admin token does not submit jobs; a user token does not act as a host.
    job = client.post("/api/v1/jobs", json={"task": "noop"}, headers=admin_headers)
    assert job.status_code == 403 and job.json()["error"] == "wrong_scope"
    assert client.get("/api/v1/host/whoami", headers=user.headers).status_code == 403
    # A gpu-host token (issued by an admin) opens host routes only.
    issued = client.post(
        "/api/v1/admin/host-tokens", json={"label": "rig-1"}, headers=admin_headers
    )
    assert issued.status_code == 201, issued.text
    host_headers = bearer(issued.json()["token"])
    whoami = client.get("/api/v1/host/whoami", headers=host_headers).json()
    assert whoami == {
        "scope": "gpu-host",
        "issued_by": ADMIN,
        "token_id": issued.json()["token_id"],
    }
    assert (
        client.post("/api/v1/jobs", json={"task": "noop"}, headers=host_headers).status_code == 403
    )
    assert client.get("/api/v1/admin/users", headers=host_headers).status_code == 403


def test_an_expired_or_foreign_or_damaged_token_is_refused_with_401(client, server: ApiServer):
    name = fresh_name()
    register(client, name)
    text, _ = issue_token(
        server.identity, name, Scope.USER, now_ms=_now_ms() - 120_000, ttl_ms=60_000
    )
    expired = client.get("/api/v1/account", headers=bearer(text))
    assert expired.status_code == 401 and expired.json()["error"] == "token_expired"
    foreign, _ = issue_token(
        Identity.from_seed(b"\x02" * 32), name, Scope.USER, now_ms=_now_ms(), ttl_ms=60_000
    )
    response = client.get("/api/v1/account", headers=bearer(foreign))
    assert response.status_code == 401 and "another node" in response.json()["detail"]
    # Signed by this node but never issued (not recorded): refused too.
    unrecorded, _ = issue_token(server.identity, name, Scope.USER, now_ms=_now_ms(), ttl_ms=60_000)
    assert client.get("/api/v1/account", headers=bearer(unrecorded)).status_code == 401
    damaged = login(client, name)[:-4] + "AAAA"
    assert client.get("/api/v1/account", headers=bearer(damaged)).status_code == 401
    assert client.get("/api/v1/account").status_code == 401


def test_logout_revokes_only_that_token_and_logout_all_revokes_every_one(client):
    name = fresh_name()
    register(client, name)
    first, second, third = (login(client, name, label=f"device {i}") for i in range(3))
    tokens = client.get("/api/v1/account/tokens", headers=bearer(first)).json()["tokens"]
    assert len(tokens) == 3 and sum(t["current"] for t in tokens) == 1
    assert "token" not in tokens[0]
    assert client.post("/api/v1/auth/logout", headers=bearer(first)).status_code == 204
    revoked = client.get("/api/v1/account", headers=bearer(first))
    assert revoked.status_code == 401 and revoked.json()["error"] == "token_revoked"
    assert client.get("/api/v1/account", headers=bearer(second)).status_code == 200
    assert client.post("/api/v1/auth/logout-all", headers=bearer(second)).status_code == 204
    for token in (second, third):
        assert client.get("/api/v1/account", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/account", headers=bearer(login(client, name))).status_code == 200


def test_revoking_one_token_by_id(client, user: User):
    other = login(client, user.name)
    tokens = client.get("/api/v1/account/tokens", headers=user.headers).json()["tokens"]
    other_id = next(t["token_id"] for t in tokens if not t["current"])
    assert (
        client.delete(f"/api/v1/account/tokens/{other_id}", headers=user.headers).status_code == 204
    )
    assert client.get("/api/v1/account", headers=bearer(other)).status_code == 401
    missing = client.delete("/api/v1/account/tokens/nope", headers=user.headers)
    assert missing.status_code == 404


def test_changing_the_password_logs_out_everywhere(client, user: User):
    wrong = client.post(
        "/api/v1/account/password",
        json={"current_password": "not it at all", "new_password": "another fine password"},
        headers=user.headers,
    )
    assert wrong.status_code == 401
    ok = client.post(
        "/api/v1/account/password",
        json={"current_password": PASSWORD, "new_password": "another fine password"},
        headers=user.headers,
    )
    assert ok.status_code == 204
    assert client.get("/api/v1/account", headers=user.headers).status_code == 401
    login(client, user.name, "another fine password")


def test_a_suspended_user_can_read_but_not_submit_until_restored(client, user: User, admin_headers):
    suspended = client.post(
        f"/api/v1/admin/users/{user.name}/suspend", json={"reason": "spam"}, headers=admin_headers
    )
    assert suspended.status_code == 200 and suspended.json()["suspended"] is True
    refused = client.post("/api/v1/jobs", json={"task": "noop"}, headers=user.headers)
    assert refused.status_code == 403 and refused.json()["error"] == "suspended"
    assert "spam" in refused.json()["detail"]
    assert client.get("/api/v1/account", headers=user.headers).json()["suspended"] is True
    client.post(f"/api/v1/admin/users/{user.name}/restore", headers=admin_headers)
    assert (
        client.post("/api/v1/jobs", json={"task": "noop"}, headers=user.headers).status_code == 201
    )


def test_admin_login_needs_an_admin_account_and_gives_an_admin_token(client):
    response = client.post(
        "/api/v1/auth/login",
        json={"username": ADMIN, "password": ADMIN_PASSWORD, "scope": "admin", "ttl_s": 600},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "admin" and body["token"].startswith("lbt1.")
    assert response.headers["cache-control"] == "no-store"
    too_long = client.post(
        "/api/v1/auth/login",
        json={"username": ADMIN, "password": ADMIN_PASSWORD, "scope": "admin", "ttl_s": 10**9},
    )
    assert too_long.status_code == 400 and "ttl_s" in too_long.json()["detail"]


def test_trust_is_readable_by_its_owner_and_admins_only(
    client, user: User, other_user: User, admin_headers
):
    assert client.get(f"/api/v1/trust/{user.name}", headers=user.headers).status_code == 200
    assert client.get(f"/api/v1/trust/{other_user.name}", headers=user.headers).status_code == 403
    assert client.get(f"/api/v1/trust/{user.name}", headers=admin_headers).status_code == 200


def test_the_operator_token_acts_for_the_named_user(client):
    headers = {"Authorization": "Bearer operator-secret-for-tests", "X-Lightbox-User": "erin"}
    job = client.post("/api/v1/jobs", json={"task": "noop"}, headers=headers)
    assert job.status_code == 201 and job.json()["owner"] == "erin"
    assert client.get("/api/v1/admin/users", headers=headers).status_code == 200
    bad = client.get("/api/v1/account", headers={"Authorization": "Bearer operator-nope"})
    assert bad.status_code == 401


def test_registration_and_login_are_rate_limited_per_address(tmp_path):
    from lightbox_node.accounts import Rate
    from lightbox_node.api.settings import ApiSettings

    settings = ApiSettings(register_per_address=Rate(0.01, 2), login_per_address=Rate(0.01, 3))
    server = ApiServer(tmp_path, settings).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            assert register(client, "first").status_code == 201
            assert register(client, "second").status_code == 201
            third = register(client, "third")
            assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
            assert third.json()["error"] == "rate_limited"
            for _ in range(3):
                client.post("/api/v1/auth/login", json={"username": "first", "password": "x" * 12})
            limited = client.post(
                "/api/v1/auth/login", json={"username": "first", "password": PASSWORD}
            )
            assert limited.status_code == 429 and "retry-after" in limited.headers
    finally:
        server.stop()


def test_an_api_key_acts_as_its_user_on_user_routes_only(client, user: User):
    created = client.post(
        "/api/v1/account/api-keys", json={"label": "script"}, headers=user.headers
    )
    key = created.json()["apikey"]
    job = client.post("/api/v1/jobs", json={"task": "noop"}, headers=bearer(key))
    assert job.status_code == 201 and job.json()["owner"] == user.name
    assert client.get("/api/v1/admin/status", headers=bearer(key)).status_code == 403
    listed = client.get("/api/v1/account/tokens", headers=user.headers).json()["tokens"]
    entry = next(t for t in listed if t["kind"] == "api_key")
    assert entry["label"] == "script" and key not in str(listed)
    client.delete(f"/api/v1/account/tokens/{entry['token_id']}", headers=user.headers)
    revoked = client.post("/api/v1/jobs", json={"task": "noop"}, headers=bearer(key))
    assert revoked.status_code == 401 and revoked.json()["error"] == "token_revoked"


def test_email_is_verified_with_the_code_mailed_to_it(tmp_path):
    import email
    import email.policy
    import re
    import socket

    from aiosmtpd.controller import Controller

    from lightbox_node.accounts import SmtpMailer

    received: list[str] = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            received.append(f"To: {message['To']}\n{message.get_content()}")
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=port)
    smtp.start()
    server = ApiServer(tmp_path, mailer=SmtpMailer("127.0.0.1", port, "node@example.org")).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            body = register(client, "mailer", email="me@example.org").json()
            assert body["email_verification"] == "sent" and body["email_verified"] is False
            assert len(received) == 1 and "To: me@example.org" in received[0]
            code = re.search(r"lbe1\.[A-Za-z0-9_-]+", received[0]).group(0)
            bad = client.post("/api/v1/accounts/verify-email", json={"code": code[:-3] + "AAA"})
            assert bad.status_code == 400
            ok = client.post("/api/v1/accounts/verify-email", json={"code": code})
            assert ok.status_code == 200 and ok.json()["email_verified"] is True
            token = login(client, "mailer")
            me = client.get("/api/v1/account", headers=bearer(token)).json()
            assert me["email_verified"] is True
    finally:
        server.stop()
        smtp.stop()
