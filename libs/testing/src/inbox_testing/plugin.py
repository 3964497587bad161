"""pytest fixtures shared by every test suite of the workspace (registered via ``pytest11``).

- ``infra``: the real Kafka broker and MongoDB-wire database for this test session;
- ``mongo_db``: a fresh database per test, dropped afterwards;
- ``jwt_secret`` / ``make_token``: bearer tokens the services under test accept;
- ``unique``: unique ids, so tests sharing one broker and database never collide;
- ``spans``: the spans finished while the test runs (an in-memory SDK exporter).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from inbox_kit.auth import Role, mint_token
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from inbox_testing.infra import Infra, provide_infra
from inbox_testing.spans import RecordedSpans, recording_spans

TEST_JWT_SECRET = "test-secret-not-for-production-0123456789"


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide_infra() as provided:
        yield provided


@pytest.fixture
async def mongo_db(infra: Infra) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongodb_uri, tz_aware=True)
    name = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
def spans() -> Iterator[RecordedSpans]:
    with recording_spans() as recorder:
        yield recorder


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    return TEST_JWT_SECRET


TokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def make_token(jwt_secret: str) -> TokenFactory:
    def make(
        org_id: str,
        agent_id: str,
        role: Role | str = Role.AGENT,
        teams: tuple[str, ...] = (),
        channels: tuple[str, ...] = (),
        name: str = "",
    ) -> str:
        return mint_token(
            jwt_secret,
            org_id=org_id,
            agent_id=agent_id,
            role=role,
            teams=teams,
            channels=channels,
            name=name,
        )

    return make


@pytest.fixture
def unique() -> Callable[[str], str]:
    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


def bearer(token: str) -> tuple[tuple[str, str]]:
    """gRPC call metadata carrying ``token``."""
    return (("authorization", f"Bearer {token}"),)
