"""The faust app the faust pipelines share: settings for tansu, state under the run's dir."""

from __future__ import annotations

import logging

import faust

from bench.pipelines.common import ChildConfig, Status

# faust's RocksDB store, on rocksdict (faust-streaming picks it when python-rocksdb is absent).
STORE = "rocksdb://"


def bench_app(config: ChildConfig) -> tuple[faust.App, Status]:
    """A faust app for one run (its own group and data dir) and the run's status."""
    app = faust.App(
        config.group,
        broker=f"kafka://{config.broker}",
        store=STORE,
        datadir=str(config.state_dir),
        topic_partitions=config.partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # tansu waits out these timeouts on a group's first join; faust's defaults crawl.
        broker_rebalance_timeout=3,
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        # orderstream's own value (app/main.py): with faust's default 0 every table write is
        # a produce request of its own, and the agent waits on the broker's round trips.
        producer_linger=0.005,
    )
    # faust's worker leaves aiokafka at DEBUG: log records nobody reads cost ~10% CPU.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    return app, Status(config.status_path, config.orders)
