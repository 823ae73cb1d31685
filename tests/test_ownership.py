"""New objects are created by POST and owned by an Update entry of our field manager
(sync_agent/ownership.py): drift is still seen and healed, and the first server-side apply makes
that ownership ours by apply, so a field a later revision drops is removed. All on the real API
server."""

from __future__ import annotations

from kubernetes import client

from sync_agent import engine, inventory
from sync_agent.conventions import FIELD_MANAGER
from tests import manifests as m
from tests.testdata.gitrepos import commit, new_repo


def ours(configmap: client.V1ConfigMap) -> list[str]:
    return sorted(f.operation for f in configmap.metadata.managed_fields
                  if f.manager == FIELD_MANAGER)


def actions(report: engine.Report) -> dict[str, str]:
    return {c.ref.name: c.action.value for c in report.changes.changes}


def labelled(name: str, label: str | None, **data: str) -> str:
    text = m.configmap(name, **data)
    if label:
        text = text.replace(f"  name: {name}\n", f"  name: {name}\n  labels:\n    tier: {label}\n")
    return text


def test_a_created_object_becomes_ours_by_apply_so_what_a_revision_drops_is_removed(
        kube, api_client, namespace, tmp_path):
    core = client.CoreV1Api(api_client)
    repo = new_repo(tmp_path / "app")
    commit(repo, {"cm.yaml": labelled("settings", "web", color="green", size="L")}, "v1")
    spec, options = (engine.SourceSpec(repo=str(repo)),
                     engine.SyncOptions(sync_name=namespace, namespace=namespace))
    try:
        assert actions(engine.restore(kube, spec, options)) == {"settings": "create"}
        assert ours(core.read_namespaced_config_map("settings", namespace)) == ["Update"]
        assert actions(engine.restore(kube, spec, options)) == {"settings": "unchanged"}

        commit(repo, {"cm.yaml": labelled("settings", None, color="blue")}, "v2: drops")
        assert actions(engine.restore(kube, spec, options)) == {"settings": "update"}
        live = core.read_namespaced_config_map("settings", namespace)
        assert live.data == {"color": "blue"}
        assert "tier" not in (live.metadata.labels or {})
        assert ours(live) == ["Apply"]
    finally:
        inventory.delete(kube, namespace)


def test_drift_on_a_created_object_is_seen_and_healed(kube, api_client, namespace, tmp_path):
    core = client.CoreV1Api(api_client)
    repo = new_repo(tmp_path / "app")
    commit(repo, {"cm.yaml": m.configmap("settings", color="green")}, "v1")
    spec, options = (engine.SourceSpec(repo=str(repo)),
                     engine.SyncOptions(sync_name=namespace, namespace=namespace))
    try:
        engine.restore(kube, spec, options)
        core.patch_namespaced_config_map("settings", namespace, {"data": {"color": "red"}},
                                         field_manager="someone-else")
        healed = engine.restore(kube, spec, options)
        assert actions(healed) == {"settings": "update"}
        assert core.read_namespaced_config_map("settings", namespace).data == {"color": "green"}
        assert actions(engine.restore(kube, spec, options)) == {"settings": "unchanged"}
    finally:
        inventory.delete(kube, namespace)
