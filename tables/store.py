"""One partition's RocksDB database (rocksdict), written once per batch.

Keys and values are UTF-8 text (JSON values), so a batch of updates is one
`dict[str, str | None]` (None deletes) that goes as is into the changelog.
The store also remembers the offset of the last changelog record it reflects,
written in the same `WriteBatch` as the updates. A store may keep keys derived from the
others (`Derived`: an index), written in the same batch and never in the changelog, so a
restore from the changelog derives them again, key by key.
"""

import shutil
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from itertools import islice
from pathlib import Path
from typing import Protocol, cast

from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

CHANGELOG_OFFSET_KEY = b"~changelog-offset"  # local only, never in the changelog
CHANGELOG_EPOCH_KEY = b"~changelog-epoch"  # the latest fence its changelog offset follows
Updates = Mapping[str, str | None]
ReadMany = Callable[[Sequence[str]], list[str | None]]
DERIVED_KEY = b"~derived"  # local: `<version>@<changelog offset>` the derived keys reflect
REDERIVE_CHUNK = 10_000  # keys derived anew per write batch


# Every store of the process shares one block cache, and their memtables are charged to
# it: a worker's RocksDB memory stays near CACHE_BYTES however many partitions it holds.
# Index and filter blocks live in the cache too (by default each open table keeps its own,
# which grows with the data); bloom filters spare the dedup's lookups of new order
# numbers a read of every level. 64 MiB, not 128: RSS after 1M orders over 100k buyers
# 554 -> 452 MB (`make bench-state`, memory; BENCHMARKS.md).
CACHE_BYTES = 64 * 1024 * 1024
MEMTABLE_BYTES = 32 * 1024 * 1024
_cache = Cache(CACHE_BYTES)
_write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
    MEMTABLE_BYTES, False, _cache)


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(8 * 1024 * 1024)
    options.set_max_write_buffer_number(2)
    table = BlockBasedOptions()
    table.set_block_cache(_cache)
    table.set_cache_index_and_filter_blocks(True)
    table.set_bloom_filter(10, False)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_manager(_write_buffers)
    return options


class Derived(Protocol):
    """Keys a store derives from its other keys, such as an index, kept in step with them.

    `derive(updates, read)` gives the derived keys' updates for a batch of `updates`, with
    `read` answering the values before the batch. `derived` are the prefixes of every
    derived key, `sources` those of the keys they derive from. A store whose derived keys
    were last written under another `version`, or at another changelog offset than its own
    (written by code without them, or a derivation cut short), has them deleted and
    derived anew on open."""

    @property
    def version(self) -> str: ...

    @property
    def derived(self) -> tuple[str, ...]: ...

    @property
    def sources(self) -> tuple[str, ...]: ...

    def derive(self, updates: Updates, read: ReadMany) -> dict[str, str | None]: ...


