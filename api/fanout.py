"""Live push at scale: one Kafka consumer per worker feeds every stream client.

The hub lives on the API's event loop. Its consumer, started with the first client on the
topics clients ask for, appends what it reads to a ring (api.fanout_ring): the latest
records of every partition it reads, in arrival order, bounded in count and bytes. A
client (a Lease) is a cursor into the ring plus its position in each partition, which
its event ids carry: it costs no consumer, no broker connection and no copy of the
records, and a record is decoded once for all clients. This is ksqlDB's scalable push
query: one "latest" consumer shared by every query, plus a catch-up consumer for a query
that resumes from an older position; the ring stands in for ksqlDB's per-query queues.

- A new client starts where the hub is: the end, as of the hub's last fetch.
- A client resuming at positions the ring holds reads from the ring.
- A client behind the ring (resumed from an old id, or overrun by the ring because it
  reads too slowly) reads through a catch-up consumer of its own until it reaches the
  ring, then continues from it. At most CATCHUP_SLOTS run at once (others wait, with
  keep-alives); a client more than MAX_BEHIND records behind the end of a partition, or
  not back on the ring within CATCHUP_MAX_S, is dropped: no client slows the others.
- The consumer stops LINGER_S after the last client leaves, and the ring is freed; until
  then a client reconnecting after a blip resumes from memory, and a reconnect storm does
  not restart it. After a broker error it restarts from the hub's own positions.
- Partitions that appear (a topic made after the first client asked, or grown) are read
  from their start, as Flink's partition discovery does.
- When the worker stops, every stream ends at once (before the API server would wait for
  them and cancel them), and new ones get 503.

Why a ring and cursors rather than a queue per client: the queue would copy a reference
to every record into every client's queue (1,000 clients x MAX_BEHIND slots); a cursor is
one integer, the ring is shared, and falling out of the ring is the bounded queue
overflowing. Resuming within the ring needs no broker round trip.
"""

import asyncio
import logging
import resource
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from api.fanout_ring import Entry, KafkaSource, Ring, Source
from api.ports import ApiMetrics

log = logging.getLogger(__name__)
MAX_BEHIND = 100_000  # records behind the end of a partition: a client further back is dropped
CATCHUP_SLOTS = 8
CATCHUP_MAX_S = 60.0
LINGER_S = 30.0
DISCOVER_S = 5.0  # how often the hub looks for new partitions
READY_S = 10.0  # how long a new client waits for the hub to read its topics
READ_MAX = 1000  # records handed to a client at once
DROP_LOG_S = 60.0  # at most one line about ended clients this often

Position = tuple[str, int]  # (source tag, partition), as in event ids
SourceFactory = Callable[[str], Source]  # auto_offset_reset -> a consumer
T = TypeVar("T")


class HubUnavailable(Exception):
    """No stream now: the broker does not answer (READY_S), or the worker stops."""


class HubFull(HubUnavailable):
    """SSE_MAX_CLIENTS clients are connected."""


class StreamEnded(Exception):
    """A client's stream ends: too slow (`slow`), or for want of its catch-up consumer."""

    def __init__(self, reason: str, slow: bool = True) -> None:
        super().__init__(reason)
        self.slow = slow


class HubStopped(Exception):
    """The hub stopped (the worker stops): every stream ends, and that is no news."""


