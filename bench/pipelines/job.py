"""orderstream's job, as the bench's peer pipelines compute it and as the bench checks it.

Per buyer: the count and the sum of prices. Per buyer and window of `tumble:10s` and
`hop:1m/10s` (orderstream's default WINDOWS): count, sum, min and max of the prices, in
event time (`order_time`). Prices are integer cents, so sums are exact. No Quix or faust
import here: the bench's parent process computes the expected results with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bench.pipelines.common import order_time_ms


@dataclass(frozen=True)
class WindowSpec:
    """A time window as orderstream names it: `tumble_10s` has step == size."""

    name: str
    size_ms: int
    step_ms: int

    def starts_ms(self, time_ms: int) -> range:
        """Starts of the windows that hold `time_ms`, oldest first."""
        last = time_ms - time_ms % self.step_ms
        return range(last - self.size_ms + self.step_ms, last + 1, self.step_ms)


TUMBLE = WindowSpec("tumble_10s", 10_000, 10_000)
HOP = WindowSpec("hop_1m_10s", 60_000, 10_000)
WINDOWS = (TUMBLE, HOP)

Stats = list[int]  # [count, sum, min, max] of cents


def buyer_key(order: dict[str, Any]) -> str:
    """The GROUP BY key: both names, with a separator no name contains."""
    buyer = order["buyer"]
    return f"{buyer['first_name']}\x1f{buyer['last_name']}"


def price_cents(price: str) -> int:
    """`"12.34"` -> 1234, exactly."""
    return int(Decimal(price).scaleb(2))


def totals_topic(group: str) -> str:
    """The per-buyer totals a run's pipeline writes (orderstream's `buyer-totals`)."""
    return f"{group}-buyer-totals"


def results_topic(group: str) -> str:
    """The closed windows a run's pipeline writes (orderstream's `window-results`)."""
    return f"{group}-window-results"


@dataclass
class Expected:
    """The job's results over a whole input, computed in plain Python."""

    totals: dict[str, list[int]]  # buyer -> [count, cents]
    windows: dict[tuple[str, int, str], Stats]  # (window name, start, buyer) -> stats

    @classmethod
    def of(cls, orders: Iterable[dict[str, Any]]) -> Expected:
        totals: dict[str, list[int]] = {}
        windows: dict[tuple[str, int, str], Stats] = {}
        for order in orders:
            buyer, cents, time_ms = buyer_key(order), price_cents(order["price"]), \
                order_time_ms(order)
            total = totals.setdefault(buyer, [0, 0])
            total[0] += 1
            total[1] += cents
            for spec in WINDOWS:
                for start in spec.starts_ms(time_ms):
                    stats = windows.get((spec.name, start, buyer))
                    if stats is None:
                        windows[spec.name, start, buyer] = [1, cents, cents, cents]
                    else:
                        stats[0] += 1
                        stats[1] += cents
                        stats[2] = min(stats[2], cents)
                        stats[3] = max(stats[3], cents)
        return cls(totals, windows)
