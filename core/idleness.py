"""Which of this worker's orders partitions are idle, and the leases it gives them.

SPEC.md, Event time: a source partition that has been silent for IDLE_TIMEOUT of wall-clock
time and has nothing left to read is idle while its owner keeps renewing that, at least
every IDLE_TIMEOUT / 2. A lease says so until `now + 2 x IDLE_TIMEOUT` on this worker's
clock, so that a renewal reaches the receivers, two hops away, before the last lease ends,
and a worker that is gone stops holding nobody back within 2 x IDLE_TIMEOUT. Receivers
compare leases with their own clock, so the workers' clocks must roughly agree (NTP), as
Kafka's own record timestamps assume. Kept in memory: after a restart or a rebalance a
partition is active until it has been silent for IDLE_TIMEOUT again.
"""


class SourceIdleness:
    """Per orders partition this worker owns: when it last delivered, and its lease."""

    def __init__(self, idle_timeout_ms: int) -> None:
        self.idle_timeout_ms = idle_timeout_ms
        self._heard: dict[int, int] = {}
        self._backlog: dict[int, bool] = {}
        self._leases: dict[int, int] = {}

    def assigned(self, partitions: set[int], now_ms: int) -> None:
        """A new assignment: silence is counted from now."""
        self._heard = dict.fromkeys(partitions, now_ms)
        self._backlog = dict.fromkeys(partitions, True)
        self._leases.clear()

    def heard(self, partition: int, now_ms: int) -> None:
        """The partition delivered orders: active."""
        self._heard[partition] = now_ms
        self._leases.pop(partition, None)

    def backlog(self, partition: int, behind: bool) -> None:
        """Whether records are left to read in the partition, as the consumer last knew."""
        self._backlog[partition] = behind
        if behind:
            self._leases.pop(partition, None)

    def lease(self, partition: int, now_ms: int) -> int | None:
        """Until when the partition is idle (renewed every IDLE_TIMEOUT / 2), or None."""
        heard = self._heard.get(partition)
        if heard is None or self._backlog.get(partition, True) or (
                now_ms - heard < self.idle_timeout_ms):
            self._leases.pop(partition, None)
            return None
        lease = self._leases.get(partition)
        if lease is None or lease - now_ms <= self.idle_timeout_ms * 3 // 2:
            lease = self._leases[partition] = now_ms + 2 * self.idle_timeout_ms
        return lease

    def idle(self, partition: int) -> bool:
        """Whether a lease is out for the partition (for /metrics)."""
        return partition in self._leases
