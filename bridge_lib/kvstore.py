"""JetStream key-value buckets: created on first use from their spec in ``contracts.subjects``."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, Protocol

import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from bridge_lib.jetstream_ready import when_jetstream_ready
from contracts.subjects import BucketSpec


async def ensure_bucket(js: Any, spec: BucketSpec, *, replicas: int = 1) -> Any:
    """The bucket (a ``nats.js.kv.KeyValue``), created with the spec's settings if missing.

    ``replicas`` as for the streams (``NATS_STREAM_REPLICAS``): a bucket kept on one node of a
    cluster stops every lease and pace with that node. A bucket made with fewer copies (say,
    before the cluster grew) is raised to ``replicas``.
    """
    try:
        bucket = await js.key_value(spec.name)
    except nats.js.errors.BucketNotFoundError:
        pass
    else:
        await _raise_replicas(js, spec, replicas)
        return bucket
    config = KeyValueConfig(
        bucket=spec.name,
        description=spec.description,
        history=1,
        ttl=spec.ttl_s or None,
        storage=StorageType.FILE,
        replicas=replicas,
    )
    try:
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError:
        # Another replica created it a moment ago.
        return await js.key_value(spec.name)


class BucketSettings(Protocol):
    """What a service's settings say about its buckets: their copies, and how long start-up waits."""

    nats_stream_replicas: int
    nats_startup_timeout_s: float


async def bucket_when_ready(js: Any, spec: BucketSpec, settings: BucketSettings) -> Any:
    """``ensure_bucket`` at a service's start: retried while JetStream is not ready yet."""
    return await when_jetstream_ready(
        f"the {spec.name} bucket",
        partial(ensure_bucket, js, spec, replicas=settings.nats_stream_replicas),
        timeout_s=settings.nats_startup_timeout_s,
    )


async def read_entry(kv: Any, key: str) -> tuple[bytes | None, int]:
    """(value, revision); (None, 0) when the key does not exist (never set, or deleted)."""
    try:
        entry = await kv.get(key)
    except nats.js.errors.NotFoundError:
        return None, 0
    return entry.value, int(entry.revision)


async def compare_and_set(kv: Any, key: str, value: bytes, revision: int) -> int | None:
    """Write ``value`` if the key is still at ``revision`` (0: absent): the new revision, or
    None if someone was first."""
    try:
        if revision:
            return int(await kv.update(key, value, last=revision))
        return int(await kv.create(key, value))
    except nats.js.errors.KeyWrongLastSequenceError:
        return None


async def _raise_replicas(js: Any, spec: BucketSpec, replicas: int) -> None:
    info = await js.stream_info(f"KV_{spec.name}")
    if (info.config.num_replicas or 1) < replicas:
        await js.update_stream(replace(info.config, num_replicas=replicas))
