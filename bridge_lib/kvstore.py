"""JetStream key-value buckets: created on first use from their spec in ``contracts.subjects``."""

from __future__ import annotations

from typing import Any

import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from contracts.subjects import BucketSpec


async def ensure_bucket(js: Any, spec: BucketSpec) -> Any:
    """The bucket (a ``nats.js.kv.KeyValue``), created with the spec's settings if missing."""
    try:
        return await js.key_value(spec.name)
    except nats.js.errors.BucketNotFoundError:
        pass
    config = KeyValueConfig(
        bucket=spec.name,
        description=spec.description,
        history=1,
        ttl=spec.ttl_s or None,
        storage=StorageType.FILE,
    )
    try:
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError:
        # Another replica created it a moment ago.
        return await js.key_value(spec.name)
