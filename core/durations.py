"""Durations and sizes as written in settings, CLI options, names and reasons: `500ms`,
`10s`, `5m`, `1h`, `7d`; `1048576`, `512KiB`, `1MiB`. Parsed, and spelt back."""

import re

# Largest first, for the shortest exact spelling of a duration.
_DURATION_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000))
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


def format_duration_ms(ms: int) -> str:
    """The shortest exact spelling of `ms` (`90000` -> `90s`); parse_duration_ms parses it back."""
    for unit, size in _DURATION_UNITS:
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def format_size_bytes(size: int) -> str:
    """`1048576` -> `1MiB`, `1536` -> `1536B`: the largest binary unit that divides it."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"
