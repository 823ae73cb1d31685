"""restore / plan / rollback / verify end to end: real Git repos, the real local cluster."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from sync_agent import conventions, inventory
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.testdata.gitrepos import commit, git, new_repo


def gr(verb: str, repo, namespace: str, *args: str, code: int | None = 0):
    return cli.run(verb, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n", namespace,
                   "--sync", namespace, *args, check_code=code)


def gr_json(verb: str, repo, namespace: str, *args: str, code: int | None = 0) -> dict:
    result = gr(verb, repo, namespace, *args, "--output", "json", code=code)
    return json.loads(result.stdout)


def actions(report: dict) -> dict[str, str]:
    return {c["object"]: c["action"] for c in report["changes"]}


def names_in(api_client, namespace: str) -> dict[str, list[str]]:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    return {
        "configmaps": sorted(c.metadata.name
                             for c in core.list_namespaced_config_map(namespace).items
                             if c.metadata.name != "kube-root-ca.crt"),
        "services": sorted(s.metadata.name for s in core.list_namespaced_service(namespace).items),
        "deployments": sorted(d.metadata.name
                              for d in apps.list_namespaced_deployment(namespace).items),
        "pvcs": sorted(p.metadata.name for p in
                       core.list_namespaced_persistent_volume_claim(namespace).items),
    }


@pytest.fixture
def app_repo(tmp_path):
    """Two commits: v1 (ConfigMap, Deployment of 2, Service) and v2 (3 replicas, one more
    ConfigMap, blue -> green)."""
    repo = new_repo(tmp_path / "app")
    v1 = commit(repo, {"app/settings.yaml": m.configmap("settings", color="blue"),
                       "app/web.yaml": m.deployment("web", replicas=2) + "---\n" + m.service("web"),
                       "README.md": "not a manifest\n"}, "v1", "2026-10-01T10:00:00Z")
    git(repo, "tag", "v1")
    web3 = m.deployment("web", replicas=3) + "---\n" + m.service("web")
    v2 = commit(repo, {"app/settings.yaml": m.configmap("settings", color="green"),
                       "app/extra.yaml": m.configmap("extra", added="yes"),
                       "app/web.yaml": web3},
                "v2", "2026-10-02T10:00:00Z")
    return repo, v1, v2


def test_restore_creates_every_object_and_waits_until_healthy(api_client, namespace, app_repo):
    repo, _, v2 = app_repo
    report = gr_json("restore", repo, namespace, "--path", "app", "--wait", "--timeout", "90s")
    assert report["sha"] == v2
    assert report["counts"]["create"] == 4
    assert report["unhealthy"] == []
    phases = [p["phase"] for p in report["phases"]]
    assert phases[:4] == ["fetch", "render", "lock", "validate"]
    assert "apply:config" in phases and "apply:workloads" in phases and "health" in phases
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace)
    assert deployment.spec.replicas == 3
    assert deployment.status.ready_replicas == 3
    settings = client.CoreV1Api(api_client).read_namespaced_config_map("settings", namespace)
    assert settings.data == {"color": "green"}
    managers = {f.manager for f in settings.metadata.managed_fields}
    assert "gitops-restore" in managers


def test_restore_of_an_unchanged_revision_changes_nothing(api_client, namespace, app_repo):
    repo, _, _ = app_repo
    gr_json("restore", repo, namespace, "--path", "app")
    core = client.CoreV1Api(api_client)
    record = inventory.configmap_name(namespace)
    before = core.read_namespaced_config_map("settings", namespace)
    recorded = core.read_namespaced_config_map(record, conventions.NAMESPACE)
    again = gr_json("restore", repo, namespace, "--path", "app")
    assert set(actions(again).values()) == {"unchanged"}
    after = core.read_namespaced_config_map("settings", namespace)
    assert after.metadata.resource_version == before.metadata.resource_version
    # Nor is the inventory written again: an idle sync (the agent's every interval) writes nothing.
    still = core.read_namespaced_config_map(record, conventions.NAMESPACE)
    assert still.metadata.resource_version == recorded.metadata.resource_version
    gr("plan", repo, namespace, "--path", "app", code=0)  # nothing to do: 0, not 3


def test_plan_lists_changes_and_exits_3_without_touching_the_cluster(api_client, namespace,
                                                                     app_repo):
    repo, _, _ = app_repo
    gr_json("restore", repo, namespace, "--path", "app", "--ref", "v1")
    plan = gr_json("plan", repo, namespace, "--path", "app", "--prune", code=3)
    kinds = actions(plan)
    assert kinds[f"ConfigMap/{namespace}/extra"] == "create"
    assert kinds[f"ConfigMap/{namespace}/settings"] == "update"
    assert kinds[f"Deployment/{namespace}/web"] == "update"
    assert kinds[f"Service/{namespace}/web"] == "unchanged"
    details = {c["object"]: c["detail"] for c in plan["changes"]}
    assert "data.color" in details[f"ConfigMap/{namespace}/settings"]
    assert "spec.replicas" in details[f"Deployment/{namespace}/web"]
    assert names_in(api_client, namespace)["configmaps"] == ["settings"]


def test_rollback_returns_exactly_to_the_older_revision(api_client, namespace, app_repo):
    repo, v1, _ = app_repo
    gr_json("restore", repo, namespace, "--path", "app")
    report = gr_json("rollback", repo, namespace, "--path", "app", "--to", "HEAD~1")
    assert report["sha"] == v1
    assert actions(report)[f"ConfigMap/{namespace}/extra"] == "delete"
    assert names_in(api_client, namespace)["configmaps"] == ["settings"]
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_config_map("settings", namespace).data == {"color": "blue"}
    apps = client.AppsV1Api(api_client)
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 2
    verified = gr_json("verify", repo, namespace, "--path", "app", "--ref", "v1")
    assert set(actions(verified).values()) == {"unchanged"}


def test_at_picks_the_last_commit_before_the_time(namespace, app_repo):
    repo, v1, _ = app_repo
    report = gr_json("plan", repo, namespace, "--path", "app", "--at", "2026-10-01T12:00Z",
                     code=3)
    assert report["sha"] == v1


def test_verify_reports_drift_missing_and_extra_objects(api_client, namespace, app_repo):
    repo, _, _ = app_repo
    gr_json("restore", repo, namespace, "--path", "app")
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 5}})
    core.delete_namespaced_config_map("settings", namespace)
    report = gr_json("verify", repo, namespace, "--path", "app", "--ref", "v1", code=3)
    found = actions(report)
    assert found[f"Deployment/{namespace}/web"] == "update"  # drifted from v1 and by hand
    assert found[f"ConfigMap/{namespace}/settings"] == "create"  # missing
    assert found[f"ConfigMap/{namespace}/extra"] == "delete"  # extra owned object
    text = gr("verify", repo, namespace, "--path", "app", "--ref", "v1", code=3).stdout
    assert "drifted" in text and "missing" in text and "extra" in text


def test_hand_deleted_and_edited_objects_come_back_on_restore(api_client, namespace, app_repo):
    repo, _, _ = app_repo
    gr_json("restore", repo, namespace, "--path", "app")
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    core.delete_namespaced_config_map("extra", namespace)
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 1}})
    report = gr_json("restore", repo, namespace, "--path", "app")
    found = actions(report)
    assert found[f"ConfigMap/{namespace}/extra"] == "create"
    assert found[f"Deployment/{namespace}/web"] == "update"
    assert found[f"ConfigMap/{namespace}/settings"] == "unchanged"
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 3


def test_pvc_is_kept_unless_prune_data(api_client, namespace, tmp_path):
    repo = new_repo(tmp_path / "data")
    commit(repo, {"claim.yaml": m.pvc("data"), "a.yaml": m.configmap("a"),
                  "b.yaml": m.configmap("b"), "c.yaml": m.configmap("c")}, "with claim")
    commit(repo, {"claim.yaml": None}, "claim removed from Git")
    gr_json("restore", repo, namespace, "--ref", "HEAD~1")
    report = gr_json("restore", repo, namespace, "--prune")
    assert actions(report)[f"PersistentVolumeClaim/{namespace}/data"] == "keep"
    assert names_in(api_client, namespace)["pvcs"] == ["data"]
    text = gr("restore", repo, namespace, "--prune").stdout
    assert "kept" in text and "--prune-data" in text
    report = gr_json("restore", repo, namespace, "--prune", "--prune-data")
    assert actions(report)[f"PersistentVolumeClaim/{namespace}/data"] == "delete"


def test_prune_disabled_annotation_opts_an_object_out(api_client, namespace, tmp_path):
    repo = new_repo(tmp_path / "optout")
    keep = m.configmap("keep-me").replace(
        "metadata:\n", "metadata:\n  annotations: {gitops-restore.io/prune: disabled}\n")
    commit(repo, {"keep.yaml": keep, "a.yaml": m.configmap("a"), "b.yaml": m.configmap("b"),
                  "c.yaml": m.configmap("c")}, "four")
    commit(repo, {"keep.yaml": None}, "three")
    gr_json("restore", repo, namespace, "--ref", "HEAD~1")
    report = gr_json("restore", repo, namespace, "--prune")
    assert actions(report)[f"ConfigMap/{namespace}/keep-me"] == "keep"
    assert "keep-me" in names_in(api_client, namespace)["configmaps"]
    # Opted out means no longer owned: later runs leave it alone and verify ignores it.
    again = gr_json("restore", repo, namespace, "--prune")
    assert f"ConfigMap/{namespace}/keep-me" not in actions(again)
    verified = gr_json("verify", repo, namespace)
    assert set(actions(verified).values()) == {"unchanged"}


def test_mass_prune_needs_allow_mass_prune_and_changes_nothing_without(api_client, namespace,
                                                                         tmp_path):
    repo = new_repo(tmp_path / "mass")
    commit(repo, {f"cm{i}.yaml": m.configmap(f"cm{i}") for i in range(4)}, "four")
    commit(repo, {f"cm{i}.yaml": None for i in range(3)}, "one left")
    gr_json("restore", repo, namespace, "--ref", "HEAD~1")
    result = gr("restore", repo, namespace, "--prune", code=2)
    assert "prune would delete 3 of 4" in result.stderr
    assert "--allow-mass-prune" in result.stderr
    assert names_in(api_client, namespace)["configmaps"] == ["cm0", "cm1", "cm2", "cm3"]
    gr_json("restore", repo, namespace, "--prune", "--allow-mass-prune")
    assert names_in(api_client, namespace)["configmaps"] == ["cm3"]


def test_crd_and_its_custom_resources_in_one_revision(api_client, namespace, tmp_path):
    repo = new_repo(tmp_path / "crd")
    group = f"{namespace}.example.io"
    commit(repo, {"crd.yaml": m.crd(group=group), "w.yaml": m.widget("w1", 3, group=group)},
           "crd and cr")
    report = gr_json("restore", repo, namespace)
    assert actions(report)[f"Widget/{namespace}/w1"] == "create"
    widget = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        group, "v1", namespace, "widgets", "w1")
    assert widget["spec"]["size"] == 3
    client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(f"widgets.{group}")


def test_immutable_field_change_names_the_field_and_force_recreates(api_client, namespace,
                                                                     tmp_path):
    repo = new_repo(tmp_path / "immutable")
    commit(repo, {"web.yaml": m.deployment("web", app_label="web")}, "v1")
    commit(repo, {"web.yaml": m.deployment("web", app_label="web2")}, "selector changed")
    gr_json("restore", repo, namespace, "--ref", "HEAD~1")
    uid = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace).metadata.uid
    result = gr("restore", repo, namespace, code=2)
    assert "web.yaml" in result.stderr and "spec.selector" in result.stderr
    assert "--force" in result.stderr
    report = gr_json("restore", repo, namespace, "--force")
    assert actions(report)[f"Deployment/{namespace}/web"] == "recreate"
    live = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace)
    assert live.metadata.uid != uid
    assert live.spec.selector.match_labels == {"app": "web2"}
