"""Records kept one MongoDB document each, under their key as ``_id``: msgspec structs in, out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

import msgspec

R = TypeVar("R", bound=msgspec.Struct)


async def load_keyed(collection: Any, key: str, record_type: type[R], *, key_field: str = "key") -> R | None:
    """The record stored under ``key`` (its ``_id`` given back as ``key_field``); None when
    there is none."""
    document = await collection.find_one({"_id": key})
    if not document:
        return None
    document[key_field] = document.pop("_id")
    return msgspec.convert(document, record_type, strict=False)


async def store_keyed(collection: Any, record: msgspec.Struct, *, key_field: str = "key") -> None:
    """Store ``record`` under its ``key_field``, replacing what was stored there."""
    fields = msgspec.to_builtins(record, builtin_types=(datetime,))
    key = fields.pop(key_field)
    # _id in the document too: nx-27017 does not take it from the filter on an upsert.
    await collection.replace_one({"_id": key}, {"_id": key, **fields}, upsert=True)
