"""Per-partition RocksDB stores, their changelogs and restore, and window arithmetic."""
