"""Ranking saved replies for a query typed by an agent."""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


TEXT_MEMO_MAX = 256  # distinct queries remembered per collection (per usage version)


@dataclass(frozen=True)
class CollectionEntries:
    """One collection's replies, prepared for fast search (built when the index loads).

    ``text_hits`` memoizes, per query, the collection's title and body matches already sorted
    by the ranking's tie-breakers, so a repeated query (typeahead: the same prefixes from
    many agents) costs a merge of short sorted runs instead of a substring scan of every
    visible reply. The memo belongs to one ``usage`` mapping and starts over when it changes.
    """

    kind: CollectionKind
    items: tuple[Searchable, ...]
    by_shortcut: tuple[tuple[str, Searchable], ...]  # sorted by shortcut
    shortcuts: frozenset[str]
    _memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, kind: CollectionKind, items: Iterable[Searchable]) -> CollectionEntries:
        listed = tuple(items)
        by_shortcut = tuple(
            sorted(((i.reply.shortcut, i) for i in listed if i.reply.shortcut), key=_first)
        )
        return cls(kind, listed, by_shortcut, frozenset(s for s, _ in by_shortcut))

    def text_hits(
        self, words: tuple[str, ...], usage: Mapping[str, int], order: Callable[[Searchable], Key]
    ) -> tuple[list[Searchable], list[Searchable]]:
        """(title matches, body-only matches) of ``words``, each sorted by ``order``.

        With no words, every reply counts as a "title" match.
        """
        memo = self._memo
        if memo.get(_USAGE) is not usage:
            memo.clear()
            memo[_USAGE] = usage
        hit = memo.get(words)
        if hit is None:
            if not words:
                title, body = sorted(self.items, key=order), []
            else:
                first, rest = words[0], words[1:]
                found = [
                    i
                    for i in self.items
                    if first in i.text_lc and all(x in i.text_lc for x in rest)
                ]
                found.sort(key=order)
                title = [i for i in found if all(x in i.title_lc for x in words)]
                body = [i for i in found if not all(x in i.title_lc for x in words)]
            if len(memo) > TEXT_MEMO_MAX:
                memo.clear()
                memo[_USAGE] = usage
            hit = memo[words] = (title, body)
        return hit  # type: ignore[return-value]


_USAGE = object()  # memo key of the usage mapping the memo was built for
Key = tuple[int, str, str]


def _first(pair: tuple[str, Searchable]) -> str:
    return pair[0]


def _take(
    runs: list[list[Searchable]],
    order: Callable[[Searchable], Key],
    need: int,
    skip: set[int],
) -> list[Searchable]:
    """The ``need`` first items of the merged sorted ``runs``, leaving out ids in ``skip``."""
    runs = [r for r in runs if r]
    if need <= 0 or not runs:
        return []
    if len(runs) == 1:
        merged: Iterable[Searchable] = runs[0]
    else:
        merged = heapq.merge(*runs, key=order)
    out: list[Searchable] = []
    for item in merged:
        if skip and id(item) in skip:
            continue
        out.append(item)
        if len(out) == need:
            break
    return out


def top_matches(
    groups: Sequence[CollectionEntries], query: Query, usage: Mapping[str, int], limit: int
) -> tuple[list[tuple[Searchable, Match]], int]:
    """The ``limit`` best hits (same order as ``rank``) and the total number of hits.

    Same semantics as ``rank`` but built for the hot path: shortcut prefixes by bisection,
    per-collection memoized text matches pre-sorted by the tie-breakers (see
    ``CollectionEntries.text_hits``), merged only as far as the page needs.
    """
    get = usage.get

    def order(item: Searchable) -> Key:
        return (-get(item.reply_id, 0), item.title_lc, item.reply_id)

    words = query.words
    titles: list[list[Searchable]] = []
    bodies: list[list[Searchable]] = []
    for g in groups:
        title, body = g.text_hits(words, usage, order)
        titles.append(title)
        bodies.append(body)
    if not words:
        best = _take(titles, order, limit, set())
        return [(i, Match.ALL) for i in best], sum(len(t) for t in titles)
    exact: list[Searchable] = []
    prefix: list[Searchable] = []
    by_shortcut: set[int] = set()
    overlap = 0  # shortcut hits that the text tiers also contain (counted once)
    if len(words) == 1:
        word = words[0]
        shadowed: frozenset[str] = frozenset().union(
            *(g.shortcuts for g in groups if g.kind is CollectionKind.PERSONAL)
        )
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
                if word in item.text_lc:
                    overlap += 1
    total = (
        len(exact)
        + len(prefix)
        + sum(len(t) for t in titles)
        + sum(len(b) for b in bodies)
        - overlap
    )
    hits: list[tuple[Searchable, Match]] = []
    for kind, items in ((Match.SHORTCUT_EXACT, exact), (Match.SHORTCUT_PREFIX, prefix)):
        need = limit - len(hits)
        if need > 0 and items:
            hits.extend((i, kind) for i in heapq.nsmallest(need, items, key=order))
    for kind, runs in ((Match.TITLE, titles), (Match.BODY, bodies)):
        hits.extend((i, kind) for i in _take(runs, order, limit - len(hits), by_shortcut))
    return hits, total
