"""Expected answers computed by hand from what the orders mean, for the API's tests.

`meaning` is a list of (order number, price, (first name, last name), order time ms):
what each order says, written down by the test that makes it, never read back from the
service.
"""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

Meaning = list[tuple[int, Decimal, tuple[str, str], int]]


def iso(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def expected_totals(meaning: Meaning) -> dict[tuple[str, str], tuple[int, Decimal]]:
    totals: dict[tuple[str, str], list] = defaultdict(lambda: [0, Decimal(0)])
    for _, price, buyer, _ in meaning:
        totals[buyer][0] += 1
        totals[buyer][1] += price
    return {b: (c, s) for b, (c, s) in totals.items()}


def expected_buyer_items(meaning: Meaning) -> list[dict]:
    """/buyers items: by count descending, then last name, then first name."""
    ranked = sorted(expected_totals(meaning).items(),
                    key=lambda kv: (-kv[1][0], kv[0][1], kv[0][0]))
    return [{"buyer": {"first_name": first, "last_name": last}, "count": c,
             "total_price": money(s)} for (first, last), (c, s) in ranked]


def expected_windows(meaning: Meaning, size: int, slide: int) -> dict[tuple, list]:
    """(start, buyer) -> [count, sum, min, max], by brute force over candidate starts."""
    rows: dict[tuple, list] = {}
    for _, price, buyer, ms in meaning:
        for start in range((ms // slide - size // slide - 1) * slide, ms + 1, slide):
            if start % slide == 0 and start <= ms < start + size:
                row = rows.setdefault((start, buyer), [0, Decimal(0), price, price])
                row[0] += 1
                row[1] += price
                row[2], row[3] = min(row[2], price), max(row[3], price)
    return rows


def expected_window_items(meaning: Meaning, size: int, slide: int) -> list[dict]:
    """/windows/{name} items without `final`: by window start, then last, first name."""
    rows = expected_windows(meaning, size, slide)
    ordered = sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1][1], kv[0][1][0]))
    return [
        {"window_start": iso(start), "window_end": iso(start + size),
         "buyer": {"first_name": b[0], "last_name": b[1]}, "count": c,
         "sum_price": money(s), "min_price": money(lo), "max_price": money(hi),
         "avg_price": money((s / c).quantize(Decimal("0.01")))}
        for (start, b), (c, s, lo, hi) in ordered
    ]


Window = tuple[str, int, int]  # name, size ms, slide ms


def expected_event_time(partitions: list[Meaning], windows: list[Window], lateness: int,
                        ) -> tuple[dict[int, list[tuple[str, int]]], dict[tuple, list], int]:
    """SPEC.md's late rule, by brute force: each orders partition's orders in offset order
    (a repeated order number counts once, its first copy); an order is late for the
    windows whose end plus `lateness` the largest earlier time of its partition reached.
    Returns the late orders and the windows they missed, every window row
    ((name, start, buyer) -> [count, sum, min, max]) of the orders that count in it, and
    the watermark every partition ends at: the smallest of the partitions' largest times.
    """
    late: dict[int, list[tuple[str, int]]] = {}
    rows: dict[tuple, list] = {}
    seen: set[int] = set()
    largest = []
    for meaning in partitions:
        before = None
        for number, price, buyer, ms in meaning:
            if number not in seen:
                seen.add(number)
                for name, size, slide in windows:
                    for start in range((ms // slide - size // slide - 1) * slide, ms + 1, slide):
                        if not start <= ms < start + size:
                            continue
                        if before is not None and start + size + lateness <= before:
                            late.setdefault(number, []).append((name, start))
                            continue
                        row = rows.setdefault((name, start, buyer), [0, Decimal(0), price, price])
                        row[0] += 1
                        row[1] += price
                        row[2], row[3] = min(row[2], price), max(row[3], price)
            before = ms if before is None else max(before, ms)
        largest.append(before)
    return late, rows, min(largest)
