"""Ranking saved replies for a query typed by an agent."""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

from inbox_kit.errors import InvalidArgument

from replies_service.domain.model import CollectionKind, SavedReply

QUERY_MAX = 200


class Match(IntEnum):
    """Lower is better; the order is the ranking's first key."""

    SHORTCUT_EXACT = 1
    SHORTCUT_PREFIX = 2
    TITLE = 3
    BODY = 4
    ALL = 5


@dataclass(frozen=True)
class Query:
    words: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str) -> Query:
        if len(raw) > QUERY_MAX:
            raise InvalidArgument("query", f"must be at most {QUERY_MAX} characters")
        text = raw.strip().lower()
        if text.startswith("/"):
            text = text[1:]
        return cls(tuple(text.split()))


@dataclass(frozen=True)
class Searchable:
    """A reply with the lower-cased text search needs, computed once at index load."""

    reply: SavedReply
    title_lc: str
    text_lc: str  # title + body
    reply_id: str  # = reply.reply_id (one attribute lookup less in the hot loops)

    @classmethod
    def of(cls, reply: SavedReply) -> Searchable:
        title = reply.title.lower()
        return cls(reply, title, f"{title}\n{reply.body.lower()}", reply.reply_id)


def match(item: Searchable, query: Query, shadowed: frozenset[str]) -> Match | None:
    if not query.words:
        return Match.ALL
    shortcut = item.reply.shortcut
    if len(query.words) == 1 and shortcut and shortcut not in shadowed:
        word = query.words[0]
        if shortcut == word:
            return Match.SHORTCUT_EXACT
        if shortcut.startswith(word):
            return Match.SHORTCUT_PREFIX
    if all(w in item.title_lc for w in query.words):
        return Match.TITLE
    if all(w in item.text_lc for w in query.words):
        return Match.BODY
    return None


def rank(
    candidates: Iterable[Searchable], query: Query, usage: Mapping[str, int]
) -> list[tuple[Searchable, Match]]:
    """Matches best first: match kind, then usage count (desc), then title, then id.

    A personal shortcut shadows the same shared shortcut for its owner: the shared reply then
    only matches by title/body.
    """
    items = list(candidates)
    shadowed = frozenset(
        i.reply.shortcut
        for i in items
        if i.reply.shortcut and i.reply.collection_kind is CollectionKind.PERSONAL
    )
    hits: list[tuple[Searchable, Match]] = []
    for item in items:
        shadow = shadowed if item.reply.collection_kind is CollectionKind.SHARED else frozenset()
        kind = match(item, query, shadow)
        if kind is not None:
            hits.append((item, kind))
    hits.sort(
        key=lambda h: (h[1], -usage.get(h[0].reply.reply_id, 0), h[0].title_lc, h[0].reply.reply_id)
    )
    return hits


@dataclass(frozen=True)
class CollectionEntries:
    """One collection's replies, prepared for fast search (built when the index loads)."""

    kind: CollectionKind
    items: tuple[Searchable, ...]
    by_shortcut: tuple[tuple[str, Searchable], ...]  # sorted by shortcut
    shortcuts: frozenset[str]

    @classmethod
    def of(cls, kind: CollectionKind, items: Iterable[Searchable]) -> CollectionEntries:
        listed = tuple(items)
        by_shortcut = tuple(
            sorted(((i.reply.shortcut, i) for i in listed if i.reply.shortcut), key=_first)
        )
        return cls(kind, listed, by_shortcut, frozenset(s for s, _ in by_shortcut))


def _first(pair: tuple[str, Searchable]) -> str:
    return pair[0]


def top_matches(
    groups: Sequence[CollectionEntries], query: Query, usage: Mapping[str, int], limit: int
) -> tuple[list[tuple[Searchable, Match]], int]:
    """The ``limit`` best hits (same order as ``rank``) and the total number of hits.

    Same semantics as ``rank`` but built for the hot path: shortcut prefixes by bisection,
    substring tests in tight loops, and only the needed top of each tier is sorted.
    """

    get = usage.get

    def order(item: Searchable) -> tuple[int, str, str]:
        return (-get(item.reply_id, 0), item.title_lc, item.reply_id)

    tiers: list[tuple[Match, list[Searchable]]] = []
    if not query.words:
        everything = [i for g in groups for i in g.items]
        tiers.append((Match.ALL, everything))
    else:
        shadowed: frozenset[str] = frozenset().union(
            *(g.shortcuts for g in groups if g.kind is CollectionKind.PERSONAL)
        )
        exact: list[Searchable] = []
        prefix: list[Searchable] = []
        by_shortcut: set[int] = set()
        if len(query.words) == 1:
            word = query.words[0]
            for g in groups:
                shadow = shadowed if g.kind is CollectionKind.SHARED else frozenset()
                pos = bisect_left(g.by_shortcut, word, key=_first)
                while pos < len(g.by_shortcut) and g.by_shortcut[pos][0].startswith(word):
                    shortcut, item = g.by_shortcut[pos]
                    pos += 1
                    if shortcut in shadow:
                        continue
                    (exact if shortcut == word else prefix).append(item)
                    by_shortcut.add(id(item))
        title: list[Searchable] = []
        body: list[Searchable] = []
        words = query.words
        # comprehensions over each collection (no per-item Python calls): the scan of every
        # visible reply is the bulk of a search's CPU
        found: list[Searchable] = []
        if len(words) == 1:
            w = words[0]
            for g in groups:
                found += [i for i in g.items if w in i.text_lc]
            if by_shortcut:
                found = [i for i in found if id(i) not in by_shortcut]
            title = [i for i in found if w in i.title_lc]
            body = [i for i in found if w not in i.title_lc]
        else:
            first, rest = words[0], words[1:]
            for g in groups:
                found += [
                    i for i in g.items if first in i.text_lc and all(x in i.text_lc for x in rest)
                ]
            for i in found:
                (title if all(x in i.title_lc for x in words) else body).append(i)
        tiers += [
            (Match.SHORTCUT_EXACT, exact),
            (Match.SHORTCUT_PREFIX, prefix),
            (Match.TITLE, title),
            (Match.BODY, body),
        ]
    hits: list[tuple[Searchable, Match]] = []
    total = 0
    for kind, items in tiers:
        total += len(items)
        need = limit - len(hits)
        if need > 0 and items:
            best = heapq.nsmallest(need, items, key=order)
            hits.extend((item, kind) for item in best)
    return hits, total
