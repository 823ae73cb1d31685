"""Inventory writes use optimistic concurrency: a writer that read an older record gets a
clear conflict, never overwrites, and never deletes another writer's shards. Real API server.
"""

from __future__ import annotations

import base64

import pytest
from kubernetes import client

from sync_agent import conventions, errors, inventory
from sync_agent.inventory import Entry, InventoryConflict
from tests import test_inventory
from tests.test_inventory import NS, SHA_B, record, ref, shards_of, synthetic

new_name = test_inventory.new_name  # a fixture; `kube` is conftest's


def test_a_save_on_a_version_another_writer_replaced_is_a_conflict_and_changes_nothing(
        kube, new_name):
    name = new_name()
    inventory.save(kube, record(name, [Entry(ref("ConfigMap", "first"), "v1")]))
    mine = inventory.load(kube, name)
    theirs = record(name, [Entry(ref("ConfigMap", "theirs"), "v1")], revision=SHA_B)
    inventory.save(kube, theirs, expected=mine.resource_version)

    with pytest.raises(InventoryConflict) as failure:
        inventory.save(kube, record(name, [Entry(ref("ConfigMap", "mine"), "v1")]),
                       expected=mine.resource_version)

    message = str(failure.value)
    assert message.startswith(f"inventory {name!r}: ConfigMap {NS}/inventory-{name} was "
                              "changed by another writer since this run read it")
    assert "nothing was overwritten" in message
    assert errors.kind(failure.value) is errors.Conflict
    assert inventory.load(kube, name) == theirs


def test_creating_an_inventory_another_writer_created_meanwhile_is_a_conflict(kube, new_name):
    name = new_name()
    theirs = record(name, [Entry(ref("ConfigMap", "theirs"), "v1")])
    inventory.save(kube, theirs, expected="")  # "" : this writer read no inventory

    with pytest.raises(InventoryConflict, match="read no inventory"):
        inventory.save(kube, record(name, [Entry(ref("ConfigMap", "mine"), "v1")]),
                       expected="")
    assert inventory.load(kube, name) == theirs


def test_each_save_returns_the_version_the_next_one_must_name(kube, new_name):
    name = new_name()
    version = inventory.save(kube, record(name, synthetic(12_000)), expected="")
    grown = record(name, synthetic(13_000), revision=SHA_B)
    version = inventory.save(kube, grown, expected=version)
    assert inventory.load(kube, name).resource_version == version
    assert inventory.load(kube, name) == grown


def test_a_conflicting_sharded_save_leaves_the_other_writers_shards_intact(kube, api_client,
                                                                            new_name):
    name = new_name()
    inventory.save(kube, record(name, synthetic(12_000)))
    read_by_both = inventory.load(kube, name).resource_version
    theirs = record(name, synthetic(12_000), revision=SHA_B)
    inventory.save(kube, theirs, expected=read_by_both)
    their_shards = {cm.metadata.name for cm in shards_of(api_client, name)}
    assert len(their_shards) >= 2

    with pytest.raises(InventoryConflict):
        inventory.save(kube, record(name, synthetic(12_000)), expected=read_by_both)

    assert {cm.metadata.name for cm in shards_of(api_client, name)} == their_shards
    assert inventory.load(kube, name) == theirs


def test_a_save_keeps_the_fresh_shards_of_a_save_still_in_progress(kube, api_client, new_name):
    name = new_name()
    inventory.save(kube, record(name, synthetic(12_000)))
    # Another writer at step 1 of its save: its shards exist, its main object is not written.
    in_progress = f"inventory-{name}-0123456789-1"
    client.CoreV1Api(api_client).create_namespaced_config_map(NS, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=in_progress,
            labels={conventions.INVENTORY_LABEL: name, conventions.SHARD_LABEL: "1"}),
        binary_data={"part": base64.b64encode(b"their payload").decode()}))

    inventory.save(kube, record(name, synthetic(12_000), revision=SHA_B))
    inventory.save(kube, record(name, synthetic(10)))

    assert [cm.metadata.name for cm in shards_of(api_client, name)] == [in_progress]
