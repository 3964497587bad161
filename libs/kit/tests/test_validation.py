"""Unit tests: the shared request vocabulary (ids, page sizes, page tokens)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st
from inbox_kit.errors import InvalidArgument
from inbox_kit.validation import (
    MAX_ID_LENGTH,
    MAX_PAGE_TOKEN_LENGTH,
    PageTokens,
    optional_id,
    page_size,
    require_id,
    require_ids,
)

AUDIT = PageTokens("test.audit", 1)
LIST = PageTokens("test.list", 2)


@pytest.mark.parametrize("value", ["", "   ", "x" * (MAX_ID_LENGTH + 1), "a\x1fb", "a\x00", "\x7f"])
def test_bad_ids_name_their_field(value: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        require_id("session_id", value)
    assert bad.value.field == "session_id"


def test_good_ids_and_lists() -> None:
    assert require_id("x", "agent-ünï 1") == "agent-ünï 1"
    assert optional_id("x", "") == ""
    with pytest.raises(InvalidArgument) as bad:
        require_ids("agent_ids", ["a", ""], max_count=5)
    assert bad.value.field == "agent_ids[1]"
    with pytest.raises(InvalidArgument):
        require_ids("agent_ids", [], max_count=5, min_count=1)
    with pytest.raises(InvalidArgument):
        require_ids("agent_ids", ["a"] * 6, max_count=5)


def test_page_sizes() -> None:
    assert page_size(0, default=50, maximum=100) == 50
    assert page_size(100, default=50, maximum=100) == 100
    for bad in (-1, 101):
        with pytest.raises(InvalidArgument) as failure:
            page_size(bad, default=50, maximum=100)
        assert failure.value.field == "page_size"


@given(st.text(max_size=300), st.text(max_size=300))
def test_tokens_round_trip(title: str, reply_id: str) -> None:
    cursor = LIST.decode(LIST.encode([title, reply_id]))
    assert cursor is not None and (cursor.text(0), cursor.text(1)) == (title, reply_id)


def _rejected(tokens: PageTokens, token: str) -> None:
    with pytest.raises(InvalidArgument) as bad:
        cursor = tokens.decode(token)
        if cursor is not None:
            cursor.offset(0)
    assert bad.value.field == "page_token"
    assert bad.value.reason == "PAGE_TOKEN_INVALID"


@pytest.mark.parametrize(
    "token",
    [
        "²",
        "9" * 5000,
        base64.urlsafe_b64encode(b"[" * 50_000).decode(),
        "x" * (MAX_PAGE_TOKEN_LENGTH + 1),
        LIST.encode(["a", "b"]),  # another RPC's token
        AUDIT.encode(["not-a-number"]),
        AUDIT.encode(["1" * 10]),  # offsets have at most nine digits
        AUDIT.encode([5]) + "=",
        "..",
        "a.b.c",
    ],
)
def test_malformed_tokens_are_invalid_arguments_naming_page_token(token: str) -> None:
    _rejected(AUDIT, token)


@given(st.text(max_size=5000))
def test_any_text_is_a_cursor_or_an_invalid_argument(token: str) -> None:
    try:
        cursor = AUDIT.decode(token)
        if cursor is not None:
            assert 0 <= cursor.offset(0) <= 999_999_999
    except InvalidArgument as exc:
        assert exc.field == "page_token"
