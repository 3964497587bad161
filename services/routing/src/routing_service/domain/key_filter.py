"""A Bloom filter of conversation keys: "may this conversation have a snapshot?" (pure).

The owner asks it before reading a snapshot for a conversation it does not hold: "no" is
certain (a new conversation costs no read), "maybe" costs one exact-``_id`` read. Keys are
added before their snapshot is written, so a crash can only leave a false "maybe".
"""

from __future__ import annotations

import hashlib

#: 2**21 bits (256 KiB) per partition, 7 hashes: ~1 % false "maybe" at 200,000 keys.
DEFAULT_BITS = 1 << 21
HASHES = 7


class KeyFilter:
    def __init__(self, data: bytes | None = None, *, bits: int = DEFAULT_BITS) -> None:
        self._bits = bytearray(data) if data else bytearray(bits // 8)
        self._size = len(self._bits) * 8

    def _positions(self, key: str) -> list[int]:
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        h1, h2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") | 1
        return [(h1 + i * h2) % self._size for i in range(HASHES)]

    def __contains__(self, key: str) -> bool:
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

    def add(self, key: str) -> bool:
        """Add ``key``; False if it was (maybe) there already."""
        if key in self:
            return False
        for p in self._positions(key):
            self._bits[p >> 3] |= 1 << (p & 7)
        return True

    def to_bytes(self) -> bytes:
        return bytes(self._bits)
