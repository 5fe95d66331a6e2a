"""Free heap pages back to the system, as a long-running worker must.

glibc keeps what Python and the C libraries free in its arenas. A worker's allocations
(orjson's documents, fetched record batches, RocksDB's iterators, from three threads)
fragment them, so without a trim the RSS keeps the high-water mark of every burst.
`malloc_trim(0)` hands every free page in every arena back (madvise), so the RSS follows
the live heap (`make bench-state`, memory; BENCHMARKS.md). ctypes releases the GIL for the
call, and it runs off the event loop.
"""

import ctypes
import functools
from collections.abc import Callable

TRIM_INTERVAL_S = 10.0


def heap_trimmer() -> Callable[[], object] | None:
    """glibc's malloc_trim(0) as a call (tens of milliseconds on a large heap: run it in a
    thread), None where the C library has none (musl, macOS)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own C library
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return functools.partial(trim, 0)
