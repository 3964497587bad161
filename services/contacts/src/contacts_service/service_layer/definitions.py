"""Attribute-definition handlers (admin writes, reads) and the per-process definitions cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inbox_kit.auth import Principal
from inbox_kit.errors import Aborted

from contacts_service.domain.attributes import (
    AttributeDefinition,
    AttributeType,
    Definitions,
    validate_key,
    validate_label,
    validate_options,
)
from contacts_service.service_layer.ports import DefinitionsRepository

#: How often a write that did not name a version retries after losing a race.
WRITE_ATTEMPTS = 5


class DefinitionsCache:
    """The org's definitions, cached per process for ``ttl`` seconds.

    Writes made through this process are visible here immediately; writes made by another
    replica become visible within ``ttl`` seconds (``ttl = 0`` reads the store every time).
    Concurrent misses of one org share a single read.
    """

    def __init__(
        self,
        repository: DefinitionsRepository,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, Definitions]] = {}
        self._inflight: dict[str, asyncio.Future[Definitions]] = {}

    async def get(self, org_id: str, *, fresh: bool = False) -> Definitions:
        entry = self._entries.get(org_id)
        if entry is not None and not fresh and self._clock() - entry[0] < self._ttl:
            return entry[1]
        pending = self._inflight.get(org_id)
        if pending is not None and not fresh:
            return await asyncio.shield(pending)
        future: asyncio.Future[Definitions] = asyncio.get_running_loop().create_future()
        self._inflight[org_id] = future
        try:
            definitions = await self._repository.get(org_id)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            if self._inflight.get(org_id) is future:
                del self._inflight[org_id]
        self.put(definitions)
        future.set_result(definitions)
        return definitions

    def put(self, definitions: Definitions) -> None:
        """Remember ``definitions`` unless a newer version is already cached."""
        entry = self._entries.get(definitions.org_id)
        if entry is None or entry[1].version <= definitions.version:
            self._entries[definitions.org_id] = (self._clock(), definitions)


@dataclass
class DefinitionsService:
    repository: DefinitionsRepository
    cache: DefinitionsCache

    async def list(self, principal: Principal) -> Definitions:
        return await self.cache.get(principal.org_id)

    async def create(
        self,
        principal: Principal,
        *,
        key: str,
        label: str,
        type_: AttributeType,
        options: Sequence[str],
        enabled: bool,
    ) -> tuple[Definitions, AttributeDefinition]:
        principal.require_admin()
        definition = AttributeDefinition(
            key=validate_key(key),
            label=validate_label(label),
            type=type_,
            options=validate_options(type_, options),
            enabled=enabled,
        )
        result = await self._change(principal.org_id, lambda d: d.create(definition), None)
        created = result.get(definition.key)
        assert created is not None
        return result, created

    async def update(
        self,
        principal: Principal,
        *,
        key: str,
        label: str | None,
        enabled: bool | None,
        options: Sequence[str] | None,
        expected_version: int,
    ) -> tuple[Definitions, AttributeDefinition]:
        principal.require_admin()
        validate_key(key)
        if label is not None:
            validate_label(label)
        result = await self._change(
            principal.org_id,
            lambda d: d.update(key, label=label, enabled=enabled, options=options),
            expected_version or None,
        )
        updated = result.get(key)
        assert updated is not None
        return result, updated

    async def delete(self, principal: Principal, *, key: str, expected_version: int) -> Definitions:
        principal.require_admin()
        validate_key(key)
        return await self._change(
            principal.org_id, lambda d: d.delete(key), expected_version or None
        )

    async def reorder(
        self, principal: Principal, *, keys: Sequence[str], expected_version: int
    ) -> Definitions:
        principal.require_admin()
        return await self._change(principal.org_id, lambda d: d.reorder(keys), expected_version)

    async def _change(
        self,
        org_id: str,
        change: Callable[[Definitions], Definitions],
        expected_version: int | None,
    ) -> Definitions:
        """Apply ``change`` to the current definitions and claim the next version.

        With an ``expected_version`` (always for reorder) a version mismatch or a lost race is
        refused with ABORTED; without one the change is re-applied to the winner's result.
        """
        strict = expected_version is not None
        for _ in range(WRITE_ATTEMPTS):
            current = await self.repository.get_for_write(org_id)
            if expected_version is not None and current.version != expected_version:
                raise _stale(expected_version, current.version)
            proposed = change(current)
            if await self.repository.commit(proposed):
                self.cache.put(proposed)
                return proposed
            if strict:
                latest = await self.repository.get_for_write(org_id)
                self.cache.put(latest)
                raise _stale(expected_version or 0, latest.version)
        raise Aborted("the attribute definitions are being changed concurrently; try again")


def _stale(expected: int, actual: int) -> Aborted:
    return Aborted(
        f"the attribute definitions changed since you loaded them (you had version {expected}, "
        f"now {actual}); reload the list and try again",
        reason="VERSION_STALE",
    )
