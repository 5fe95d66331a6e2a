"""A dict standing in for a partition store (tables.store.PartitionStore's read side)."""


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
