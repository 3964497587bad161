"""Attribute definitions of an org and the validation of attribute values. Pure; no I/O.

An org's definitions are one ordered, versioned aggregate (``Definitions``): every change
(create, update, delete, reorder) yields a new ``Definitions`` with ``version + 1``. The
repository makes sure only one change can claim a given version, which is how concurrent admins
are kept from clobbering each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from inbox_kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_LABEL = 100
MAX_OPTIONS = 200
MAX_OPTION_LENGTH = 100
MAX_ATTRIBUTES = 200
MAX_TEXT = 4000

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9 ()\-.]{3,32}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Value = str | float | bool


class AttributeType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    EMAIL = "email"
    PHONE = "phone"
    URL = "url"
    DATE = "date"
    BOOLEAN = "boolean"
    LIST = "list"


class InvalidValue(ValueError):
    """A value does not fit its attribute's type."""


@dataclass(frozen=True)
class AttributeDefinition:
    key: str
    label: str
    type: AttributeType
    options: tuple[str, ...] = ()
    enabled: bool = True
    built_in: bool = False


BUILT_INS: tuple[AttributeDefinition, ...] = (
    AttributeDefinition("name", "Name", AttributeType.TEXT, built_in=True),
    AttributeDefinition("phone", "Phone", AttributeType.PHONE, built_in=True),
    AttributeDefinition("email", "Email", AttributeType.EMAIL, built_in=True),
    AttributeDefinition("account_number", "Account number", AttributeType.TEXT, built_in=True),
    AttributeDefinition("language", "Language", AttributeType.TEXT, built_in=True),
    AttributeDefinition("membership", "Membership", AttributeType.TEXT, built_in=True),
)


def validate_key(key: str, field: str = "key") -> str:
    if not KEY_PATTERN.match(key):
        raise InvalidArgument(field, f"must match {KEY_PATTERN.pattern}")
    return key


def validate_label(label: str, field: str = "label") -> str:
    label = label.strip()
    if not label or len(label) > MAX_LABEL:
        raise InvalidArgument(field, f"must be 1..{MAX_LABEL} characters (not blank)")
    return label


def validate_options(
    type_: AttributeType, options: Sequence[str], field: str = "options"
) -> tuple[str, ...]:
    cleaned = tuple(o.strip() for o in options)
    if type_ is not AttributeType.LIST:
        if cleaned:
            raise InvalidArgument(field, "only list attributes have options")
        return ()
    if not cleaned:
        raise InvalidArgument(field, "a list attribute needs at least one option")
    if len(cleaned) > MAX_OPTIONS:
        raise InvalidArgument(field, f"at most {MAX_OPTIONS} options")
    if any(not o or len(o) > MAX_OPTION_LENGTH for o in cleaned):
        raise InvalidArgument(field, f"each option must be 1..{MAX_OPTION_LENGTH} characters")
    if len(set(cleaned)) != len(cleaned):
        raise InvalidArgument(field, "options must be unique")
    return cleaned


