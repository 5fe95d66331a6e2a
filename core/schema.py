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
- `w|<window>|<start>|<buyer json>`   -> `[count, "sum", "min", "max"]` (ROW)
- `m|ch|<carrier>`                    -> the channel from dedup partition `carrier`
- `m|watermark`                       -> the partition's watermark, never moving back
- `m|latest-order`                    -> the largest order time applied
- `m|read`                            -> the last repartition offset whose watermark applied
- `o|totals`                          -> the outbox: buyers of the last batch
- `f|<window>` / `r|<window>`         -> the last window start published final / deleted
Both:
- `s|<topic:partition>`               -> the last source offset applied (core.sources)
"""

from decimal import Decimal

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
    return f"m|ch|{carrier}"


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


def final_key(name: str) -> str:
    """Store key of the last start of window `name` published as final."""
    return f"f|{name}"


def retired_key(name: str) -> str:
    """Store key of the last start of window `name` whose rows were deleted."""
    return f"r|{name}"


# Values

def encode_total(count: int, price_sum: Decimal) -> str:
    """A buyer total's value: `[count, "sum"]`."""
    return orjson.dumps([count, str(price_sum)]).decode()


def decode_total(value: str) -> Total:
    count, price_sum = orjson.loads(value)
    return Total(count, Decimal(price_sum))


Row = tuple[int, Decimal, Decimal, Decimal]  # count, sum, min, max


def encode_row(count: int, price_sum: Decimal, low: Decimal, high: Decimal) -> str:
    """A window row's value: `[count, "sum", "min", "max"]`."""
    return orjson.dumps([count, str(price_sum), str(low), str(high)]).decode()


def decode_row(value: str) -> Row:
    count, price_sum, low, high = orjson.loads(value)
    return count, Decimal(price_sum), Decimal(low), Decimal(high)
