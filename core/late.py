"""orders-late records: the order as parsed, why it is late and the windows it missed."""

from collections.abc import Iterable, Sequence
from functools import lru_cache

from core import jsonbytes
from core.models import Order, buyer_json
from core.money import money_str
from core.timefmt import format_time_ms
from core.windows import Missed, Window


@lru_cache(maxsize=4096)  # a late flood names the same few windows over and over
def describe_window(name: str, start_ms: int, end_ms: int, lateness_ms: int) -> str:
    """`window tumble_10s [<start>, <end>) final at <end + lateness>`, times ISO-8601 UTC."""
    return (f"window {name} [{format_time_ms(start_ms)}, {format_time_ms(end_ms)}) "
            f"final at {format_time_ms(end_ms + lateness_ms)}")


def order_json(order: Order) -> dict[str, object]:
    """An order with its fields as the API shows them."""
    return {
        "order_number": order.order_number,
        "price": money_str(order.price),
        "buyer": buyer_json(order.first_name, order.last_name),
        "order_time": format_time_ms(order.order_time_ms),
    }


def all_windows(order: Order, windows: Iterable[Window]) -> list[Missed]:
    """Every window the order's time opens or joins."""
    return [Missed(w, *span) for w in windows for span in w.spans(order.order_time_ms)]


def late_value(
    order: Order, reason: str, windows: Sequence[Window], lateness_ms: int,
    *, missed: Iterable[Missed] = (), missed_all: bool = False,
) -> bytes:
    """The value of one orders-late record."""
    spans = all_windows(order, windows) if missed_all else list(missed)
    return jsonbytes.dumps({
        **order_json(order),
        "reason": reason,
        "windows": [describe_window(m.window.name, m.start_ms, m.end_ms, lateness_ms)
                    for m in spans],
    })
