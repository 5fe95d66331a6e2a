"""Free heap pages back to the system, as a long-running worker must.

glibc keeps what Python and the C libraries free in its arenas. A worker's allocations
(orjson's documents, fetched record batches, RocksDB's iterators, from three threads)
fragment them, so without a trim the RSS keeps the high-water mark of every burst.
`malloc_trim(0)` hands every free page in every arena back (madvise), so the RSS follows
the live heap (`make bench-state`, memory; BENCHMARKS.md). ctypes releases the GIL for the
call, and it runs off the event loop.
"""

import asyncio
import ctypes
from collections.abc import Callable

TRIM_INTERVAL_S = 10.0


def heap_trimmer() -> Callable[[], None] | None:
    """glibc's malloc_trim as a call, None where the C library has none (musl, macOS)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own C library
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def release() -> None:
        trim(0)

    return release


async def release_free_memory(release: Callable[[], None]) -> None:
    """One trim, in a thread: it walks the heap for tens of milliseconds when large."""
    await asyncio.to_thread(release)
