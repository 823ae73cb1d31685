"""Prune deletes only what is still ours: the ownership label, the UID seen when planning, a
mass-prune guard that counts live owned objects, and inventories edited by someone else.

Real Git repositories and the real local cluster; the interleavings (an object recreated or
taken over between plan and prune) are made by a real client at the start of the prune phase.
"""

from __future__ import annotations

import base64
import gzip
import hashlib

import pytest
from kubernetes import client

from sync_agent import conventions, engine, events, inventory
from sync_agent.conventions import SYNC_LABEL
from sync_agent.kube import Kube
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.testdata.gitrepos import commit, new_repo


def gr_json(verb: str, repo, namespace: str, name: str, *args: str, code: int = 0) -> dict:
    return cli.run_json(verb, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n",
                        namespace, "--sync", name, *args, check_code=code)


def changes(report: dict) -> dict[str, tuple[str, str]]:
    return {c["object"]: (c["action"], c["detail"]) for c in report["changes"]}


def configmaps(api_client, namespace: str) -> list[str]:
    return sorted(c.metadata.name for c in
                  client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
                  if c.metadata.name != "kube-root-ca.crt")


def listed(kube: Kube, name: str) -> set[str]:
    record = inventory.load(kube, name)
    return {str(e.ref) for e in record.entries} if record else set()


@pytest.fixture
def four_then_three(tmp_path):
    """A repository declaring ConfigMaps a, b, c, d, then a, b, c (d removed from Git)."""
    repo = new_repo(tmp_path / "mine")
    commit(repo, {f"{n}.yaml": m.configmap(n) for n in "abcd"}, "four")
    commit(repo, {"d.yaml": None}, "d removed")
    return repo


def test_prune_leaves_an_object_another_sync_took_and_drops_it_from_the_inventory(
        kube, api_client, namespace, four_then_three, tmp_path):
    mine, theirs = f"{namespace}-a", f"{namespace}-b"
    gr_json("restore", four_then_three, namespace, mine, "--ref", "HEAD~1")
    other = new_repo(tmp_path / "other")
    commit(other, {"d.yaml": m.configmap("d", moved="yes")}, "d lives here now")
    gr_json("restore", other, namespace, theirs)  # sync b applies d: the label is b's now

    report = gr_json("restore", four_then_three, namespace, mine, "--prune")
    action, detail = changes(report)[f"ConfigMap/{namespace}/d"]
    assert action == "keep"
    assert detail == f"now owned by sync '{theirs}'; dropped from this inventory"
    assert configmaps(api_client, namespace) == ["a", "b", "c", "d"]
    assert f"ConfigMap/{namespace}/d" not in listed(kube, mine)
    assert f"ConfigMap/{namespace}/d" in listed(kube, theirs)
    again = gr_json("restore", four_then_three, namespace, mine, "--prune")
    assert f"ConfigMap/{namespace}/d" not in changes(again)
    live = client.CoreV1Api(api_client).read_namespaced_config_map("d", namespace)
    assert live.metadata.labels[SYNC_LABEL] == theirs and live.data == {"moved": "yes"}


def test_prune_leaves_an_object_whose_ownership_label_was_removed(
        kube, api_client, namespace, four_then_three):
    name = namespace
    gr_json("restore", four_then_three, namespace, name, "--ref", "HEAD~1")
    client.CoreV1Api(api_client).patch_namespaced_config_map(
        "d", namespace, {"metadata": {"labels": {SYNC_LABEL: None}}})  # adopted by hand

    report = gr_json("restore", four_then_three, namespace, name, "--prune")
    action, detail = changes(report)[f"ConfigMap/{namespace}/d"]
    assert action == "keep"
    assert detail == (f"no longer labelled {SYNC_LABEL}={name} (no owner); dropped from this "
                      "inventory")
    assert "d" in configmaps(api_client, namespace)
    assert f"ConfigMap/{namespace}/d" not in listed(kube, name)


def _restore_in_process(kube: Kube, repo, namespace: str, at_prune) -> engine.Report:
    """restore --prune, calling `at_prune()` when the prune phase starts (after the plan)."""
    def emit(event: events.Event) -> None:
        if isinstance(event, events.PhaseStarted) and event.phase == "prune":
            at_prune()
    return engine.restore(kube, engine.SourceSpec(repo=str(repo)),
                          engine.SyncOptions(sync_name=namespace, namespace=namespace,
                                             prune=True), emit)


def test_an_object_recreated_after_the_plan_is_not_deleted(kube, api_client, namespace,
                                                           four_then_three):
    gr_json("restore", four_then_three, namespace, namespace, "--ref", "HEAD~1")
    core = client.CoreV1Api(api_client)
    planned_uid = core.read_namespaced_config_map("d", namespace).metadata.uid

    def recreate() -> None:  # same name, same label: only the UID tells it apart
        old = core.read_namespaced_config_map("d", namespace)
        core.delete_namespaced_config_map("d", namespace)
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="d", labels=old.metadata.labels),
            data={"made": "after the plan"}))

    report = _restore_in_process(kube, four_then_three, namespace, recreate)
    kept = [c for c in report.changes.changes if str(c.ref) == f"ConfigMap/{namespace}/d"]
    assert [(c.action.value, c.detail) for c in kept] == [
        ("keep", "recreated since the plan (new UID); not deleted, the next run checks it "
                 "again")]
    live = core.read_namespaced_config_map("d", namespace)
    assert live.metadata.uid != planned_uid and live.data == {"made": "after the plan"}
    assert f"ConfigMap/{namespace}/d" in listed(kube, namespace)
    # It carries this sync's label, so the next run owns it and prunes it.
    report = gr_json("restore", four_then_three, namespace, namespace, "--prune")
    assert changes(report)[f"ConfigMap/{namespace}/d"] == ("delete", "")
    assert configmaps(api_client, namespace) == ["a", "b", "c"]


