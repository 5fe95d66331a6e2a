"""Event-time window arithmetic: specs, epoch alignment and assignment, all in epoch ms.

Windows start at multiples of their slide since the Unix epoch (as in Flink) and
hold `[window_start_ms, window_start_ms + size_ms)`. A tumbling window is a hopping
window whose slide equals its size.
"""

from dataclasses import dataclass

from core.durations import format_duration_ms, parse_duration_ms


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One configured window: `tumble:<size>` or `hop:<size>/<slide>`."""

    name: str
    kind: str  # "tumbling" or "hopping"
    size_ms: int
    slide_ms: int

    @property
    def spec(self) -> str:
        """The spec as written in WINDOWS."""
        if self.kind == "tumbling":
            return f"tumble:{format_duration_ms(self.size_ms)}"
        return f"hop:{format_duration_ms(self.size_ms)}/{format_duration_ms(self.slide_ms)}"


def window_name(spec: str) -> str:
    """`hop:1m/10s` -> `hop_1m_10s`."""
    return spec.replace(":", "_").replace("/", "_")


def parse_window_spec(text: str) -> WindowSpec:
    """Parse one spec; ValueError says what is wrong with it."""
    spec = text.strip()
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("tumble", "hop"):
        raise ValueError(f"{spec!r} is not tumble:<size> or hop:<size>/<slide>")
    if kind == "tumble":
        size_ms = parse_duration_ms(rest)
        slide_ms = size_ms
    else:
        size_text, sep, slide_text = rest.partition("/")
        if not sep:
            raise ValueError(f"{spec!r}: a hopping window needs <size>/<slide>")
        size_ms, slide_ms = parse_duration_ms(size_text), parse_duration_ms(slide_text)
    if slide_ms <= 0 or size_ms <= 0:
        raise ValueError(f"{spec!r}: size and slide must be positive")
    if size_ms % slide_ms:
        raise ValueError(f"{spec!r}: size must be a multiple of the slide")
    return WindowSpec(
        name=window_name(spec),
        kind="tumbling" if kind == "tumble" else "hopping",
        size_ms=size_ms,
        slide_ms=slide_ms,
    )


def parse_window_specs(text: str) -> tuple[WindowSpec, ...]:
    """Parse a comma-separated WINDOWS value; names must be unique."""
    specs = tuple(parse_window_spec(part) for part in text.split(",") if part.strip())
    if not specs:
        raise ValueError("at least one window is needed")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"window {duplicates[0]} is configured twice")
    return specs


def window_starts_ms(time_ms: int, size_ms: int, slide_ms: int) -> range:
    """Starts of every window holding `time_ms`, oldest first.

    The latest start is `time_ms` floored to the slide (Python's floor division keeps
    this right before the epoch too); the window starting at `latest - size` ends
    exactly at `time_ms`, which `[start, end)` excludes.
    """
    latest_start_ms = time_ms - time_ms % slide_ms
    return range(latest_start_ms - size_ms + slide_ms, latest_start_ms + 1, slide_ms)
