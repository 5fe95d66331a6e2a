"""Topic configs (SPEC.md, Topics): what the service creates, and which existing configs
of an internal topic lose state."""

import pytest

from app.settings import Settings
from app.topics import topic_configs, unsafe_config


def test_changelogs_and_outputs_compact_repartitions_keep_everything():
    configs = topic_configs(Settings(_env_file=None, max_message_bytes="4MiB"), replication=1)
    assert configs["orderstream-dedup-changelog"] == {"cleanup.policy": "compact"}
    assert configs["orderstream-aggregate-changelog"] == {"cleanup.policy": "compact"}
    assert configs["buyer-totals"] == configs["window-results"] == {"cleanup.policy": "compact"}
    assert configs["orderstream-orders-by-buyer"] == configs["orderstream-orders-by-number"] == {
        "cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1",
        "max.message.bytes": str(2 * 4 * 1024 * 1024 + 64 * 1024)}
    assert configs["orders"] == configs["orders-dlq"] == configs["orders-late"] == {}


def test_three_replicas_need_two_in_sync_everywhere():
    configs = topic_configs(Settings(_env_file=None), replication=3)
    assert {c.get("min.insync.replicas") for c in configs.values()} == {"2"}
    assert topic_configs(Settings(_env_file=None), replication=2)["orders"] == {}


@pytest.mark.parametrize(("configs", "changelog", "unsafe"), [
    ({"cleanup.policy": "compact", "retention.ms": "604800000"}, True, None),
    ({"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}, True, None),
    ({}, True, None),  # tansu reports only what was set: its topics never expire
    ({"cleanup.policy": "delete", "retention.ms": "604800000"}, True,
     "changelog t has cleanup.policy=delete, retention.ms=604800000: retention would delete "
     "state; it must be compacted (cleanup.policy=compact)"),
    ({"cleanup.policy": "compact,delete", "retention.bytes": "1000"}, True,
     "changelog t has cleanup.policy=compact,delete, retention.bytes=1000: retention would "
     "delete state; it must be compacted (cleanup.policy=compact)"),
    ({"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}, False, None),
    ({"cleanup.policy": "compact"}, False,
     "repartition topic t has cleanup.policy=compact: its records have no key; it must be "
     "cleanup.policy=delete with retention.ms=-1"),
    ({"cleanup.policy": "delete", "retention.ms": "86400000"}, False,
     "repartition topic t has cleanup.policy=delete, retention.ms=86400000: records not yet "
     "processed would be deleted; it must keep them (retention.ms=-1, retention.bytes=-1)"),
])
def test_unsafe_internal_configs_are_named(configs, changelog, unsafe):
    assert unsafe_config("t", configs, changelog) == unsafe
