"""Time at the edges: ISO-8601 text and Flink's JSON form <-> integer epoch milliseconds."""

import re
import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = -62_135_596_800_000  # 0001-01-01T00:00:00.000Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})([T ])(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(Z|z|[+-]\d{2}:?\d{2})?\Z",
    re.ASCII,
)


def parse_time_ms(text: str) -> int:
    """Epoch ms of ISO-8601 with an offset or `Z`, or Flink's `2026-11-24 10:15:30.000` (UTC).

    Fraction digits beyond milliseconds are truncated. ValueError says what is wrong.
    """
    match = _ISO.match(text)
    if match is None:
        raise ValueError(f"not ISO-8601 or epoch milliseconds: {text!r}")
    year, month, day, sep, hour, minute, second, fraction, offset = match.groups()
    if offset is None and sep == "T":
        raise ValueError(f"no UTC offset in {text!r} (add Z or +hh:mm)")
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as error:
        raise ValueError(f"{error}: {text!r}") from None
    shift_min = 0
    if offset and offset not in ("Z", "z"):
        digits = offset[1:].replace(":", "")
        shift_min = int(digits[:2]) * 60 + int(digits[2:])
        if int(digits[:2]) > 23 or int(digits[2:]) > 59:
            raise ValueError(f"bad UTC offset in {text!r}")
        if offset[0] == "+":
            shift_min = -shift_min
    delta = moment - EPOCH + timedelta(minutes=shift_min)
    return (delta.days * 86_400 + delta.seconds) * 1000 + millis


def format_time_ms(ms: int) -> str:
    """`2026-11-24T10:15:30.000Z` for epoch ms."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def wall_ms() -> int:
    """The wall clock in epoch milliseconds (leases, MAX_FUTURE_SKEW, the idle rule)."""
    return time.time_ns() // 1_000_000