class PartitionStore:
    """A RocksDB database holding one partition of one stage's state."""

    def __init__(self, path: Path, derived: Derived | None = None,
                 derive_now: bool = True) -> None:
        """`derived`: keys it derives from the rest; stale ones are derived anew here, or
        with `derive_now` False by the caller, stepping through `derivation()`."""
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), _options())
        self._derived = derived
        if derive_now:
            for _ in self.derivation():
                pass

    @property
    def stale(self) -> bool:
        """True when its derived keys must be derived anew before it is used."""
        derived = self._derived
        return derived is not None and self._db.get(DERIVED_KEY) != self._mark(
            derived, self.changelog_offset)

    @property
    def changelog_offset(self) -> int:
        """Offset of the last changelog record applied, -1 when none."""
        raw = self._db.get(CHANGELOG_OFFSET_KEY)
        return -1 if raw is None else int(raw)

    @property
    def epoch(self) -> int:
        """Offset of the latest changelog fence before `changelog_offset`, -1 when none."""
        raw = self._db.get(CHANGELOG_EPOCH_KEY)
        return -1 if raw is None else int(raw)

    def get(self, key: str) -> str | None:
        """The value of one key."""
        raw = self._db.get(key.encode())
        return None if raw is None else raw.decode()

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Values of many keys in one RocksDB multi-get."""
        if not keys:
            return []
        # rocksdict types __getitem__ as one value; given a list of keys it answers a list
        raws = cast(list[bytes | None], self._db[[k.encode() for k in keys]])
        return [None if raw is None else raw.decode() for raw in raws]

    def scan(self, prefix: str, first_key: str | None = None) -> Iterator[tuple[str, str]]:
        """Keys starting with `prefix` (from `first_key` on, when given), in key order."""
        start = prefix.encode()
        it = self._db.iter()
        it.seek((first_key or prefix).encode())
        while it.valid():
            key = it.key()
            if not key.startswith(start):
                break
            yield key.decode(), it.value().decode()
            it.next()

    def last_key(self, prefix: str) -> str | None:
        """The largest key starting with `prefix`, found with one reverse seek."""
        start = prefix.encode()
        it = self._db.iter()
        it.seek_for_prev(start + b"\xff")
        if it.valid() and it.key().startswith(start):
            return str(it.key().decode())
        return None

    def get_local(self, name: str) -> str | None:
        """A value this store keeps for itself alone (never in the changelog)."""
        raw = self._db.get(b"~" + name.encode())
        return None if raw is None else raw.decode()

    def set_local(self, name: str, value: str) -> None:
        """Keep a value for this store alone: lost with DATA_DIR, never restored."""
        self._db[b"~" + name.encode()] = value.encode()

    def commit(self, updates: Updates, changelog_offset: int, epoch: int = -1) -> None:
        """Apply one batch of updates and the changelog offset (and the epoch of the owner
        that wrote it) they reflect, atomically."""
        batch = WriteBatch(raw_mode=True)
        _put_all(batch, updates)
        if self._derived is not None:
            _put_all(batch, self._derived.derive(updates, self.get_many))
            batch.put(DERIVED_KEY, self._mark(self._derived, changelog_offset))
        batch.put(CHANGELOG_OFFSET_KEY, str(changelog_offset).encode())
        batch.put(CHANGELOG_EPOCH_KEY, str(epoch).encode())
        self._db.write(batch)

    @staticmethod
    def _mark(derived: Derived, changelog_offset: int) -> bytes:
        return f"{derived.version}@{changelog_offset}".encode()

    def derivation(self) -> Generator[None, None, None]:
        """If stale, delete every derived key, then derive them from the source keys, a
        chunk per write batch and step (their old values read as absent, the derived ones
        as written). The mark goes first and comes back last, so a derivation cut short
        (a step not taken) starts over on the next open."""
        derived = self._derived
        if derived is None or not self.stale:
            return
        self._db.delete(DERIVED_KEY)
        for prefix in derived.derived:
            start = prefix.encode()
            self._db.delete_range(start, start[:-1] + bytes([start[-1] + 1]))

        def read(keys: Sequence[str]) -> list[str | None]:
            return [self.get(k) if k.startswith(derived.derived) else None for k in keys]

        for prefix in derived.sources:
            rows = self.scan(prefix)
            while chunk := dict(islice(rows, REDERIVE_CHUNK)):
                self._write_all(derived.derive(chunk, read))
                yield
        self._db[DERIVED_KEY] = self._mark(derived, self.changelog_offset)

    def _write_all(self, updates: Updates) -> None:
        batch = WriteBatch(raw_mode=True)
        _put_all(batch, updates)
        self._db.write(batch)

    def close(self) -> None:
        """Flush and close the database."""
        self._db.close()

    @staticmethod
    def destroy(path: Path) -> None:
        """Delete a closed store's files."""
        shutil.rmtree(path, ignore_errors=True)


def _put_all(batch: WriteBatch, updates: Updates) -> None:
    for key, value in updates.items():
        if value is None:
            batch.delete(key.encode())
        else:
            batch.put(key.encode(), value.encode())


def read_changelog_offset(path: Path) -> int:
    """The changelog offset a store on disk reflects, -1 when it has none; opens it briefly."""
    if not path.exists():
        return -1
    store = PartitionStore(path)
    try:
        return store.changelog_offset
    finally:
        store.close()
