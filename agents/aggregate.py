"""The aggregate agent: orders grouped by buyer in, RocksDB state, buyer-totals and print out.

Per partition and batch: skip orders already applied (by source offset), fold the
rest into totals and window rows, send the changelog record and the buyer-totals
upserts, and only once the broker has them, print and commit the store.
"""

import sys
from collections import defaultdict
from typing import Any

import faust

from app.runtime import Runtime
from core.aggregate import apply_batch
from core.shuffle import decode_shuffle
from core.sinks import buyer_total_records, print_lines
from tables.changelog import encode_updates

BATCH_WAIT_S = 0.02
MAX_RECORDS_PER_BATCH = 32


def register_aggregate(app: faust.App, runtime: Runtime) -> None:
    """Declare the agent on the internal by-buyer topic."""
    topic = app.topic(runtime.names.by_buyer, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")

    @app.agent(topic, name="aggregate")
    async def aggregate(stream: faust.StreamT[Any]) -> None:
        async for events in stream.noack_take(MAX_RECORDS_PER_BATCH, within=BATCH_WAIT_S):
            by_partition: dict[int, list[bytes]] = defaultdict(list)
            for event in events:
                by_partition[event.message.partition].append(event.message.value)
            for partition, values in by_partition.items():
                await apply_partition(runtime, partition, values)
            for event in events:
                await stream.ack(event)


async def apply_partition(runtime: Runtime, partition: int, values: list[bytes]) -> None:
    """Apply one partition's repartition records to its store, exactly once per order."""
    names, settings = runtime.names, runtime.settings
    async with runtime.aggregates.holding(partition) as store:
        if store is None:  # revoked meanwhile: the new owner applies these
            return
        result = apply_batch([decode_shuffle(v) for v in values], settings.windows,
                             store.get_many)
        if not result.counted:
            return
        sent = await runtime.producer.send_all(
            [(names.aggregate_changelog, None, encode_updates(result.updates), partition)]
            + [(names.buyer_totals, key, value, None)
               for key, value in buyer_total_records(result.total_changes)]
        )
        if settings.print_sink:  # before the commit: a crash here repeats lines, never loses them
            _print("\n".join(print_lines(result.total_changes)) + "\n")
        store.commit(result.updates, changelog_offset=sent[0].offset)
    runtime.metrics.counted.inc(result.counted)


def _print(text: str) -> None:
    # The real stdout: faust's worker redirects sys.stdout into its log.
    out = sys.__stdout__ or sys.stdout
    out.write(text)
    out.flush()
