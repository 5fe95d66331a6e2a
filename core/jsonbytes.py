"""JSON bytes for records that pile up before they are sent (finals, totals, shuffles).

orjson 3.13 returns a small document in a 4 KiB allocation (tracemalloc: 4,097 bytes for
`orjson.dumps(["Ana", "Ruiz", 1])`). A batch that closes a window of 6,000 rows held
~50 MB of such buffers at once, and the worker's RSS kept the high-water mark. Copying
the bytes out costs ~0.2 µs and keeps each record its own size.
"""

from typing import Any

import orjson


def dumps(obj: Any) -> bytes:
    """`orjson.dumps(obj)`, in an allocation of its own size."""
    return memoryview(orjson.dumps(obj)).tobytes()
