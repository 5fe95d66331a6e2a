"""The state schema: every key of the stores and how its value is written, in one place.
`tables/` stores text keys and values and knows none of them.

Keys sort as RocksDB sorts bytes: a prefix scan reads one kind of key, and times are
biased into fixed-width positive numbers so that keys sort by time.

Dedup stores (ingest, one per orders partition):
- `d|<order number>`                  -> the order's content and when it was recorded
- `x|<recorded time>|<order number>`  -> the time index that expires entries
- `m|source`                          -> the partition's source watermark and lease
- `m|via|<origin>`                    -> the channel from orders partition `origin` through
                                         the rekey topic
- `m|watermark`                       -> the dedup partition's watermark
- `m|next`                            -> the batch that must be taken before any other
Aggregation stores (one per by-buyer partition):
- `t|<buyer json>`                    -> `[count, "sum"]` (TOTAL)
- `w|<window>|<start>|<buyer json>`   -> the row's aggregator states, `[count, "sum", "min",
                                         "max"]` (core.aggregators.ROW), then its end for
                                         windows whose end varies (sessions)
- `e|<window>|<end>|<start>|<buyer>`  -> "": the end index of windows whose end varies,
                                         which closing reads in end order
- `b|<window>|<buyer json>`           -> `[[start, end], ...]`: a buyer's windows of a kind
                                         that merges them (sessions), by start
- `m|ch|<carrier>`                    -> the channel from dedup partition `carrier`
- `m|watermark`                       -> the partition's watermark, never moving back
- `m|latest-order`                    -> the largest order time applied
- `m|read`                            -> the last repartition offset whose watermark applied
- `o|totals`                          -> the outbox: buyers of the last batch
- `f|<window>` / `r|<window>`         -> the last window start published final / deleted
- `k|t|<rank>`                        -> a total's key: totals in ranking order
- `k|w|<window>|<start>|<rank>`       -> a row's key: a window start's rows in ranking order
                                         (`<rank>`: count descending, last name, first name)
- `k|#buyers`                         -> how many buyers have a total
                                         (`k|`: derived from the rest, never in the
                                         changelog: core.ranking)
Both:
- `s|<topic:partition>`               -> the last source offset applied (core.sources)
"""

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson

from core.models import Buyer, Total

TIME_BIAS_MS = 100_000_000_000_000  # times from year 1 on sort as positive 15-digit numbers

# dedup stores
ENTRY_PREFIX = "d|"
EXPIRY_PREFIX = "x|"
SOURCE_KEY = "m|source"
NEXT_KEY = "m|next"
# aggregation stores
TOTAL_PREFIX = "t|"
LATEST_ORDER_KEY = "m|latest-order"  # the watermark without ticks: the latest order time
READ_KEY = "m|read"  # the last repartition offset whose watermark was applied
OUTBOX_KEY = "o|totals"
RANK_PREFIX = "k|"
TOTAL_RANK_PREFIX = "k|t|"
BUYER_COUNT_KEY = "k|#buyers"
RANK_COUNT_LIMIT = 10**16  # counts from 0 below it rank as fixed-width numbers
CHANNEL_PREFIX = "m|ch|"
# both
WATERMARK_KEY = "m|watermark"
SOURCE_OFFSET_PREFIX = "s|"


def entry_key(order_number: int) -> str:
    """Store key of an order number's entry."""
    return f"{ENTRY_PREFIX}{order_number}"


def expiry_key(recorded_ms: int, order_number: int) -> str:
    """Store key of an entry in the time index."""
    return f"{EXPIRY_PREFIX}{recorded_ms + TIME_BIAS_MS:016d}|{order_number}"


def via_key(origin: int) -> str:
    """Store key of orders partition `origin`'s channel through the rekey topic."""
    return f"m|via|{origin}"


def channel_key(carrier: int) -> str:
    """Store key of dedup partition `carrier`'s channel through the repartition topic."""
    return f"{CHANNEL_PREFIX}{carrier}"


def source_key(source: str) -> str:
    """Store key of the last offset applied from one source stream."""
    return SOURCE_OFFSET_PREFIX + source


def total_key(buyer: Buyer) -> str:
    """Store key of a buyer's total."""
    return TOTAL_PREFIX + orjson.dumps(buyer).decode()


def buyer_of_total_key(key: str) -> Buyer:
    """Inverse of total_key."""
    first, last = orjson.loads(key.removeprefix(TOTAL_PREFIX))
    return first, last


def window_prefix(name: str) -> str:
    """Store key prefix of every row of one window."""
    return f"w|{name}|"


