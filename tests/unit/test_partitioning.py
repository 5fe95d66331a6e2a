"""core.partitioning against aiokafka's reference murmur2 and partitioner."""

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as reference

from core.partitioning import default_partitioner, key_partition, murmur2


def test_murmur2_equals_aiokafkas_for_every_length_and_random_bytes():
    rng = random.Random(7)
    keys = [b"", b"a", b"ab", b"abc", b"abcd", "Zoë".encode(), b"2000020026",
            b'["Ana","Ruiz"]']
    keys += [rng.randbytes(rng.randrange(0, 40)) for _ in range(2_000)]
    for key in keys:
        assert murmur2(key) == reference(key), key


def test_partitions_match_kafkas_default_partitioner():
    rng = random.Random(11)
    partitions = list(range(6))
    for _ in range(500):
        key = str(rng.randrange(10**12)).encode()
        expected = DefaultPartitioner()(key, partitions, partitions)
        assert key_partition(key, 6) == expected
        assert default_partitioner(key, partitions, partitions) == expected


def test_a_record_without_key_goes_to_an_available_partition():
    assert default_partitioner(None, [0, 1, 2, 3], [2]) == 2
    assert default_partitioner(None, [0, 1], []) in (0, 1)