@dataclass(frozen=True)
class Definitions:
    """The org's attribute definitions, in the admin's order, at one version."""

    org_id: str
    version: int
    items: tuple[AttributeDefinition, ...]

    @classmethod
    def initial(cls, org_id: str) -> Definitions:
        """What every org starts with (version 0): the built-ins, enabled."""
        return cls(org_id, 0, BUILT_INS)

    def get(self, key: str) -> AttributeDefinition | None:
        for item in self.items:
            if item.key == key:
                return item
        return None

    def by_key(self) -> dict[str, AttributeDefinition]:
        return {d.key: d for d in self.items}

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.items]

    def enabled(self) -> list[AttributeDefinition]:
        return [d for d in self.items if d.enabled]

    def _next(self, items: Iterable[AttributeDefinition]) -> Definitions:
        return Definitions(self.org_id, self.version + 1, tuple(items))

    def _require(self, key: str) -> AttributeDefinition:
        found = self.get(key)
        if found is None:
            raise NotFound(f"attribute {key!r} does not exist", reason="ATTRIBUTE_NOT_FOUND")
        return found

    # -- changes (each returns the next version) ----------------------------------------------

    def create(self, definition: AttributeDefinition) -> Definitions:
        if self.get(definition.key) is not None:
            raise AlreadyExists(
                f"attribute {definition.key!r} already exists", reason="ATTRIBUTE_EXISTS"
            )
        if len(self.items) >= MAX_ATTRIBUTES:
            raise FailedPrecondition(
                f"an org has at most {MAX_ATTRIBUTES} attributes", reason="ATTRIBUTE_LIMIT"
            )
        return self._next((*self.items, replace(definition, built_in=False)))

    def update(
        self,
        key: str,
        *,
        label: str | None = None,
        enabled: bool | None = None,
        options: Sequence[str] | None = None,
    ) -> Definitions:
        current = self._require(key)
        changed = current
        if label is not None:
            changed = replace(changed, label=validate_label(label))
        if enabled is not None:
            changed = replace(changed, enabled=enabled)
        if options is not None:
            changed = replace(changed, options=validate_options(current.type, options))
        return self._next(changed if d.key == key else d for d in self.items)

    def delete(self, key: str) -> Definitions:
        current = self._require(key)
        if current.built_in:
            raise FailedPrecondition(
                f"built-in attribute {key!r} cannot be deleted; disable it instead",
                reason="ATTRIBUTE_BUILT_IN",
            )
        return self._next(d for d in self.items if d.key != key)

    def reorder(self, keys: Sequence[str]) -> Definitions:
        if len(set(keys)) != len(keys):
            raise InvalidArgument("keys", "each key must appear exactly once")
        if set(keys) != set(self.keys):
            missing = sorted(set(self.keys) - set(keys))
            unknown = sorted(set(keys) - set(self.keys))
            raise InvalidArgument(
                "keys",
                f"must list every attribute exactly once (missing {missing}, unknown {unknown})",
            )
        index = self.by_key()
        return self._next(index[k] for k in keys)


# -- values --------------------------------------------------------------------------------


def validate_value(definition: AttributeDefinition, raw: Any) -> Value:
    """Check ``raw`` (a JSON value) against the attribute's type; return the stored value."""
    t = definition.type
    if t is AttributeType.BOOLEAN:
        if not isinstance(raw, bool):
            raise InvalidValue(f"{definition.key}: expected a boolean, got {_kind(raw)}")
        return raw
    if t is AttributeType.NUMBER:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidValue(f"{definition.key}: expected a number, got {_kind(raw)}")
        number = float(raw)
        if not math.isfinite(number):
            raise InvalidValue(f"{definition.key}: number must be finite")
        return number
    if not isinstance(raw, str):
        raise InvalidValue(f"{definition.key}: expected a string, got {_kind(raw)}")
    text = raw.strip()
    if not text:
        raise InvalidValue(f"{definition.key}: empty string (send null to clear)")
    if len(text) > MAX_TEXT:
        raise InvalidValue(f"{definition.key}: longer than {MAX_TEXT} characters")
    if t is AttributeType.EMAIL and not _EMAIL.match(text):
        raise InvalidValue(f"{definition.key}: not an e-mail address")
    if t is AttributeType.PHONE and (not _PHONE.match(text) or sum(c.isdigit() for c in text) < 3):
        raise InvalidValue(f"{definition.key}: not a phone number")
    if t is AttributeType.URL:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in text:
            raise InvalidValue(f"{definition.key}: not an absolute http(s) URL")
    if t is AttributeType.DATE:
        try:
            if not _DATE.match(text):
                raise ValueError
            date.fromisoformat(text)
        except ValueError:
            raise InvalidValue(f"{definition.key}: not a date (YYYY-MM-DD)") from None
    if t is AttributeType.LIST and text not in definition.options:
        raise InvalidValue(f"{definition.key}: {text!r} is not one of the options")
    return text


def fits(definition: AttributeDefinition, value: Value) -> bool:
    """Whether a stored value still has the attribute's kind (a key may be re-created)."""
    if definition.type is AttributeType.BOOLEAN:
        return isinstance(value, bool)
    if definition.type is AttributeType.NUMBER:
        return isinstance(value, float | int) and not isinstance(value, bool)
    return isinstance(value, str)


def display(value: Value) -> str:
    """The value as text, ready to show or to fill a template."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | int):
        number = float(value)
        if number.is_integer() and abs(number) < 1e15:
            return str(int(number))
        return repr(number)
    return value


def _kind(raw: Any) -> str:
    if raw is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string"}.get(
        type(raw), type(raw).__name__
    )
