"""Fixtures of the process-level presence tests."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from inbox_testing import Infra
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).parent))  # presence_procs

from presence_procs import Proc


@pytest.fixture
def database(infra: Infra) -> Iterator[str]:
    name = f"test_presence_e2e_{uuid.uuid4().hex[:10]}"
    yield name
    with MongoClient(infra.mongodb_uri) as client:
        client.drop_database(name)


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()