class StreamHub:
    """The shared consumer, the ring, and the count of connected clients."""

    def __init__(self, client: Mapping[str, Any], metrics: ApiMetrics, max_clients: int, *,
                 source: SourceFactory | None = None, linger_s: float = LINGER_S,
                 ring: Ring | None = None, stopping: Callable[[], bool] = lambda: False,
                 ) -> None:
        self._source = source or (lambda reset: KafkaSource(client, reset))
        # whether the worker stops: streams then end at once, before the API server waits
        # for its connections to close (and cancels them, a traceback each, after 2 s)
        self._stopping, self.closed = stopping, False
        self.metrics, self.max_clients, self._linger_s = metrics, max_clients, linger_s
        self.ring = ring or Ring()
        self.clients = 0
        self.generation = 0  # one more each time the hub forgets everything
        self.next: dict[TopicPartition, int] = {}  # the shared consumer's positions
        self._wanted: set[str] = set()  # topics clients asked for
        self._known: set[str] = set()  # of which the partitions were looked up
        self._assigned: set[TopicPartition] = set()
        self._live: Source | None = None
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.catchups = asyncio.Semaphore(CATCHUP_SLOTS)
        self._background: set[asyncio.Task[None]] = set()
        self._ended_unlogged, self._ended_logged_at = 0, -DROP_LOG_S

    @property
    def running(self) -> bool:
        """Whether the shared consumer runs (or is starting)."""
        return self._task is not None

    def admit(self, topics: Mapping[str, str]) -> "Lease":
        """A new client of these topics (tag -> topic), counted; HubFull at the cap."""
        if self.closed:
            raise HubUnavailable("the worker is stopping")
        if self.clients >= self.max_clients:
            raise HubFull(f"{self.max_clients} stream clients are connected (SSE_MAX_CLIENTS)")
        self.clients += 1
        self.metrics.sse_clients.inc()
        return Lease(self, topics)

    def release(self) -> None:
        """A client has gone: once per admitted client (Lease.close)."""
        self.clients -= 1
        self.metrics.sse_clients.dec()

    def end(self, tp: TopicPartition) -> int:
        """The end of a partition as far as the hub knows."""
        live = self._live.highwater(tp) if self._live is not None else None
        return max(self.next[tp], live or 0)

    async def ready(self, topics: Iterable[str]) -> None:
        """Once the hub reads every one of `topics`; HubUnavailable after READY_S."""
        wanted = set(topics)
        self._wanted |= wanted
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="orderstream-sse-hub")
        try:
            async with asyncio.timeout(READY_S):
                while not wanted <= self._known:
                    await self._arrived.wait()
        except TimeoutError:
            raise HubUnavailable("the broker did not answer the stream's consumer") from None

    async def arrival(self, timeout_s: float) -> None:
        """Until the hub appends records, at most `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._arrived.wait()
        except TimeoutError:
            pass

    def _wake(self) -> None:
        """Wake every waiting client: each waits on the event it found, set here once."""
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    async def _run(self) -> None:
        """The shared consumer, until LINGER_S without clients; restarted after errors."""
        failures = 0
        while True:
            source = self._live = self._source("latest")
            try:
                await source.start()
                await self._serve(source)
                return
            except KafkaError as error:
                failures += 1
                if failures == 1:  # an outage is the broker's to log, not ours
                    log.warning("stream consumer: %r; retrying every second", error)
                if not self.clients:
                    self._reset()
                    return
            except BaseException:
                self._reset()
                raise
            finally:
                await source.stop()
            await asyncio.sleep(1)

    async def _serve(self, source: Source) -> None:
        """Read and append; look for partitions when asked and every DISCOVER_S."""
        looked, idle_since = float("-inf"), None
        self._assigned = set()
        while True:
            now = time.monotonic()
            if self._stopping():
                self.closed = True
                self._reset()
                return
            if self.clients:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= self._linger_s:
                self._reset()  # before the consumer stops: a new client starts afresh
                return
            if not self._wanted <= self._known or now - looked >= DISCOVER_S:
                await self._discover(source)
                looked = now
            if not self._assigned:  # none of the topics exists yet
                await asyncio.sleep(0.2)
                continue
            batch = await source.getmany(timeout_ms=200, max_records=READ_MAX)
            for tp, entries in batch.items():
                for entry in entries:
                    self.ring.append(entry)
                self.next[tp] = max(entries[-1].offset + 1, await source.position(tp))
            if batch:
                self._wake()

    async def _discover(self, source: Source) -> None:
        """Read every partition of the wanted topics: from the end for a topic read for
        the first time, from the start for a partition that appeared since."""
        wanted = set(self._wanted)
        tps = await source.partitions(wanted)
        new = [tp for tp in tps if tp not in self.next]
        first = [tp for tp in new if tp.topic not in self._known]
        ends = await source.end_offsets(first) if first else {}
        for tp in new:
            self.next[tp] = self.ring.floor[tp] = ends.get(tp, 0)
        if tps != self._assigned:
            source.assign({tp: self.next[tp] for tp in tps})
            self._assigned = tps
        if new or not wanted <= self._known:  # else nobody waits for it: wake no one
            self._known |= wanted
            self._wake()

    def _reset(self) -> None:
        """Forget the ring and the positions: no client is left, or the hub stops."""
        self._task = self._live = None
        self.ring = self.ring.empty_copy()
        self.next, self._wanted, self._known = {}, set(), set()
        self.generation += 1
        self._wake()

    def stop_later(self, source: Source) -> None:
        """Stop a catch-up consumer in the background, then give its slot back."""
        async def stop() -> None:
            try:
                await source.stop()
            finally:
                self.catchups.release()
        task = asyncio.create_task(stop())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def catchup_source(self) -> Source:
        """A consumer for one client's catch-up (the caller holds a slot)."""
        return self._source("earliest")

    def ended(self, error: StreamEnded) -> None:
        """Count a client the hub ended; one line per DROP_LOG_S at most, however many."""
        if error.slow:
            self.metrics.sse_dropped.inc()
        self._ended_unlogged += 1
        now = time.monotonic()
        if now - self._ended_logged_at >= DROP_LOG_S:
            log.warning("ended %d stream client(s) since the last such line; the latest: %s",
                        self._ended_unlogged, error)
            self._ended_unlogged, self._ended_logged_at = 0, now

    async def stop(self) -> None:
        """Stop the shared consumer now (the API server stops); clients' streams end."""
        self.closed = True
        if self._task is not None:
            task = self._task
            task.cancel()
            await asyncio.gather(task, *self._background, return_exceptions=True)


