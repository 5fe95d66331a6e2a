"""A dict standing in for a partition store (tables.store.PartitionStore's read side)."""

from core.aggregate import BatchResult
from core.aggregation import AggregateConfig, close_windows


class DictStore(dict):
    def read(self, keys):
        return [self.get(k) for k in keys]

    def scan(self, prefix, first_key=None):
        for key in sorted(self):
            if key.startswith(prefix) and key >= (first_key or prefix):
                yield key, self[key]

    def apply(self, updates):
        for key, value in updates.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value

    def close(self, config: AggregateConfig, limit: int = 1) -> BatchResult:
        """Close windows as the aggregation agent does, in steps of about `limit` rows (by
        default the smallest: one window start or session end at a time), each applied
        before the next is read; every step's finals and updates (`close_steps`: how many
        steps it took)."""
        done, more, self.close_steps = BatchResult(), True, 0
        while more:
            step = close_windows(config, self.read, self.scan, limit)
            self.apply(step.updates)
            done.finals.extend(step.finals)
            done.updates.update(step.updates)
            self.close_steps += 1
            more = step.more
        return done
