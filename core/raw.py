"""Original message values as the service keeps them in its records: bounded."""

import hashlib

RAW_LIMIT_BYTES = 64 * 1024  # SPEC.md: a DLQ record's raw value is cut to this
# A message whose Kafka key is longer goes to the DLQ, keyed by the key's first
# KEY_LIMIT_BYTES: every record carrying a key as received (rekey, repartition, DLQ,
# late) stays bounded.
KEY_LIMIT_BYTES = 4 * 1024


def cut_raw(raw: bytes) -> tuple[bytes, int | None, str | None]:
    """A value as a DLQ record holds it: whole, or its first 64 KiB with its size and
    SHA-256 (hex)."""
    if len(raw) <= RAW_LIMIT_BYTES:
        return raw, None, None
    return raw[:RAW_LIMIT_BYTES], len(raw), hashlib.sha256(raw).hexdigest()


def key_beyond_limit(key: bytes | None) -> bool:
    """True for a Kafka key longer than KEY_LIMIT_BYTES."""
    return key is not None and len(key) > KEY_LIMIT_BYTES