def start_prefix(name: str, start_ms: int) -> str:
    """Store key prefix of every row of one window start."""
    return f"w|{name}|{start_ms + TIME_BIAS_MS:016d}|"


def window_key(name: str, start_ms: int, buyer: Buyer) -> str:
    """Store key of one window row; keys of a window sort by start."""
    return start_prefix(name, start_ms) + orjson.dumps(buyer).decode()


def parse_window_key(key: str) -> tuple[str, int, Buyer]:
    """Inverse of window_key."""
    _, name, start, buyer = key.split("|", 3)
    first, last = orjson.loads(buyer)
    return name, int(start) - TIME_BIAS_MS, (first, last)


def rank_order(count: int, buyer: Buyer) -> str:
    """Text that sorts as core.queries.ranking_key: count descending, then last name, then
    first name by code points."""
    return f"{count_order(count)}{name_order(buyer)}"


def count_order(count: int) -> str:
    """A count as text that sorts larger counts first."""
    return f"{RANK_COUNT_LIMIT - 1 - count:016d}|"


def name_order(buyer: Buyer) -> str:
    """A buyer as text that sorts by last name, then first name. A name ends with NUL NUL
    and a NUL in it is written NUL SOH, so that no name sorts after a longer one it
    begins."""
    first, last = buyer
    return last.replace("\0", "\0\1") + "\0\0" + first.replace("\0", "\0\1")


def row_rank_prefix(name: str, start_ms: int) -> str:
    """Store key prefix of one window start's rows in ranking order."""
    return f"{RANK_PREFIX}{start_prefix(name, start_ms)}"


def window_prefixes(name: str) -> tuple[str, ...]:
    """Prefixes of every key of one window: what dropping it deletes."""
    return (window_prefix(name), end_prefix(name), f"b|{name}|")


def end_prefix(name: str) -> str:
    """Store key prefix of a window's end index."""
    return f"e|{name}|"


def end_key(name: str, end_ms: int, start_ms: int, buyer: Buyer) -> str:
    """Store key of one row in its window's end index; keys sort by end."""
    return (f"{end_prefix(name)}{end_ms + TIME_BIAS_MS:016d}|{start_ms + TIME_BIAS_MS:016d}|"
            + orjson.dumps(buyer).decode())


def parse_end_key(key: str) -> tuple[int, int, Buyer]:
    """Inverse of end_key: end, start, buyer."""
    _, _, end, start, buyer = key.split("|", 4)
    first, last = orjson.loads(buyer)
    return int(end) - TIME_BIAS_MS, int(start) - TIME_BIAS_MS, (first, last)


def end_bound(name: str, end_ms: int) -> str:
    """The first end-index key of windows ending at `end_ms`."""
    return f"{end_prefix(name)}{end_ms + TIME_BIAS_MS:016d}|"


def buyer_windows_key(name: str, buyer: Buyer) -> str:
    """Store key of a buyer's windows of a kind that merges them."""
    return f"b|{name}|" + orjson.dumps(buyer).decode()


def final_key(name: str) -> str:
    """Store key of the last start (or end, for sessions) of window `name` published as
    final."""
    return f"f|{name}"


def retired_key(name: str) -> str:
    """Store key of the last start (or end, for sessions) of window `name` whose rows were
    deleted."""
    return f"r|{name}"


# Values

def encode_total(count: int, price_sum: Decimal) -> str:
    """A buyer total's value: `[count, "sum"]`."""
    return orjson.dumps([count, str(price_sum)]).decode()


def decode_total(value: str) -> Total:
    count, price_sum = orjson.loads(value)
    return Total(count, Decimal(price_sum))


def encode_row(state: Sequence[int | Decimal], end_ms: int | None = None) -> str:
    """A window row's value: its aggregator states (Decimals as text), then its end where
    the kind's ends vary: `[count, "sum", "min", "max"]`."""
    values: list[object] = [v if isinstance(v, int) else str(v) for v in state]
    if end_ms is not None:
        values.append(end_ms)
    return orjson.dumps(values).decode()


def decode_row(value: str, width: int) -> tuple[list[Any], int | None]:
    """Inverse of encode_row for rows of `width` states: the states, and the end if any."""
    values = orjson.loads(value)
    return state_of(values[:width]), (values[width] if len(values) > width else None)


def state_of(stored: Sequence[Any]) -> list[Any]:
    """Aggregator states as stored (ints, Decimals as text) as the aggregators keep them."""
    return [v if isinstance(v, int) else Decimal(v) for v in stored]
