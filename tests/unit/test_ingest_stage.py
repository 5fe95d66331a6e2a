"""The ingest stage's own bookkeeping (agents.ingest.IngestStage): the lag it shows per
orders partition follows the assignment."""

from types import SimpleNamespace

from agents.ingest import IngestStage
from app.metrics import Metrics
from app.settings import Settings
from app.topics import topic_names
from core.ingest import IngestResult
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


def test_a_batch_moves_each_operator_by_what_its_result_says():
    names, metrics = topic_names(Settings()), Metrics()
    stage = IngestStage(None, None, None, names, metrics, lambda: None,
                        highwater=lambda topic, partition: None, idle_timeout_ms=30_000)
    # 12 read, 2 of them read again after a restart: 10 parsed, 3 invalid; 9 decided here
    # (2 copies from other partitions among them): 1 duplicate, 1 conflict, 1 too old
    stage._count(IngestResult(read=12, parsed=10, invalid=3, decided=9,  # noqa: SLF001
                              duplicates=1, conflicts=1, too_old=1))

    def moved(direction: str, operator: str) -> float | None:
        return metrics.registry.get_sample_value(
            f"orderstream_operator_records_{direction}_total", {"operator": operator})

    assert [(moved("in", op), moved("out", op)) for op in ("source", "parse", "dedup")] == [
        (12, 12), (10, 7), (9, 6)]
    assert metrics.registry.get_sample_value("orders_processed_total") == 12
