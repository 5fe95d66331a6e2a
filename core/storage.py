"""What the domain asks of a partition's key-value store, as types. The RocksDB stores in
`tables/` provide it; core never imports them (a store is passed in, or its methods).

Keys and values are text; a scan yields `(key, value)` in key order."""

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

ReadMany = Callable[[Sequence[str]], list[str | None]]  # values of keys, None where absent
Scan = Callable[[str], Iterator[tuple[str, str]]]  # (prefix) -> its keys in order
ScanFrom = Callable[[str, str | None], Iterator[tuple[str, str]]]  # (prefix, first key or None)


class ReadStore(Protocol):
    """A partition's store, read only: what queries use."""

    def get(self, key: str) -> str | None: ...

    def get_many(self, keys: Sequence[str]) -> list[str | None]: ...

    def scan(self, prefix: str, first_key: str | None = None) -> Iterator[tuple[str, str]]: ...

    def last_key(self, prefix: str) -> str | None: ...
