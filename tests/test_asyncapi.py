"""The AsyncAPI document in docs/asyncapi/ is current, and the contracts catalogue is complete."""

from __future__ import annotations

import typing

from bridge_cli.architecture_doc import rendered
from bridge_cli.asyncapi import OUTPUT, build_document, render
from contracts.events import AnyEvent
from contracts.subjects import ALL_STREAMS, CATALOGUE, CONSUMERS
from tests.support import REPO_ROOT


def test_the_checked_in_asyncapi_document_is_current() -> None:
    checked_in = (REPO_ROOT / OUTPUT).read_text(encoding="utf-8")
    assert checked_in == render(), "docs/asyncapi/bridge.yaml is stale: run `make asyncapi` and commit it"


def test_every_event_type_is_published_somewhere_in_the_catalogue() -> None:
    tags = {event_type.__struct_config__.tag for event_type in typing.get_args(AnyEvent)}
    catalogued = {tag for spec in CATALOGUE for tag in spec.event_tags}
    assert tags == catalogued
    streams = {spec.name for spec in ALL_STREAMS}
    assert {spec.stream for spec in CATALOGUE} <= streams


def test_every_consumer_channel_has_a_typed_payload_and_names_its_durable_consumer() -> None:
    document = build_document()
    receiving = [c for c in document["channels"].values() if "Consumed by" in c.get("description", "")]
    # Every durable consumer of the catalogue, the batch readers among them.
    assert len(receiving) == len(CONSUMERS) == 14
    in_order = [c["description"] for c in receiving if "in ordered batches" in c["description"]]
    order_aside = [
        c["description"] for c in receiving if "batches of up to 100, order aside" in c["description"]
    ]
    assert (len(in_order), len(order_aside)) == (3, 1)
    for message in document["components"]["messages"].values():
        payload = message["payload"]
        refs = payload.get("oneOf", [payload])
        assert refs, message["title"]
        for ref in refs:
            assert ref["$ref"].split("/")[-1] in document["components"]["schemas"]


def test_the_architecture_docs_tables_are_current() -> None:
    path = REPO_ROOT / "docs" / "architecture.md"
    text = path.read_text(encoding="utf-8")
    assert rendered(text) == text, "run `make asyncapi` (it rewrites docs/architecture.md's tables)"
