"""Original message values as the service keeps them in its records: bounded."""

import hashlib

RAW_LIMIT_BYTES = 64 * 1024  # SPEC.md: a DLQ record's raw value is cut to this
# A message whose Kafka key is longer goes to the DLQ, keyed by the key's first
# KEY_LIMIT_BYTES: every record carrying a key as received (rekey, repartition, DLQ,
# late) stays bounded.
KEY_LIMIT_BYTES = 4 * 1024


def cut_raw(raw: bytes, limit: int = RAW_LIMIT_BYTES) -> tuple[bytes, int | None, str | None]:
    """Bytes as a DLQ record holds them (a value; a key with KEY_LIMIT_BYTES): whole, or
    their first `limit` bytes with their size and SHA-256 (hex)."""
    if len(raw) <= limit:
        return raw, None, None
    return raw[:limit], len(raw), hashlib.sha256(raw).hexdigest()
