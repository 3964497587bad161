"""Ranking saved replies for a query typed by an agent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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

    @classmethod
    def of(cls, reply: SavedReply) -> Searchable:
        title = reply.title.lower()
        return cls(reply, title, f"{title}\n{reply.body.lower()}")


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
