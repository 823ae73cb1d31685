"""The inventory is stored in the cluster, survives any size, and never hides corrupt data."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import uuid

import pytest
from kubernetes import client

from sync_agent import conventions, engine, errors, inventory
from sync_agent.apply import ApplyError
from sync_agent.inventory import Entry, Inventory
from sync_agent.objects import ObjectRef
from tests import manifests as m
from tests.testdata.gitrepos import commit, new_repo

NS = conventions.NAMESPACE
MIB = 1024 * 1024
SHA_A = "a" * 40
SHA_B = "b" * 40


@pytest.fixture
def new_name(api_client):
    """Makes unique sync names; deletes every ConfigMap of them afterwards."""
    made: list[str] = []

    def make(suffix: str = "") -> str:
        name = (made[0] + suffix) if suffix else f"t-{uuid.uuid4().hex[:12]}"
        made.append(name)
        return name

    yield make
    core = client.CoreV1Api(api_client)
    for name in made:
        core.delete_collection_namespaced_config_map(
            NS, label_selector=f"{conventions.INVENTORY_LABEL}={name}")


def ref(kind: str, name: str, namespace: str = "default", group: str = "") -> ObjectRef:
    return ObjectRef(group, kind, namespace, name)


def synthetic(count: int) -> tuple[Entry, ...]:
    """Custom resources with long, random (hence poorly compressible) names and digests."""
    return tuple(Entry(ref("Widget", "-".join(uuid.uuid4().hex for _ in range(7)),
                           namespace=f"team-{i % 97}", group="widgets.example.com"),
                       "v1" if i % 3 else "v1beta1",
                       digest=uuid.uuid4().hex[:16], owned=uuid.uuid4().hex[:16])
                 for i in range(count))


def record(name: str, entries, revision: str = SHA_A, **extra) -> Inventory:
    return Inventory(name=name, revision=revision, ref="main", applied_at="2024-05-01T12:00:00Z",
                     entries=tuple(entries), **extra)


def stored(api_client, name: str) -> list[client.V1ConfigMap]:
    return client.CoreV1Api(api_client).list_namespaced_config_map(
        NS, label_selector=f"{conventions.INVENTORY_LABEL}={name}").items


def stored_bytes(cm: client.V1ConfigMap) -> int:
    """What the API server counts against a ConfigMap's 1 MiB limit, plus labels/annotations."""
    data = sum(len(k) + len(base64.b64decode(v)) for k, v in (cm.binary_data or {}).items())
    data += sum(len(k) + len(v.encode()) for k, v in (cm.data or {}).items())
    return data + len(json.dumps(cm.metadata.annotations)) + len(json.dumps(cm.metadata.labels))


def shards_of(api_client, name: str) -> list[client.V1ConfigMap]:
    return [cm for cm in stored(api_client, name)
            if conventions.SHARD_LABEL in (cm.metadata.labels or {})]


def test_saved_inventory_loads_back_with_revision_ref_time_and_origin(kube, api_client,
                                                                        new_name):
    name = new_name()
    saved = Inventory(
        name=name, revision=SHA_A, ref="v1.2", applied_at="2024-05-01T12:00:00Z",
        path="clusters/prod", repo="https://git.example.com/platform.git",
        entries=(Entry(ref("Deployment", "web", group="apps"), "v1", "0123456789abcdef",
                       "fedcba9876543210"),
                 Entry(ref("Namespace", "shop", namespace=""), "v1"),
                 Entry(ref("Role", "odd|name%with\nchars"), "v1")))

    inventory.save(kube, saved)

    assert inventory.load(kube, name) == saved
    cm = client.CoreV1Api(api_client).read_namespaced_config_map(f"inventory-{name}", NS)
    assert cm.metadata.labels == {"app.kubernetes.io/managed-by": "gitops-restore",
                                  "gitops-restore.io/inventory": name}
    notes = cm.metadata.annotations
    assert notes["gitops-restore.io/revision"] == SHA_A
    assert notes["gitops-restore.io/ref"] == "v1.2"
    assert notes["gitops-restore.io/applied-at"] == "2024-05-01T12:00:00Z"
    assert notes["gitops-restore.io/entries"] == "3"
    assert list(cm.binary_data) == ["entries.gz"]
    assert name in inventory.names(kube)


