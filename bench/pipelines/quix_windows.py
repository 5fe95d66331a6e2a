"""The peer: Quix Streams doing GROUP BY buyer and a 10 s tumbling count, as a subprocess.

    python bench/pipelines/quix_windows.py     # settings from BENCH_* (see common.ChildConfig)

Event time is the order's `order_time` (a timestamp extractor), the window's grace is the whole
event-time span of the input, so no order is late after the repartition reorders them.
Quix's defaults otherwise: at-least-once, changelog topics, RocksDB state in its own state dir.
`.current()` emits one update per order counted; the run is done when N updates came out, and
the latest count of every (buyer, window) must then add up to N.
"""

from __future__ import annotations

import logging
from typing import Any

from quixstreams import Application
from quixstreams.models.topics import Topic, TopicAdmin, TopicManager

from bench.pipelines.common import ChildConfig, Status, order_time_ms

WINDOW_MS = 10_000
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


def order_timestamp(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    """Quix's timestamp extractor: event time from the order, not from the broker."""
    return order_time_ms(value)


def buyer_key(order: dict[str, Any]) -> str:
    """The GROUP BY key: both names, with a separator no name contains."""
    buyer = order["buyer"]
    return f"{buyer['first_name']}\x1f{buyer['last_name']}"


def build(config: ChildConfig, status: Status) -> Application:
    """The application: orders -> group_by buyer -> tumbling 10 s count -> a counting sink."""
    latest: dict[tuple[str, int], int] = {}  # (buyer, window start) -> its latest count
    late: list[int] = []
    app = Application(
        broker_address=config.broker, consumer_group=config.group,
        state_dir=str(config.state_dir), auto_offset_reset="earliest", loglevel="WARNING",
        topic_manager=TansuTopicManager(topic_admin=TopicAdmin(broker_address=config.broker),
                                        consumer_group=config.group),
    )

    def on_timestamp(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
        status.on_consumed()  # called once per input record, before anything else
        return order_timestamp(value, headers, timestamp, timestamp_type)

    def settle() -> None:
        """Once every order is either counted or dropped as late: the checks, and stop."""
        if status.counted + len(late) >= config.orders:
            status.finish({"sum of window counts": (sum(latest.values()), config.orders),
                           "orders dropped as late": (len(late), 0)})
            app.stop()

    def on_late(value: Any, key: Any, timestamp_ms: int, *args: Any, **kwargs: Any) -> bool:
        late.append(timestamp_ms)
        settle()
        return True  # and let Quix log it

    def on_update(window: dict[str, Any], key: str, timestamp: int, headers: Any) -> None:
        latest[key, window["start"]] = window["value"]
        status.on_counted()
        settle()

    orders = app.topic(config.topic, value_deserializer="json", timestamp_extractor=on_timestamp)
    sdf = app.dataframe(orders).group_by(buyer_key, name="buyer")
    sdf = sdf.tumbling_window(WINDOW_MS, grace_ms=config.event_span_ms + WINDOW_MS,
                              on_late=on_late).count().current()
    sdf.update(on_update, metadata=True)
    return app


def main() -> None:
    """Run until N orders are counted (the sink stops the app), then write the status."""
    logging.basicConfig(level=logging.WARNING)
    config = ChildConfig.from_env()
    status = Status(config.status_path, config.orders)
    build(config, status).run()
    if status.done_at is None:
        status.finish({}, error=f"stopped after {status.counted:,}/{config.orders:,} counted")


if __name__ == "__main__":
    main()
