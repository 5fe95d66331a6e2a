"""The peer: orderstream's job written the way Quix Streams' docs write it, as a subprocess.

    python -m bench.pipelines.quix_windows     # settings from BENCH_* (see common.ChildConfig)

    orders (event time: a timestamp extractor on `order_time`)
      -> {buyer, cents} (a projection: the docs' advice before a group_by and branches)
      -> group_by buyer
           |- stateful apply, [count, cents] per buyer         -> <group>-buyer-totals
           |- tumbling_window(10 s).agg(count, sum, min, max).final() -> <group>-window-results
           '- hopping_window(1 min, 10 s).agg(...).final()          -> <group>-window-results

The same results as orderstream's defaults (bench/pipelines/job.py), to Kafka topics as
orderstream's go. Quix's defaults otherwise: at-least-once, a checkpoint every 5 s,
changelog topics, RocksDB state in its own state dir, the "key" closing strategy.
With BENCH_EXACTLY_ONCE=1 (`quix-eos`, on Apache Kafka only: tansu has no transactions)
`processing_guarantee="exactly-once"`: each checkpoint is one Kafka transaction.
On tansu Quix gets a TopicManager that supplies the `retention.ms` tansu does not report
(`TansuTopicManager`); on Apache Kafka, Quix's own.

It does no bench work per order beyond counting it in (the status file is written at the
first order and once more when the app stops). The bench (bench/quix.py) watches the
totals topic from outside and stops the app with SIGTERM once every order's total is in it.
"""

from __future__ import annotations

import logging
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import Count, Max, Min, Sum
from quixstreams.models.topics import Topic, TopicAdmin, TopicConfig, TopicManager
from quixstreams.state import State

from bench.pipelines.common import ChildConfig, Status, order_time_ms
from bench.pipelines.job import HOP, TUMBLE, buyer_key, price_cents, results_topic, totals_topic

# What a Kafka broker reports when the topic sets none (log.retention.hours=168).
KAFKA_DEFAULT_RETENTION_MS = str(7 * 24 * 3600 * 1000)


class TansuTopicManager(TopicManager):
    """Quix's TopicManager, defaulting `retention.ms`, which tansu leaves out of topic configs.

    Quix derives its repartition and changelog topics' configs from the input topic's and
    raises KeyError without `retention.ms`.
    """

    def _configure_topic(self, topic: Topic, broker_topic: Topic) -> Topic:
        topic = super()._configure_topic(topic, broker_topic)
        topic.broker_config.extra_config.setdefault("retention.ms", KAFKA_DEFAULT_RETENTION_MS)
        return topic


def grace_ms(config: ChildConfig) -> int:
    """The windows' grace: the input's whole event-time span, so that no order is late.

    Quix closes a window once its key's latest event time passes the window's end plus the
    grace; Quix 3.28 has no watermarks. Over the bench's pre-produced input it reads the
    input partitions unevenly: on the repartition topic (N=200k, 20 buyers) 75% of the
    orders came behind their buyer's latest event time, by 60 s at the median and by up to
    the whole span (200 s). With a 5 s or a 60 s grace most orders were dropped as late.
    orderstream aligns its inputs and drops none; for the same results no window here
    closes before the input ends.
    """
    return config.event_span_ms + HOP.size_ms


def project(order: dict[str, Any]) -> dict[str, Any]:
    """Only what the job reads: the buyer and the price in integer cents."""
    return {"buyer": buyer_key(order), "cents": price_cents(order["price"])}


def add_to_total(order: dict[str, Any], state: State) -> dict[str, int]:
    """The buyer's running count and sum, kept in Quix's state (the docs' GroupBy example)."""
    count, cents = state.get("total", (0, 0))
    total = (count + 1, cents + order["cents"])
    state.set("total", total)
    return {"count": total[0], "cents": total[1]}


def named(window: str) -> Any:
    """Adds the window's name to its results (both windows write to one topic)."""
    return lambda result: {"window": window, **result}


def build(config: ChildConfig, status: Status, late: list[int]) -> Application:
    """The application; `late` collects the event time of each (order, window) dropped as
    late."""
    tansu = config.broker_kind == "tansu"
    if config.exactly_once and tansu:
        raise SystemExit("exactly-once needs transactions, which tansu does not have")
    app = Application(
        broker_address=config.broker, consumer_group=config.group,
        state_dir=str(config.state_dir), auto_offset_reset="earliest", loglevel="WARNING",
        processing_guarantee="exactly-once" if config.exactly_once else "at-least-once",
        topic_manager=TansuTopicManager(topic_admin=TopicAdmin(broker_address=config.broker),
                                        consumer_group=config.group) if tansu else None,
    )

    def order_timestamp(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        """Event time from the order, not from the broker (Quix's timestamp extractor)."""
        status.on_consumed()  # a counter; the file is written at the first order only
        return order_time_ms(value)

    def on_late(value: Any, key: Any, timestamp_ms: int, *args: Any, **kwargs: Any) -> bool:
        late.append(timestamp_ms)
        return False  # counted here; the bench reports them

    grace = grace_ms(config)
    # kept for ever, like orderstream's compacted outputs: Quix stamps its records with the
    # orders' event time, fixed in the past, which a 7-day retention would delete at once
    output = TopicConfig(num_partitions=config.partitions, replication_factor=1,
                         extra_config={"retention.ms": "-1"})
    orders = app.topic(config.topic, value_deserializer="json",
                       timestamp_extractor=order_timestamp)
    totals = app.topic(totals_topic(config.group), key_serializer="str", config=output)
    results = app.topic(results_topic(config.group), key_serializer="str", config=output)

    sdf = app.dataframe(orders).apply(project).group_by("buyer")
    sdf.apply(add_to_total, stateful=True).to_topic(totals)
    for spec, window in (
        (TUMBLE, sdf.tumbling_window(TUMBLE.size_ms, grace_ms=grace, on_late=on_late)),
        (HOP, sdf.hopping_window(HOP.size_ms, HOP.step_ms, grace_ms=grace,
                                 on_late=on_late)),
    ):
        stats = window.agg(count=Count(), sum=Sum("cents"), min=Min("cents"), max=Max("cents"))
        stats.final().apply(named(spec.name)).to_topic(results)
    return app


def main() -> None:
    """Run until the bench stops it (SIGTERM), then write the status once more."""
    logging.basicConfig(level=logging.WARNING)
    config = ChildConfig.from_env()
    status = Status(config.status_path, config.orders)
    late: list[int] = []
    build(config, status, late).run()
    status.finish({"window updates dropped as late": (len(late), 0)})


if __name__ == "__main__":
    main()