def test_unknown_sync_name_has_no_inventory(kube, new_name):
    name = new_name()
    assert inventory.load(kube, name) is None
    assert name not in inventory.names(kube)
    assert inventory.delete(kube, name) is False


def test_fifty_thousand_entries_shard_under_one_mib_and_shrinking_removes_stale_shards(
        kube, api_client, new_name):
    name = new_name()
    inventory.save(kube, record(name, synthetic(10)))  # starts inline
    big = record(name, synthetic(50_000), revision=SHA_B)

    inventory.save(kube, big)

    assert inventory.load(kube, name) == big
    shards = shards_of(api_client, name)
    assert len(shards) >= 2
    assert all(stored_bytes(cm) < MIB for cm in stored(api_client, name))
    main = client.CoreV1Api(api_client).read_namespaced_config_map(f"inventory-{name}", NS)
    assert main.metadata.annotations["gitops-restore.io/shards"] == str(len(shards))
    assert not main.binary_data  # the inline payload of the first save is gone

    medium = record(name, big.entries[:15_000])
    inventory.save(kube, medium)
    assert inventory.load(kube, name) == medium
    remaining = shards_of(api_client, name)
    assert 2 <= len(remaining) < len(shards)
    assert not {cm.metadata.name for cm in shards} & {cm.metadata.name for cm in remaining}

    small = record(name, big.entries[:10])
    inventory.save(kube, small)
    assert inventory.load(kube, name) == small
    assert [cm.metadata.name for cm in stored(api_client, name)] == [f"inventory-{name}"]


def test_orphan_shards_of_an_interrupted_save_are_ignored_then_removed(kube, api_client,
                                                                        new_name, monkeypatch):
    # A save removes orphans older than ORPHAN_SECONDS (younger ones may be another writer's
    # save in progress: tests/test_inventory_concurrency.py); here any age counts.
    monkeypatch.setattr(inventory, "ORPHAN_SECONDS", 0.0)
    name = new_name()
    saved = record(name, [Entry(ref("ConfigMap", "settings"), "v1")])
    inventory.save(kube, saved)
    # What a save killed after writing its shards, before the main object, leaves behind.
    client.CoreV1Api(api_client).create_namespaced_config_map(NS, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=f"inventory-{name}-0123456789-1",
            labels={conventions.INVENTORY_LABEL: name, conventions.SHARD_LABEL: "1"}),
        binary_data={"part": base64.b64encode(b"half a payload").decode()}))

    assert inventory.load(kube, name) == saved

    inventory.save(kube, record(name, saved.entries, revision=SHA_B))
    assert shards_of(api_client, name) == []


def test_to_prune_returns_exactly_the_entries_the_revision_no_longer_declares():
    web, db, cache = (Entry(ref("Deployment", n, group="apps"), "v1")
                      for n in ("web", "db", "cache"))
    old = record("shop", [web, db, cache])

    assert inventory.to_prune(old, [web.ref, ref("Service", "web")]) == [cache, db]
    assert inventory.to_prune(old, [web.ref, db.ref, cache.ref]) == []
    assert inventory.to_prune(None, []) == []


def test_interrupted_restore_still_owns_what_it_applied(kube, new_name):
    name = new_name()
    kept = Entry(ref("HorizontalPodAutoscaler", "web", group="autoscaling"), "v2beta2")
    dropped = Entry(ref("ConfigMap", "old-settings"), "v1")
    inventory.save(kube, record(name, [kept, dropped]))
    old = inventory.load(kube, name)
    created = Entry(ref("Deployment", "api", group="apps"), "v1")
    applied = record(name, [Entry(kept.ref, "v2"), created], revision=SHA_B)

    inventory.save(kube, inventory.merge(old, applied))  # the run dies after this

    after = inventory.load(kube, name)
    assert after.complete is False
    assert (after.revision, after.ref) == (SHA_A, "main")  # the last revision applied whole
    assert set(after.entries) == {Entry(kept.ref, "v2"), dropped, created}
    assert inventory.to_prune(after, [kept.ref]) == [dropped, created]


