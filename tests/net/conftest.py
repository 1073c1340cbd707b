"""Fixtures for the peer-link tests: three fixed identities."""

from __future__ import annotations

import pytest
from net_support import identity

from lightbox_node.identity import Identity


@pytest.fixture
def alice() -> Identity:
    return identity("alice")


@pytest.fixture
def bob() -> Identity:
    return identity("bob")


@pytest.fixture
def mallory() -> Identity:
    return identity("mallory")
