"""Fixtures: one shared API server for the whole directory, fresh accounts per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest

from lightbox_node.accounts import Rate
from lightbox_node.api.settings import UNLIMITED, ApiSettings
from tests.api.harness import ADMIN, ADMIN_PASSWORD, ApiServer, bearer, login, register

_names = itertools.count()

ROOMY = ApiSettings(
    submit_per_account=UNLIMITED,
    submit_per_address=UNLIMITED,
    register_per_address=UNLIMITED,
    login_per_address=UNLIMITED,
    login_per_user=Rate(1000.0, 1000),
    max_active_jobs=50,
    max_image_bytes=200_000,
    max_image_pixels=1024 * 1024,
    max_request_bytes=1_000_000,
)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    api = ApiServer(tmp_path_factory.mktemp("api"), ROOMY).start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


class User:
    """A registered account with a user token."""

    def __init__(self, client: httpx.Client, name: str) -> None:
        response = register(client, name)
        assert response.status_code == 201, response.text
        self.name = name
        self.token = login(client, name)
        self.headers = bearer(self.token)


@pytest.fixture
def user(client: httpx.Client) -> User:
    return User(client, f"user{next(_names)}")


@pytest.fixture
def other_user(client: httpx.Client) -> User:
    return User(client, f"other{next(_names)}")


@pytest.fixture
def admin_headers(client: httpx.Client) -> dict[str, str]:
    return bearer(login(client, ADMIN, ADMIN_PASSWORD, scope="admin"))


def fresh_name(prefix: str = "person") -> str:
    return f"{prefix}{next(_names)}"