def test_failed_apply_owns_what_it_applied_and_keeps_the_last_complete_revision(
        kube, api_client, namespace, tmp_path):
    repo = new_repo(tmp_path / "app")
    first = commit(repo, {"a.yaml": m.configmap("a")}, "a")
    group = f"{namespace}.example.io"
    # The Widget can only be dry-run once its CRD is applied, in the last stage; its size is
    # not an integer, so apply stops there: the CRD and ConfigMap b are applied, it is not.
    commit(repo, {"crd.yaml": m.crd(group=group), "w.yaml": m.widget("w", "big", group=group),
                  "b.yaml": m.configmap("b")}, "a CRD, a bad Widget and b")
    options = engine.SyncOptions(sync_name=namespace, namespace=namespace)
    crd = ObjectRef("apiextensions.k8s.io", "CustomResourceDefinition", "", f"widgets.{group}")
    try:
        engine.restore(kube, engine.SourceSpec(repo=str(repo), ref="HEAD~1"), options)
        with pytest.raises(ApplyError, match="Widget"):
            engine.restore(kube, engine.SourceSpec(repo=str(repo)), options)

        failed = inventory.load(kube, namespace)
        assert (failed.complete, failed.revision) == (False, first)
        assert set(failed.by_ref) == {ref("ConfigMap", "a", namespace),
                                      ref("ConfigMap", "b", namespace), crd}
        assert failed.by_ref[crd].version == "v1" and failed.by_ref[crd].digest

        fixed = commit(repo, {"w.yaml": m.widget("w", 3, group=group)}, "a good Widget")
        engine.restore(kube, engine.SourceSpec(repo=str(repo)), options)
        done = inventory.load(kube, namespace)
        assert (done.complete, done.revision) == (True, fixed)
        assert {str(r) for r in done.by_ref} == {
            f"ConfigMap/{namespace}/a", f"ConfigMap/{namespace}/b", f"Widget/{namespace}/w",
            f"CustomResourceDefinition/widgets.{group}"}
    finally:
        inventory.delete(kube, namespace)
        client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(
            f"widgets.{group}")


def test_two_sync_names_do_not_interfere(kube, api_client, new_name):
    first = new_name()
    second = new_name("-1")  # a name that is a prefix of the other's shard names
    one = record(first, synthetic(12_000))
    two = record(second, synthetic(12_000))
    inventory.save(kube, one)
    inventory.save(kube, two)
    two_shards = {cm.metadata.name for cm in shards_of(api_client, second)}
    assert len(two_shards) >= 2

    inventory.save(kube, record(first, one.entries[:5]))
    assert inventory.load(kube, second) == two
    assert inventory.delete(kube, first) is True

    assert inventory.load(kube, first) is None
    assert stored(api_client, first) == []
    assert inventory.load(kube, second) == two
    assert {cm.metadata.name for cm in shards_of(api_client, second)} == two_shards
    assert second in inventory.names(kube)
    assert first not in inventory.names(kube)


def corrupt_main(api_client, name: str, payload: bytes, entries: int = 1) -> None:
    """Replace the inline payload, keeping digest and count consistent with it."""
    client.CoreV1Api(api_client).patch_namespaced_config_map(f"inventory-{name}", NS, {
        "binaryData": {"entries.gz": base64.b64encode(payload).decode()},
        "metadata": {"annotations": {
            "gitops-restore.io/digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
            "gitops-restore.io/entries": str(entries)}}})


