from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from replies_service.domain.model import CollectionKind, SavedReply
from replies_service.domain.search import (
    CollectionEntries,
    Match,
    Query,
    Searchable,
    rank,
    top_matches,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def reply(
    rid: str,
    title: str,
    body: str = "",
    shortcut: str = "",
    kind: CollectionKind = CollectionKind.SHARED,
) -> Searchable:
    return Searchable.of(
        SavedReply(
            reply_id=rid,
            org_id="o",
            collection_id="c",
            collection_kind=kind,
            owner_agent_id="",
            title=title,
            body=body,
            shortcut=shortcut,
            created_by="a",
            created_at=NOW,
            updated_at=NOW,
        )
    )


def test_shortcut_prefix_above_title_above_body() -> None:
    items = [
        reply("body", "Something", body="we issue a refund"),
        reply("title", "Refund policy"),
        reply("prefix", "Money back", shortcut="refund-eu"),
        reply("exact", "Returns", shortcut="ref"),
        reply("none", "Shipping"),
    ]
    hits = rank(items, Query.parse("/ref"), {})
    assert [(h[0].reply.reply_id, h[1]) for h in hits] == [
        ("exact", Match.SHORTCUT_EXACT),
        ("prefix", Match.SHORTCUT_PREFIX),
        ("title", Match.TITLE),
        ("body", Match.BODY),
    ]


def test_usage_breaks_ties() -> None:
    items = [reply("a", "Refund A"), reply("b", "Refund B"), reply("c", "Refund C")]
    hits = rank(items, Query.parse("refund"), {"b": 7, "c": 2})
    assert [h[0].reply.reply_id for h in hits] == ["b", "c", "a"]


def test_multi_word_query_needs_every_word() -> None:
    items = [reply("a", "Refund policy", body="within 30 days"), reply("b", "Refund")]
    assert [h[0].reply.reply_id for h in rank(items, Query.parse("refund days"), {})] == ["a"]


def test_personal_shortcut_shadows_shared_one() -> None:
    items = [
        reply("shared", "Shared thanks", shortcut="thanks"),
        reply("mine", "My thanks", shortcut="thanks", kind=CollectionKind.PERSONAL),
    ]
    hits = rank(items, Query.parse("/thanks"), {"shared": 100})
    assert [(h[0].reply.reply_id, h[1]) for h in hits] == [
        ("mine", Match.SHORTCUT_EXACT),
        ("shared", Match.TITLE),
    ]


@given(
    st.lists(
        st.tuples(st.text("abc ", max_size=8), st.text("abc", max_size=3), st.integers(0, 5)),
        max_size=12,
    ),
    st.text("abc/", max_size=3),
)
def test_ranking_is_sorted_by_match_then_usage(rows: list[tuple[str, str, int]], q: str) -> None:
    items = [reply(f"r{i}", title, shortcut=sc) for i, (title, sc, _) in enumerate(rows)]
    usage = {f"r{i}": u for i, (_, _, u) in enumerate(rows)}
    hits = rank(items, Query.parse(q), usage)
    keys = [(h[1], -usage[h[0].reply.reply_id]) for h in hits]
    assert keys == sorted(keys)
    query = Query.parse(q)
    for item, kind in hits:  # every hit really matches
        if kind in (Match.SHORTCUT_EXACT, Match.SHORTCUT_PREFIX):
            assert item.reply.shortcut.startswith(query.words[0])
        elif kind is Match.TITLE:
            assert all(w in item.title_lc for w in query.words)


@given(
    st.lists(
        st.tuples(
            st.text("ab ", max_size=6),
            st.text("ab", max_size=6),
            st.text("ab", max_size=3),
            st.integers(0, 3),
            st.sampled_from(list(CollectionKind)),
            st.integers(0, 2),
        ),
        max_size=15,
    ),
    st.sampled_from(["", "a", "/ab", "b a", "ab", "/b", "zz"]),
    st.integers(1, 20),
)
def test_fast_top_matches_agrees_with_reference_ranking(
    rows: list[tuple[str, str, str, int, CollectionKind, int]], q: str, limit: int
) -> None:
    items = [
        reply(f"r{i}", title, body=body, shortcut=sc, kind=kind)
        for i, (title, body, sc, _, kind, _) in enumerate(rows)
    ]
    usage = {f"r{i}": row[3] for i, row in enumerate(rows)}
    groups: dict[tuple[CollectionKind, int], list[Searchable]] = {}
    for item, row in zip(items, rows, strict=True):
        groups.setdefault((row[4], row[5]), []).append(item)
    entries = [CollectionEntries.of(kind, its) for (kind, _), its in groups.items()]
    query = Query.parse(q)
    expected = rank(items, query, usage)
    got, total = top_matches(entries, query, usage, limit)
    assert total == len(expected)
    assert [(h[0].reply.reply_id, h[1]) for h in got] == [
        (h[0].reply.reply_id, h[1]) for h in expected[:limit]
    ]


@given(
    st.lists(
        st.tuples(
            st.text("ab ", max_size=6),
            st.text("ab", max_size=6),
            st.text("ab", max_size=3),
            st.integers(0, 3),
            st.integers(0, 3),
            st.sampled_from(list(CollectionKind)),
            st.integers(0, 2),
        ),
        max_size=15,
    ),
    st.lists(st.sampled_from(["", "a", "/ab", "b a", "ab", "/b", "zz", "a b"]), max_size=6),
    st.integers(1, 20),
)
def test_memoized_matches_stay_right_across_queries_and_usage_refreshes(
    rows: list[tuple[str, str, str, int, int, CollectionKind, int]], queries: list[str], limit: int
) -> None:
    items = [
        reply(f"r{i}", title, body=body, shortcut=sc, kind=kind)
        for i, (title, body, sc, _, _, kind, _) in enumerate(rows)
    ]
    groups: dict[tuple[CollectionKind, int], list[Searchable]] = {}
    for item, row in zip(items, rows, strict=True):
        groups.setdefault((row[5], row[6]), []).append(item)
    entries = [CollectionEntries.of(kind, its) for (kind, _), its in groups.items()]
    before = {f"r{i}": row[3] for i, row in enumerate(rows)}
    after = {f"r{i}": row[4] for i, row in enumerate(rows)}  # a refresh: a new mapping
    for usage in (before, after, before):
        for q in [*queries, *queries]:  # repeated: the second run is served by the memo
            query = Query.parse(q)
            expected = rank(items, query, usage)
            got, total = top_matches(entries, query, usage, limit)
            assert total == len(expected)
            assert [(h[0].reply_id, h[1]) for h in got] == [
                (h[0].reply_id, h[1]) for h in expected[:limit]
            ]
