"""At start: is local state usable against this broker? Catches a broker that lost its topics."""

import fcntl
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from aiokafka.errors import KafkaError

from app.brokerwatch import Loss, Positions, Watch
from app.settings import Settings
from app.topics import topic_names
from core.schema import READ_KEY
from core.sources import held_offsets
from tables.store import PartitionStore

log = logging.getLogger(__name__)


class StateError(RuntimeError):
    """Local state cannot be used; the message says what to do."""


MIN_FREE_BYTES = 64 * 1024 * 1024
STAGES = ("dedup", "aggregate")  # the state dirs of the partition stores
TOPIC_IDS_FILE = "topic-ids.json"  # the id of each topic the state holds positions in


def saved_topic_ids(settings: Settings) -> dict[str, bytes]:
    """The topic ids the state was built against (`save_topic_ids`)."""
    path = settings.state_dir / TOPIC_IDS_FILE
    if not path.exists():
        return {}
    return {topic: bytes.fromhex(hexed) for topic, hexed in json.loads(path.read_text()).items()}


def save_topic_ids(settings: Settings, ids: Mapping[str, bytes]) -> None:
    """Keep the ids with the state: a topic recreated and refilled while no worker ran
    passes an offset check at the next start, but not this one."""
    path = settings.state_dir / TOPIC_IDS_FILE
    staged = path.with_suffix(".tmp")
    staged.write_text(json.dumps({topic: ids[topic].hex() for topic in sorted(ids)}))
    staged.replace(path)