@pytest.mark.parametrize("payload, problem", [
    (b"not gzip at all", "not gzip-compressed"),
    (gzip.compress(b"gitops-restore-inventory/v1\nv1|apps|Deployment"),
     "line 2 is not 'version|group|kind|namespace|name|digest|owned'"),
    (gzip.compress(b"some other format"), "unknown data format"),
], ids=["bad-gzip", "bad-line", "unknown-format"])
def test_corrupt_data_names_the_configmap_and_how_to_recover(kube, api_client, new_name,
                                                            payload, problem):
    name = new_name()
    inventory.save(kube, record(name, [Entry(ref("Service", "web"), "v1")]))
    corrupt_main(api_client, name, payload)

    with pytest.raises(inventory.CorruptInventoryError) as failure:
        inventory.load(kube, name)

    message = str(failure.value)
    assert message.startswith(f"inventory '{name}': ConfigMap {NS}/inventory-{name} is corrupt")
    assert problem in message
    assert f"kubectl -n {NS} delete configmap -l gitops-restore.io/inventory={name}" in message
    assert "re-run restore without --prune" in message
    assert errors.kind(failure.value) is errors.Refused  # nothing is changed: exit 2


def test_entries_recorded_with_their_group_in_the_version_still_load(kube, api_client,
                                                                    new_name):
    name = new_name()
    inventory.save(kube, record(name, [Entry(ref("Service", "web"), "v1")]))
    corrupt_main(api_client, name, gzip.compress(  # as the engine used to write them
        b"gitops-restore-inventory/v1\napps/v1|apps|Deployment|default|web|d1|o1"))

    assert inventory.load(kube, name).entries == (
        Entry(ref("Deployment", "web", group="apps"), "v1", "d1", "o1"),)


def test_data_edited_by_hand_fails_its_digest(kube, api_client, new_name):
    name = new_name()
    inventory.save(kube, record(name, [Entry(ref("Service", "web"), "v1")]))
    client.CoreV1Api(api_client).patch_namespaced_config_map(f"inventory-{name}", NS, {
        "binaryData": {"entries.gz": base64.b64encode(gzip.compress(
            b"gitops-restore-inventory/v1")).decode()}})

    with pytest.raises(inventory.CorruptInventoryError, match="does not match its recorded"):
        inventory.load(kube, name)


def test_missing_shard_is_named(kube, api_client, new_name):
    name = new_name()
    inventory.save(kube, record(name, synthetic(8_000)))
    lost = sorted(cm.metadata.name for cm in shards_of(api_client, name))[-1]
    client.CoreV1Api(api_client).delete_namespaced_config_map(lost, NS)

    with pytest.raises(inventory.CorruptInventoryError) as failure:
        inventory.load(kube, name)

    assert f"its shard {lost} (" in str(failure.value)
    assert "re-run restore without --prune" in str(failure.value)


@pytest.mark.parametrize("bad", ["Shop", "shop_prod", "-shop", "x" * 64, ""])
def test_invalid_sync_name_is_rejected_before_anything_is_written(kube, bad):
    with pytest.raises(inventory.InvalidSyncName) as failure:
        inventory.save(kube, record(bad, []))
    assert str(failure.value).startswith(f"inventory {bad!r}: invalid sync name")
    assert errors.kind(failure.value) is errors.Refused
    with pytest.raises(inventory.InvalidSyncName):
        inventory.load(kube, bad)
    assert bad not in inventory.names(kube)


def test_revision_must_be_a_full_commit_sha_or_none_yet(kube, new_name):
    with pytest.raises(inventory.InventoryError, match="'main' is not a full lowercase hex"):
        Inventory(name="shop", revision="main", ref="main", applied_at=conventions.utc_now(),
                  entries=())
    # A first restore interrupted mid-apply owns objects before any revision is complete.
    name = new_name()
    pending = Inventory(name=name, revision="", ref="", applied_at="2024-05-01T12:00:00+00:00",
                        entries=(Entry(ref("Service", "web"), "v1"),), complete=False)
    inventory.save(kube, pending)
    assert inventory.load(kube, name) == pending
