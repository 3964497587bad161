"""Fixtures of the presence tests: an in-process presence service on the real stack."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # presence_test_helpers

from inbox_testing import Infra
from presence_test_helpers import Replicas
from pymongo.asynchronous.database import AsyncDatabase


@pytest.fixture
async def replicas(
    infra: Infra, mongo_db: AsyncDatabase[dict[str, Any]]
) -> AsyncIterator[Replicas]:
    r = Replicas(infra, mongo_db.name)
    yield r
    for runtime in list(r.running):
        await r.stop(runtime)
