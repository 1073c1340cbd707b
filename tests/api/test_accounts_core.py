"""The pure parts of accounts (proof of work, tokens, rate limits, passwords) and the
account service on a real SQLite file with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lightbox_node.accounts import (
    FAST_TEST_COST,
    AccountService,
    AccountSettings,
    BadCredentials,
    ChallengeReplayed,
    InvalidPassword,
    NotAdmin,
    ProofOfWorkRefused,
    Rate,
    RateLimiter,
    Scope,
    TokenExpired,
    TokenRefused,
    TokenRevoked,
    UsernameTaken,
    WrongScope,
    create_admin,
    solve,
)
from lightbox_node.accounts.passwords import check_password_rules, hash_password, verify_password
from lightbox_node.accounts.proof_of_work import (
    check_answer,
    issue_challenge,
    leading_zero_bits,
    work_digest,
)
from lightbox_node.accounts.tokens import issue_token, read_token, require_scope
from lightbox_node.identity import Identity
from lightbox_node.store import open_database

NODE = Identity.from_seed(b"\x11" * 32)
OTHER = Identity.from_seed(b"\x22" * 32)
NOW = 1_800_000_000_000


# -- proof of work ------------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=8))
def test_leading_zero_bits_counts_bits_not_bytes(digest: bytes):
    text = "".join(f"{b:08b}" for b in digest)
    assert leading_zero_bits(digest) == len(text) - len(text.lstrip("0"))


def test_a_solved_challenge_checks_out_and_a_wrong_one_does_not():
    challenge = issue_challenge(NODE, difficulty=8, purpose="register", now_ms=NOW, ttl_ms=60_000)
    answer = solve(challenge.text, 8)
    assert leading_zero_bits(work_digest(challenge.text, answer)) >= 8
    checked = check_answer(
        NODE.peer_id, challenge.text, answer, purpose="register", now_ms=NOW, min_difficulty=8
    )
    assert checked.challenge_id == challenge.challenge_id
    wrong = next(
        a for a in map(str, range(1000)) if leading_zero_bits(work_digest(challenge.text, a)) < 8
    )
    with pytest.raises(ProofOfWorkRefused, match="zero bits"):
        check_answer(
            NODE.peer_id, challenge.text, wrong, purpose="register", now_ms=NOW, min_difficulty=8
        )


@pytest.mark.parametrize(
    ("issuer", "purpose", "now", "minimum", "says"),
    [
        (OTHER.peer_id, "register", NOW, 4, "another node"),
        (NODE.peer_id, "login", NOW, 4, "not for login"),
        (NODE.peer_id, "register", NOW + 61_000, 4, "expired"),
        (NODE.peer_id, "register", NOW, 20, "easier"),
    ],
)
def test_a_challenge_is_refused_for_another_node_purpose_time_or_difficulty(
    issuer, purpose, now, minimum, says
):
    challenge = issue_challenge(NODE, difficulty=4, purpose="register", now_ms=NOW, ttl_ms=60_000)
    answer = solve(challenge.text, 4)
    with pytest.raises(ProofOfWorkRefused, match=says):
        check_answer(
            issuer, challenge.text, answer, purpose=purpose, now_ms=now, min_difficulty=minimum
        )


# -- tokens -------------------------------------------------------------------------------------


def test_a_token_says_who_what_and_until_when_and_only_for_its_issuer():
    text, claims = issue_token(NODE, "alice", Scope.USER, now_ms=NOW, ttl_ms=60_000)
    assert read_token(NODE.peer_id, text, now_ms=NOW + 1000) == claims
    with pytest.raises(TokenExpired):
        read_token(NODE.peer_id, text, now_ms=NOW + 60_000)
    with pytest.raises(TokenRefused, match="another node"):
        read_token(OTHER.peer_id, text, now_ms=NOW)
    with pytest.raises(TokenRefused):
        read_token(NODE.peer_id, text.replace("lbt1.", "lbt1.x"), now_ms=NOW)
    with pytest.raises(TokenRefused):
        read_token(NODE.peer_id, "Bearer nonsense", now_ms=NOW)


@pytest.mark.parametrize("held", list(Scope))
@pytest.mark.parametrize("needed", list(Scope))
def test_scopes_match_exactly(held: Scope, needed: Scope):
    _, claims = issue_token(NODE, "alice", held, now_ms=NOW, ttl_ms=60_000)
    if held is needed:
        assert require_scope(claims, needed) is claims
    else:
        with pytest.raises(WrongScope):
            require_scope(claims, needed)


# -- rate limits --------------------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_says_how_long_to_wait():
    limiter = RateLimiter(Rate(0.5, 3))
    assert [limiter.take("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 100.0) == pytest.approx(2.0)
    assert limiter.take("b", 100.0) == 0.0  # keys are independent
    assert limiter.take("a", 102.0) == 0.0  # refilled one request after 2 s


def test_a_bucket_forgets_its_least_recent_keys_beyond_capacity():
    limiter = RateLimiter(Rate(0.001, 1), capacity=2)
    for key in ("a", "b", "c"):
        limiter.take(key, 0.0)
    assert limiter.take("a", 0.0) == 0.0  # forgotten, so forgiven
    assert limiter.take("c", 0.0) > 0


# -- passwords ----------------------------------------------------------------------------------


def test_passwords_hash_with_argon2id_and_verify():
    stored = hash_password("a long enough password", FAST_TEST_COST)
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "a long enough password")
    assert not verify_password(stored, "a long enough passwore")
    assert not verify_password("garbage", "a long enough password")
    with pytest.raises(InvalidPassword, match="10 to 1024"):
        check_password_rules("short")
    with pytest.raises(InvalidPassword, match="user name"):
        check_password_rules("aliceinwonder", "AliceInWonder")


# -- the account service ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW / 1000

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service(tmp_path):
    clock = Clock()
    db = open_database(tmp_path / "db.sqlite3")
    accounts = AccountService(
        db, NODE, AccountSettings(password_cost=FAST_TEST_COST, pow_difficulty=4), clock=clock
    )
    accounts.clock = clock  # type: ignore[attr-defined]
    yield accounts
    db.close()


def registered(service: AccountService, name: str = "alice") -> None:
    challenge = service.challenge()
    service.register(name, "a long enough password", challenge.text, solve(challenge.text, 4))


def test_registering_twice_with_one_challenge_or_one_name_is_refused(service):
    challenge = service.challenge()
    answer = solve(challenge.text, 4)
    service.register("alice", "a long enough password", challenge.text, answer)
    with pytest.raises(ChallengeReplayed):
        service.register("bob", "a long enough password", challenge.text, answer)
    with pytest.raises(UsernameTaken):
        registered(service, "alice")


def test_tokens_expire_and_logout_everywhere_revokes_older_ones(service):
    registered(service)
    issued = service.login("alice", "a long enough password", ttl_s=60)
    assert service.authenticate(issued.token, Scope.USER).username == "alice"
    service.clock.now += 61
    with pytest.raises(TokenExpired):
        service.authenticate(issued.token, Scope.USER)
    fresh = service.login("alice", "a long enough password")
    service.logout_everywhere("alice")
    with pytest.raises(TokenRevoked):
        service.authenticate(fresh.token, Scope.USER)
    assert service.tokens_of("alice") == []


def test_wrong_passwords_and_scopes_are_refused_at_login(service):
    registered(service)
    with pytest.raises(BadCredentials):
        service.login("alice", "not the password")
    with pytest.raises(BadCredentials):
        service.login("nobody", "not the password")
    with pytest.raises(NotAdmin):
        service.login("alice", "a long enough password", scope=Scope.ADMIN)
    with pytest.raises(WrongScope):
        service.login("alice", "a long enough password", scope=Scope.GPU_HOST)


def test_accounts_tokens_and_revocations_survive_a_restart(tmp_path):
    path = tmp_path / "db.sqlite3"
    db = open_database(path)
    create_admin(db, "root", "correct horse battery", cost=FAST_TEST_COST)
    db.close()
    first = AccountService.open(path, NODE, AccountSettings(password_cost=FAST_TEST_COST))
    kept = first.login("root", "correct horse battery", scope=Scope.ADMIN)
    dropped = first.login("root", "correct horse battery", scope=Scope.ADMIN)
    first.logout(dropped.claims)
    first.close()
    second = AccountService.open(path, NODE, AccountSettings(password_cost=FAST_TEST_COST))
    try:
        assert second.get("root").is_admin
        assert second.authenticate(kept.token, Scope.ADMIN).username == "root"
        with pytest.raises(TokenRevoked):
            second.authenticate(dropped.token, Scope.ADMIN)
    finally:
        second.close()


def test_create_admin_refuses_a_taken_name_and_a_weak_password(tmp_path):
    db = open_database(tmp_path / "db.sqlite3")
    try:
        create_admin(db, "root", "correct horse battery", cost=FAST_TEST_COST)
        with pytest.raises(UsernameTaken):
            create_admin(db, "root", "correct horse battery", cost=FAST_TEST_COST)
        with pytest.raises(InvalidPassword):
            create_admin(db, "root2", "short", cost=FAST_TEST_COST)
    finally:
        db.close()
