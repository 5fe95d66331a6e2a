"""Durations as written in settings and CLI options: `500ms`, `10s`, `5m`, `1h`, `7d`."""

import re

# Lives in core (core.parse names durations in reasons; core imports nothing from app).
from core.timefmt import format_duration_ms as format_duration_ms

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(text: str) -> int:
    """Return the duration `text` in milliseconds; ValueError names the accepted forms."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 500ms, 10s, 5m, 1h or 7d")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


_UNIT_BYTES = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|kib|mib|gib|)\s*$", re.IGNORECASE)


def parse_size_bytes(text: str) -> int:
    """A size as written in settings (`1048576`, `512KiB`, `1MiB`) in bytes; ValueError
    names the accepted forms."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size like 1048576, 512KiB or 1MiB")
    return int(match.group(1)) * _UNIT_BYTES[match.group(2).lower()]
