"""Orders whose times rise with their number (every one on time in its partition), then a
closing order an hour on in each orders partition, so every window before it is final:
the input of the fencing and broker-fault tests."""

import json
from decimal import Decimal

from aiokafka.partitioner import murmur2

T0 = 1_795_514_400_000  # 2026-11-24T10:00:00.000Z
SPACING_MS = 40  # event time per order
BUYERS = [(f"Ana{i}", f"Ruiz{i % 5}") for i in range(12)]
PARTITIONS = 4  # TOPIC_PARTITIONS' default
LATER_MS = 3_600_000  # a closing order per partition, an hour on: every window before is final


class TimedOrders:
    """`count` orders numbered 0..count-1, and the closing ones past them."""

    def __init__(self, count: int) -> None:
        self.count = count

    def time_of(self, number: int) -> int:
        return T0 + number * SPACING_MS if number < self.count else T0 + LATER_MS

    def order(self, number: int) -> tuple[bytes, bytes]:
        first, last = BUYERS[number % len(BUYERS)]
        return str(number).encode(), json.dumps({
            "order_number": number, "price": f"{number % 997}.{number % 100:02d}",
            "order_time": self.time_of(number),
            "buyer": {"first_name": first, "last_name": last}}).encode()

    def closers(self) -> list[int]:
        """An order number past `count` for each orders partition (the producer's
        partitioner)."""
        found: dict[int, int] = {}
        number = self.count
        while len(found) < PARTITIONS:
            found.setdefault((murmur2(str(number).encode()) & 0x7FFFFFFF) % PARTITIONS, number)
            number += 1
        return sorted(found.values())

    def meaning(self, numbers: list[int]) -> list[tuple]:
        return [(n, Decimal(f"{n % 997}.{n % 100:02d}"), BUYERS[n % len(BUYERS)],
                 self.time_of(n)) for n in numbers]
