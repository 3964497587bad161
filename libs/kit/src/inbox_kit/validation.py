"""Request vocabulary every service shares: ids, page sizes and page tokens.

- **Ids** (``require_id`` / ``optional_id``): 1..``MAX_ID_LENGTH`` characters, not only
  whitespace, no control characters (U+0000-U+001F, U+007F).
- **Page sizes** (``page_size``): 0 means the RPC's default; 1..maximum is taken as is;
  negative or above the maximum → ``INVALID_ARGUMENT`` naming ``page_size``.
- **Page tokens** (``PageTokens``): opaque to clients (pass back ``next_page_token``
  unchanged, with the same request otherwise). At most ``MAX_PAGE_TOKEN_LENGTH`` characters
  of URL-safe base64, bound to the RPC that issued them, strictly parsed without recursion;
  anything else → ``INVALID_ARGUMENT`` naming ``page_token`` (reason ``PAGE_TOKEN_INVALID``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from inbox_kit.errors import InvalidArgument

MAX_ID_LENGTH = 256
MAX_PAGE_TOKEN_LENGTH = 4096
#: Offsets in tokens: nine decimal digits at most.
MAX_OFFSET = 999_999_999

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_OFFSET = re.compile(r"[0-9]{1,9}")
_TOKEN_VERSION = "1"


def id_problem(value: str, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` is not an id, or None when it is one."""
    if not value.strip():
        return "is required"
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def require_id(field: str, value: str, *, max_length: int = MAX_ID_LENGTH) -> str:
    problem = id_problem(value, max_length)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


def optional_id(field: str, value: str, *, max_length: int = MAX_ID_LENGTH) -> str:
    """``value`` if empty (not given) or a valid id."""
    return require_id(field, value, max_length=max_length) if value else value


def require_ids(
    field: str, values: Iterable[str], *, max_count: int, min_count: int = 0
) -> list[str]:
    """A list of ids, each valid (``field[i]`` names the bad one), at most ``max_count``."""
    ids = list(values)
    if len(ids) < min_count:
        raise InvalidArgument(field, f"must list at least {min_count} id(s)")
    if len(ids) > max_count:
        raise InvalidArgument(field, f"at most {max_count} ids per call")
    for i, value in enumerate(ids):
        require_id(f"{field}[{i}]", value)
    return ids


def page_size(requested: int, *, default: int, maximum: int) -> int:
    if requested < 0 or requested > maximum:
        raise InvalidArgument("page_size", f"must be between 0 and {maximum} (0: {default})")
    return requested or default


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(part: str) -> str:
    padded = part + "=" * (-len(part) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True).decode()


@dataclass(frozen=True)
class PageCursor:
    """The decoded position of a page token: the fields its RPC wrote, as text."""

    fields: tuple[str, ...]

    def text(self, index: int) -> str:
        return self.fields[index]

    def offset(self, index: int) -> int:
        value = self.fields[index]
        if not _OFFSET.fullmatch(value):
            raise _bad_token()
        return int(value)


def _bad_token() -> InvalidArgument:
    return InvalidArgument(
        "page_token",
        "not a page token issued by this RPC (pass back next_page_token unchanged)",
        reason="PAGE_TOKEN_INVALID",
    )


@dataclass(frozen=True)
class PageTokens:
    """Page tokens of one RPC (``scope``, e.g. ``"routing.audit"``) with ``arity`` fields."""

    scope: str
    arity: int

    def encode(self, fields: Sequence[str | int]) -> str:
        if len(fields) != self.arity:
            raise ValueError(f"{self.scope} tokens carry {self.arity} fields")
        parts = [_TOKEN_VERSION, self.scope, *(str(f) for f in fields)]
        token = ".".join(_b64(p) for p in parts)
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            raise ValueError(f"{self.scope} token longer than {MAX_PAGE_TOKEN_LENGTH}")
        return token

    def decode(self, token: str) -> PageCursor | None:
        """None for an empty token (the first page); ``INVALID_ARGUMENT`` unless ours."""
        if not token:
            return None
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            raise _bad_token()
        parts = token.split(".")
        if len(parts) != self.arity + 2 or not all(_TOKEN_ALPHABET.fullmatch(p) for p in parts):
            raise _bad_token()
        try:
            version, scope, *fields = (_unb64(p) for p in parts)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise _bad_token() from None
        if version != _TOKEN_VERSION or scope != self.scope:
            raise _bad_token()
        return PageCursor(tuple(fields))
