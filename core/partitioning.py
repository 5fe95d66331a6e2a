"""Kafka's default partitioner (murmur2 of the key), fast enough for once per order.

aiokafka's pure-Python murmur2 masks after every step and indexes byte by byte: about 5 %
of the worker's time went there (the owner of every order number, and the partition of
every keyed output record). This one reads 4-byte words with `struct` and masks only
where a product can overflow 32 bits; `tests/unit/test_partitioning.py` checks it against
aiokafka's on random keys.
"""

import random
import struct
from collections.abc import Sequence

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_WORDS = struct.Struct("<I").iter_unpack


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (the Java client's `Utils.murmur2`), as an unsigned 32-bit int."""
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    for (k,) in _WORDS(data[:body]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[body + 2] << 16
        if extra >= 2:
            h ^= data[body + 1] << 8
        h = ((h ^ data[body]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` among `partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def default_partitioner(key: bytes | None, all_partitions: Sequence[int],
                        available: Sequence[int]) -> int:
    """aiokafka's `DefaultPartitioner`, with this module's murmur2."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[key_partition(key, len(all_partitions))]
