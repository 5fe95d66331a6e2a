"""Output records of the job: the print sink, the buyer-totals upsert stream, the DLQ."""

import base64
from collections.abc import Iterable

from core import jsonbytes
from core.aggregate import TotalChange
from core.models import Total, buyer_json
from core.money import money_str
from core.raw import cut_raw
from core.shuffle import buyer_key


def print_lines(changes: Iterable[TotalChange]) -> list[str]:
    """Flink print-sink lines: `+I[1, Ana, Ruiz]`, or `-U[old, ...]` then `+U[new, ...]`."""
    lines = []
    for change in changes:
        first, last = change.buyer
        if change.old is None:
            lines.append(f"+I[{change.new.count}, {first}, {last}]")
        else:
            lines.append(f"-U[{change.old.count}, {first}, {last}]")
            lines.append(f"+U[{change.new.count}, {first}, {last}]")
    return lines


def total_json(first_name: str, last_name: str, total: Total) -> dict[str, object]:
    """A buyer total as in the API and on buyer-totals."""
    return {
        "buyer": buyer_json(first_name, last_name),
        "count": total.count,
        "total_price": money_str(total.total_price),
    }


def buyer_total_records(changes: Iterable[TotalChange]) -> list[tuple[bytes, bytes]]:
    """(key, value) upserts for buyer-totals, one per changed buyer."""
    return [
        (buyer_key(*c.buyer), jsonbytes.dumps(total_json(*c.buyer, c.new))) for c in changes
    ]


REASON_LIMIT = 1_000  # characters: a reason quoting a huge field must not be huge itself


def dlq_value(error: str, topic: str, partition: int, offset: int, raw: bytes | None,
              raw_bytes: int | None = None, raw_sha256: str | None = None,
              key_bytes: int | None = None, key_sha256: str | None = None) -> bytes:
    """A dead-letter record: the reason, where it came from and the original value, text
    when it is UTF-8, else base64; a value over 64 KiB is cut, with its size and hash
    (`raw_bytes`/`raw_sha256` given: `raw` was cut already, on the way here); so is a key
    cut to be the record's key (`key_bytes`/`key_sha256`)."""
    if len(error) > REASON_LIMIT:
        error = error[:REASON_LIMIT] + "…"
    record: dict[str, object] = {
        "error": error, "topic": topic, "partition": partition, "offset": offset,
    }
    if key_bytes is not None:
        record["key_bytes"], record["key_sha256"] = key_bytes, key_sha256
    if raw is None:
        record["raw"] = None
        return jsonbytes.dumps(record)
    if raw_bytes is None:
        raw, raw_bytes, raw_sha256 = cut_raw(raw)
    record["raw"], encoding = _as_text(raw, cut=raw_bytes is not None)
    if encoding:
        record["raw_encoding"] = encoding
    if raw_bytes is not None:
        record["raw_bytes"], record["raw_sha256"] = raw_bytes, raw_sha256
    return jsonbytes.dumps(record)


def _as_text(raw: bytes, cut: bool) -> tuple[str, str | None]:
    """UTF-8 as text; a cut may end inside a character, which is dropped."""
    for trim in range(4 if cut else 1):
        try:
            return raw[:len(raw) - trim].decode("utf-8"), None
        except UnicodeDecodeError:
            continue
    return base64.b64encode(raw).decode("ascii"), "base64"