def check_writable(state_dir: Path) -> None:
    """DATA_DIR must be creatable, writable and have room: fail before any store opens."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        probe = state_dir / ".write-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise StateError(f"DATA_DIR {state_dir.parent} is not writable: {error}") from None
    free = shutil.disk_usage(state_dir).free
    if free < MIN_FREE_BYTES:
        raise StateError(
            f"DATA_DIR {state_dir.parent} has {free // (1024 * 1024)} MiB free; RocksDB needs "
            f"at least {MIN_FREE_BYTES // (1024 * 1024)} MiB: free some space or point "
            f"DATA_DIR elsewhere")


def reconcile_windows(settings: Settings) -> tuple[str, ...]:
    """Compare WINDOWS with what the state was built with; return windows to drop.

    New windows start empty, removed ones are dropped (their rows deleted as the
    aggregation runs): one WARNING line says which.
    """
    path = settings.state_dir / "windows.json"
    current = [w.name for w in settings.windows]
    saved = json.loads(path.read_text()) if path.exists() else {"windows": current}
    added = [n for n in current if n not in saved["windows"]]
    removed = [n for n in saved["windows"] if n not in current]
    dropped = sorted((set(saved.get("dropped", [])) | set(removed)) - set(current))
    if added or removed:
        log.warning("WINDOWS changed against the state in %s: %s", settings.state_dir, "; ".join(
            [f"{n} is new and starts empty" for n in added]
            + [f"{n} was removed and its state is dropped" for n in removed]))
    path.write_text(json.dumps({"windows": current, "dropped": dropped}))
    return tuple(dropped)


def stage_positions(store: PartitionStore, changelog: str, read_topic: str | None,
                    partition: int) -> dict[tuple[str, int], int]:
    """Every position on the broker one store reflects: its changelog offset, the input
    records it applied, and (`read_topic`) the last repartition record it read."""
    held = dict(held_offsets(store.scan))
    if store.changelog_offset >= 0:
        held[(changelog, partition)] = store.changelog_offset
    if read_topic is not None and (read := store.get(READ_KEY)) is not None:
        held[(read_topic, partition)] = int(read)
    return held


def merge_positions(into: dict[tuple[str, int], int], held: Positions) -> None:
    """Keep the larger offset per partition."""
    for tp, offset in held.items():
        into[tp] = max(offset, into.get(tp, -1))


def local_positions(settings: Settings) -> dict[tuple[str, int], int]:
    """The positions every store on disk reflects (each opened briefly)."""
    names = topic_names(settings)
    held: dict[tuple[str, int], int] = {}
    for stage, changelog, read_topic in (("dedup", names.dedup_changelog, None),
                                         ("aggregate", names.aggregate_changelog,
                                          names.by_buyer)):
        stage_dir = settings.state_dir / stage
        for path in sorted(stage_dir.iterdir()) if stage_dir.is_dir() else ():
            if path.name.isdigit():
                store = PartitionStore(path)
                try:
                    merge_positions(held, stage_positions(store, changelog, read_topic,
                                                          int(path.name)))
                finally:
                    store.close()
    return held


def lost_message(settings: Settings, loss: Loss, doing: str) -> str:
    """The one line that says what the broker lost and the one command that starts over."""
    return (f"the broker at {','.join(settings.broker_urls)} lacks records the state in "
            f"{settings.state_dir} reflects: {loss.detail} (lost: {loss.topics}); {doing}. "
            f"To start over from the orders topic: stop every worker, then run "
            f"`faust -A app reset` where each worker's DATA_DIR is")


def discard_state(settings: Settings) -> None:
    """Remove the stores of every stage (the broker lock and markers stay)."""
    for stage in STAGES:
        shutil.rmtree(settings.state_dir / stage, ignore_errors=True)
    (settings.state_dir / TOPIC_IDS_FILE).unlink(missing_ok=True)


def _built_on_embedded(settings: Settings) -> bool:
    """Whether the state in the state dir was built on the embedded broker (broker.json)."""
    marker = settings.state_dir / "broker.json"
    return marker.exists() and bool(json.loads(marker.read_text())["embedded"])


def check_orders_partitions(settings: Settings, partitions: Mapping[str, int]) -> None:
    """Refuse state built for another partition count of the orders topic, in one line.

    The dedup stores, their changelog and the rekey topic are partitioned like the orders
    topic, which fixes their count when they are first created: a count that differs
    now (partitions added to the orders topic, or the topic recreated) would hand an
    order number to a partition whose store never saw it. Local dedup stores numbered
    past the orders topic's partitions say the same when the internal topics were
    recreated but DATA_DIR was kept (not on the embedded broker: `reconcile` discards
    state built on it).
    """
    names = topic_names(settings)
    new = partitions[names.orders]
    differ = {t: partitions[t] for t in (names.dedup_changelog, names.rekey)
              if partitions[t] != new}
    seen: list[str] = []
    for count in sorted(set(differ.values())):
        topics = [t for t, n in differ.items() if n == count]
        seen.append(f"{' and '.join(topics)} {'have' if len(topics) > 1 else 'has'} {count}")
    old = next(iter(differ.values()), new)  # the dedup changelog's count first
    stage_dir = settings.state_dir / "dedup"
    if not (settings.embedded_broker or _built_on_embedded(settings)) and stage_dir.is_dir():
        last = max((int(p.name) for p in stage_dir.iterdir() if p.name.isdigit()), default=-1)
        if last >= new:
            seen.append(f"{stage_dir} holds the store of partition {last}")
            old = old if differ else last + 1
    if not seen:
        return
    raise StateError(
        f"the orders topic {names.orders} has {new} partitions but the state was built for "
        f"{old} ({'; '.join(seen)}): dedup state cannot move between partition counts. To "
        f"start over from the orders topic: stop every worker, then run `faust -A app "
        f"reset` where each worker's DATA_DIR is"
    )


async def reconcile(settings: Settings) -> dict[str, bytes]:
    """Discard (embedded broker) or refuse (external broker) state the broker lost; the
    topic ids the state kept is built against (none once discarded)."""
    held = local_positions(settings)
    built_on_embedded = _built_on_embedded(settings)
    marker = settings.state_dir / "broker.json"
    marker.write_text(json.dumps({"embedded": settings.embedded_broker,
                                  "brokers": settings.broker_urls}))
    watch = Watch(settings.kafka_client, saved_topic_ids(settings) if held else {})
    try:
        loss = await watch.ask(held) if held else None
    except (KafkaError, OSError, TimeoutError) as error:
        raise StateError(f"the broker at {','.join(settings.broker_urls)} did not answer the "
                         f"state check: {error!r}") from None
    finally:
        await watch.stop()
    if loss is None:
        save_topic_ids(settings, watch.ids)
        return watch.ids
    if settings.embedded_broker or built_on_embedded:
        discard_state(settings)
        why = ("the embedded broker keeps nothing across restarts" if settings.embedded_broker
               else "that state was built on the embedded broker, which keeps nothing")
        log.warning("the broker at %s has lost %s (%s) while %s held state built from it: "
                    "removed it and starting clean", ",".join(settings.broker_urls),
                    loss.topics, why, settings.state_dir)
        return {}
    raise StateError(lost_message(settings, loss, "refusing to start on inconsistent state"))


LOCK_FILE = "worker.lock"


class StateDirLock:
    """An exclusive `flock` on a file in the state dir, held for the life of the worker.

    The kernel drops it when the process ends, however it ends: a worker started right
    after a `kill -9` finds it free, even while the old pid is a zombie or reused. The
    file also names the holder's pid, for the refusal of a second live worker.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or refuse in one line when another live process holds it."""
        data_dir = self.path.parent.parent.resolve()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise StateError(f"DATA_DIR {data_dir}: cannot open {self.path}: "
                             f"{error.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateError(
                f"DATA_DIR {data_dir} is in use by another worker (pid {holder}): give each "
                f"worker its own DATA_DIR") from None
        except OSError as error:  # a filesystem without locks (some network or FUSE mounts)
            os.close(fd)
            raise StateError(f"DATA_DIR {data_dir} cannot be locked ({error.strerror}): put it "
                             f"on a local filesystem") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
