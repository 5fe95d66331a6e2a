"""The ingest stage's own bookkeeping (agents.ingest.IngestStage): the lag it shows per
orders partition follows the assignment."""

from types import SimpleNamespace

from agents.ingest import IngestStage
from app.metrics import Metrics
from app.settings import Settings
from app.topics import topic_names
from tables.store import PartitionStore


def test_a_partition_taken_away_shows_no_lag_any_more(tmp_path):
    # an independent acceptance run saw /instances add up the lag of partitions a worker
    # had lost in a rebalance, minutes after every order was counted
    names, metrics = topic_names(Settings()), Metrics()
    stage = IngestStage(None, None, None, names, metrics, lambda: None,
                        highwater=lambda topic, partition: 10, idle_timeout_ms=30_000)
    store = PartitionStore(tmp_path / "0")
    stage.assigned({0, 1, 2}, now_ms=0)
    for partition, last in ((0, 4), (1, 9), (2, 2)):
        stage._check_backlog(partition, store, [  # noqa: SLF001 - what a batch calls
            SimpleNamespace(topic=names.orders, offset=last)])

    def lag(partition: int) -> float | None:
        return metrics.registry.get_sample_value(
            "orderstream_consumer_lag", {"topic": names.orders, "partition": str(partition)})

    assert [lag(p) for p in (0, 1, 2)] == [5, 0, 7]
    stage.assigned({1, 3}, now_ms=1)
    assert [lag(p) for p in (0, 1, 2, 3)] == [None, 0, None, None]
    stage.assigned(set(), now_ms=2)
    assert lag(1) is None
    store.close()