def test_an_object_another_sync_takes_after_the_plan_is_not_deleted(kube, api_client,
                                                                    namespace, four_then_three):
    gr_json("restore", four_then_three, namespace, namespace, "--ref", "HEAD~1")
    core = client.CoreV1Api(api_client)

    def take() -> None:
        core.patch_namespaced_config_map("d", namespace,
                                         {"metadata": {"labels": {SYNC_LABEL: "someone-else"}}})

    report = _restore_in_process(kube, four_then_three, namespace, take)
    kept = {str(c.ref): (c.action.value, c.detail) for c in report.changes.changes}
    assert kept[f"ConfigMap/{namespace}/d"] == (
        "keep", "now owned by sync 'someone-else'; dropped from this inventory")
    assert report.errors == []
    assert "d" in configmaps(api_client, namespace)
    assert f"ConfigMap/{namespace}/d" not in listed(kube, namespace)


# --- inventories edited by someone else -------------------------------------------------------

def forge(api_client, name: str, lines: list[str]) -> None:
    """Append entry lines to a stored inventory as someone with kubectl would: decompress,
    edit, recompress, and fix the digest and count so that it loads as valid."""
    core = client.CoreV1Api(api_client)
    cm = core.read_namespaced_config_map(inventory.configmap_name(name), conventions.NAMESPACE)
    text = gzip.decompress(base64.b64decode(cm.binary_data["entries.gz"])).decode()
    payload = gzip.compress("\n".join([text, *lines]).encode())
    count = len(text.split("\n")) - 1 + len(lines)
    core.patch_namespaced_config_map(cm.metadata.name, conventions.NAMESPACE, {
        "binaryData": {"entries.gz": base64.b64encode(payload).decode()},
        "metadata": {"annotations": {
            "gitops-restore.io/digest": "sha256:" + hashlib.sha256(payload).hexdigest(),
            "gitops-restore.io/entries": str(count)}}})


def test_padding_the_inventory_does_not_weaken_the_mass_prune_guard(kube, api_client, namespace,
                                                                    tmp_path):
    repo = new_repo(tmp_path / "mass")
    commit(repo, {f"cm{i}.yaml": m.configmap(f"cm{i}") for i in range(4)}, "four")
    commit(repo, {f"cm{i}.yaml": None for i in range(3)}, "one left")
    gr_json("restore", repo, namespace, namespace, "--ref", "HEAD~1")
    # 100 entries of objects that do not exist: counted, they would make 3 of 104 look small.
    forge(api_client, namespace, [f"v1||ConfigMap|{namespace}|ghost{i}||" for i in range(100)])
    assert len(listed(kube, namespace)) == 104

    result = cli.run("restore", "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n",
                     namespace, "--sync", namespace, "--prune", check_code=2)
    assert "prune would delete 3 of 4 owned objects" in result.stderr
    assert configmaps(api_client, namespace) == ["cm0", "cm1", "cm2", "cm3"]


def test_forged_inventory_entries_of_other_owners_and_kube_system_are_never_deleted(
        kube, api_client, namespace, four_then_three, tmp_path):
    name = f"{namespace}-a"
    gr_json("restore", four_then_three, namespace, name, "--ref", "HEAD~1")
    other = new_repo(tmp_path / "other")
    commit(other, {"theirs.yaml": m.configmap("theirs")}, "another sync's object")
    gr_json("restore", other, namespace, f"{namespace}-b")
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="by-hand"), data={"x": "y"}))
    forged = {f"ConfigMap/{namespace}/theirs": f"now owned by sync '{namespace}-b'",
              f"ConfigMap/{namespace}/by-hand": "no owner",
              "Service/default/kubernetes": "no owner",
              "ConfigMap/kube-system/kube-root-ca.crt": "no owner",
              "Namespace/kube-system": "no owner"}
    forge(api_client, name, [f"v1||ConfigMap|{namespace}|theirs||",
                             f"v1||ConfigMap|{namespace}|by-hand||",
                             "v1||Service|default|kubernetes||",
                             "v1||ConfigMap|kube-system|kube-root-ca.crt||",
                             "v1||Namespace||kube-system||"])

    report = gr_json("restore", four_then_three, namespace, name, "--prune",
                     "--allow-mass-prune", "--prune-data")
    found = changes(report)
    for ref, why in forged.items():
        assert found[ref][0] == "keep" and why in found[ref][1], (ref, found[ref])
        assert ref not in listed(kube, name)
    assert found[f"ConfigMap/{namespace}/d"] == ("delete", "")  # really ours: pruned
    assert configmaps(api_client, namespace) == ["a", "b", "by-hand", "c", "theirs"]
    assert core.read_namespaced_service("kubernetes", "default").metadata.uid
    assert core.read_namespaced_config_map("kube-root-ca.crt", "kube-system").data
    assert core.read_namespace("kube-system").status.phase == "Active"