class Lease:
    """One client: its cursor into the ring and its position in each partition.

    The route renders the entries `read` returns and moves `positions` past each one; the
    lease skips what they are already past (a resumed client) and decides where to read.
    """

    def __init__(self, hub: StreamHub, topics: Mapping[str, str]) -> None:
        self._hub = hub
        self.tags = {topic: tag for tag, topic in topics.items()}
        self.positions: dict[Position, int] = {}
        self._cursor, self._generation = hub.ring.head, hub.generation
        self._behind = False  # reading through a catch-up consumer, until the ring
        self._catchup: Source | None = None
        self._catchup_tps: list[TopicPartition] = []
        self._catchup_until = 0.0
        self._open = True

    async def start(self, resume: Mapping[Position, int]) -> None:
        """Start where the hub is, or at the positions of `resume` (a Last-Event-ID)."""
        hub = self._hub
        await hub.ready(self.tags)
        self._generation = hub.generation
        tags = set(self.tags.values())
        self.positions = {key: offset for key, offset in resume.items() if key[0] in tags}
        for tp, offset in hub.next.items():
            if tp.topic in self.tags:
                key = (self.tags[tp.topic], tp.partition)
                given = self.positions.setdefault(key, offset)
                if given > hub.end(tp):  # only if the topic was made anew: read it as it is
                    self.positions[key] = hub.end(tp)
        self._cursor = hub.ring.base if resume else hub.ring.head
        self._behind = not self._covered()

    async def read(self, timeout_s: float) -> list[Entry]:
        """The client's next entries, or [] after `timeout_s`; StreamEnded when dropped,
        HubStopped when the hub stopped."""
        hub = self._hub
        if hub.generation != self._generation:
            raise HubStopped
        if not self._behind and self._cursor < hub.ring.base:  # the ring moved past it
            self._cursor = hub.ring.base
            self._behind = not self._covered()
        if self._behind:
            return await self._catch_up(timeout_s)
        if self._cursor == hub.ring.head:
            await hub.arrival(timeout_s)
            if hub.generation != self._generation:
                raise HubStopped
            if self._cursor < hub.ring.base:
                return await self.read(0)
        return self._take()

    def _take(self) -> list[Entry]:
        ring = self._hub.ring
        stop = min(ring.head, self._cursor + READ_MAX)
        entries, self._cursor = ring.entries(self._cursor, stop), stop
        return [e for e in entries if self._unseen(e)]

    def _unseen(self, entry: Entry) -> bool:
        tag = self.tags.get(entry.topic)
        return tag is not None and entry.offset >= self.positions.get((tag, entry.partition), 0)

    def _covered(self) -> bool:
        """Whether the ring holds everything this client has still to read."""
        for tp, floor in self._hub.ring.floor.items():
            tag = self.tags.get(tp.topic)
            if tag is not None and self.positions.get((tag, tp.partition), 0) < floor:
                return False
        return True

    async def _catch_up(self, timeout_s: float) -> list[Entry]:
        """Read from Kafka until the ring holds the rest; [] while waiting for a slot."""
        if self._catchup is None:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._hub.catchups.acquire()
            except TimeoutError:
                return []
            self._catchup = self._hub.catchup_source()
            self._catchup_until = time.monotonic() + CATCHUP_MAX_S
            await self._guarded(self._open_catchup(self._catchup))
        source = self._catchup
        for tp in self._catchup_tps:
            key = (self.tags[tp.topic], tp.partition)
            self.positions[key] = max(self.positions.get(key, 0), await source.position(tp))
        if self._covered():
            self._end_catchup()
            self._behind, self._cursor = False, self._hub.ring.base
            return self._take()
        if time.monotonic() > self._catchup_until:
            raise StreamEnded(f"not caught up within {CATCHUP_MAX_S:.0f} s")
        batch = await self._guarded(source.getmany(int(timeout_s * 1000), READ_MAX))
        taken = []
        for tp, entries in batch.items():
            behind = (source.highwater(tp) or 0) - entries[-1].offset
            if behind > MAX_BEHIND:
                raise StreamEnded(f"{behind} records behind in {tp.topic}[{tp.partition}]")
            taken += [e for e in entries if self._unseen(e)]
        return taken

    async def _open_catchup(self, source: Source) -> None:
        await source.start()
        tps = [tp for tp in self._hub.next if tp.topic in self.tags]
        ends = await source.end_offsets(tps)
        starts = {}
        for tp in tps:
            offset = min(self.positions.get((self.tags[tp.topic], tp.partition), 0), ends[tp])
            if ends[tp] - offset > MAX_BEHIND:
                raise StreamEnded(f"{ends[tp] - offset} records behind in "
                                  f"{tp.topic}[{tp.partition}]")
            starts[tp] = offset
        source.assign(starts)
        self._catchup_tps = tps

    async def _guarded(self, call: Awaitable[T]) -> T:
        """A catch-up call; a broker error ends the stream (the client can resume)."""
        try:
            return await call
        except KafkaError as error:
            raise StreamEnded(f"catch-up consumer: {error!r}", slow=False) from None

    def _end_catchup(self) -> None:
        if self._catchup is not None:
            self._hub.stop_later(self._catchup)
            self._catchup, self._catchup_tps = None, []

    def close(self) -> None:
        """The client has gone: uncount it, stop its catch-up (idempotent)."""
        if self._open:
            self._open = False
            self._end_catchup()
            self._hub.release()


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit, as Go's runtime and the JVM do: every
    client holds a socket, and a soft limit of 1024 would refuse connections long before
    SSE_MAX_CLIENTS."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # not allowed here (a container may refuse it): the soft limit stays
