"""verify agrees with what restore deliberately does: what restore keeps or creates by its own
rules (a namespace from --create-namespaces, a PVC kept without --prune-data) is listed as
kept with the reason, exits 0, and counts with --strict; what really differs is still named,
also after a restore that failed. Real repositories, the real local cluster."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests import manifests as m
from tests.test_restore import actions, gr, gr_json, names_in
from tests.testdata.gitrepos import clone_bundle, commit, new_repo

FGS_WORKLOADS = ("--path", "workloads", "--ignore", "workloads/podinfo-hpa.yaml")


def details(report: dict) -> dict[str, str]:
    return {c["object"]: c["detail"] for c in report["changes"]}


def wait_gone(core: client.CoreV1Api, namespace: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while namespace in {n.metadata.name for n in core.list_namespace().items}:
        assert time.monotonic() < deadline, f"namespace {namespace} still there"
        time.sleep(1)


@pytest.fixture
def fresh_namespace(api_client, namespace):
    """A name for a namespace that does not exist yet (the revision's objects use it, none
    declares it); deleted afterwards."""
    name = f"{namespace}-new"
    yield name
    core = client.CoreV1Api(api_client)
    if name in {n.metadata.name for n in core.list_namespace().items}:
        core.delete_namespace(name)


def overlay(namespace: str, *resources: str) -> str:
    listed = "".join(f"- {r}\n" for r in resources)
    return f"namespace: {namespace}\nresources:\n{listed}"


def database_repo(tmp_path, target: str):
    """A kustomize overlay that sets its namespace without declaring it; v2 adds a database
    (Deployment, Service and the PVC holding its data)."""
    repo = new_repo(tmp_path / "shop")
    base = {"base/kustomization.yaml": "resources:\n- web.yaml\n",
            "base/web.yaml": m.deployment("web", replicas=1) + "---\n" + m.service("web"),
            "db/kustomization.yaml": "resources:\n- postgres.yaml\n",
            "db/postgres.yaml": m.deployment("postgres", replicas=1, image="postgres:17") +
            "---\n" + m.service("postgres", 5432) + "---\n" + m.pvc("postgres-data")}
    commit(repo, {**base, "overlays/prod/kustomization.yaml": overlay(target, "../../base")},
           "prod: web only")
    commit(repo, {"overlays/prod/kustomization.yaml": overlay(target, "../../base",
                                                              "../../db")},
           "prod: add the database")
    return repo


def test_kept_namespace_and_claim_are_not_drift_after_a_rollback(api_client, namespace,
                                                                  fresh_namespace, tmp_path):
    repo = database_repo(tmp_path, fresh_namespace)
    flags = ("--path", "overlays/prod", "--create-namespaces")
    gr_json("restore", repo, namespace, *flags)
    created = gr_json("verify", repo, namespace, *flags)
    ns = f"Namespace/{fresh_namespace}"
    assert actions(created)[ns] == "keep"
    assert "created by --create-namespaces" in details(created)[ns]
    assert {a for o, a in actions(created).items() if o != ns} == {"unchanged"}

    rollback = gr_json("rollback", repo, namespace, *flags, "--to", "HEAD~1")
    claim = f"PersistentVolumeClaim/{fresh_namespace}/postgres-data"
    assert actions(rollback)[claim] == "keep"
    assert actions(rollback)[f"Deployment/{fresh_namespace}/postgres"] == "delete"
    assert names_in(api_client, fresh_namespace)["pvcs"] == ["postgres-data"]

    verified = gr_json("verify", repo, namespace, *flags, "--ref", "HEAD~1")
    assert actions(verified)[ns] == "keep" and actions(verified)[claim] == "keep"
    assert "--prune-data" in details(verified)[claim]
    text = gr("verify", repo, namespace, *flags, "--ref", "HEAD~1").stdout
    assert "kept" in text and "extra" not in text
    strict = gr_json("verify", repo, namespace, *flags, "--ref", "HEAD~1", "--strict", code=3)
    assert actions(strict)[claim] == "keep"
    # With --prune-data a rollback would have deleted the claim: now it is extra.
    pruning = gr_json("verify", repo, namespace, *flags, "--ref", "HEAD~1", "--prune-data",
                      code=3)
    assert actions(pruning)[claim] == "delete"

    # Deleting data was asked for: the claim goes, the namespace the objects live in stays.
    gr_json("rollback", repo, namespace, *flags, "--to", "HEAD~1", "--prune-data")
    assert names_in(api_client, fresh_namespace) == {
        "configmaps": [], "services": ["web"], "deployments": ["web"], "pvcs": []}
    gr_json("verify", repo, namespace, *flags, "--ref", "HEAD~1", "--prune-data", "--strict",
            code=3)  # the namespace is still listed as kept
    final = gr_json("verify", repo, namespace, *flags, "--ref", "HEAD~1", "--prune-data")
    assert actions(final)[ns] == "keep" and claim not in actions(final)


def test_prune_data_never_deletes_the_namespace_the_revision_lives_in(api_client, namespace,
                                                                     fresh_namespace,
                                                                     tmp_path):
    repo = database_repo(tmp_path, fresh_namespace)
    gr_json("restore", repo, namespace, "--path", "overlays/prod", "--create-namespaces")
    # The same revision again, and a rollback without --create-namespaces: both with
    # --prune-data. Deleting the namespace would delete every object of the revision with it.
    again = gr_json("restore", repo, namespace, "--path", "overlays/prod", "--create-namespaces",
                    "--prune", "--prune-data")
    assert actions(again)[f"Namespace/{fresh_namespace}"] == "unchanged"
    back = gr_json("rollback", repo, namespace, "--path", "overlays/prod", "--to", "HEAD~1",
                   "--prune-data")
    assert actions(back)[f"Namespace/{fresh_namespace}"] == "keep"
    assert "objects are in it" in details(back)[f"Namespace/{fresh_namespace}"]
    core = client.CoreV1Api(api_client)
    assert core.read_namespace(fresh_namespace).status.phase == "Active"
    assert names_in(api_client, fresh_namespace)["deployments"] == ["web"]
    verified = gr_json("verify", repo, namespace, "--path", "overlays/prod", "--ref", "HEAD~1",
                       "--prune-data")
    assert set(actions(verified).values()) == {"unchanged", "keep"}


def test_flux_get_started_workloads_in_their_undeclared_namespace(api_client, tmp_path):
    """workloads/ of fluxcd/flux-get-started use namespace `demo`, which only namespaces/
    declares: restored alone, it needs --create-namespaces, and verify agrees."""
    repo = clone_bundle("flux-get-started", tmp_path / "fgs")
    core = client.CoreV1Api(api_client)
    wait_gone(core, "demo")  # another test may have just deleted it
    sync = ("--sync", "fgs-workloads")
    try:
        restored = gr_json("restore", repo, "default", *FGS_WORKLOADS, *sync,
                           "--create-namespaces", "--wait", "--timeout", "2m")
        assert actions(restored)["Namespace/demo"] == "create"
        verified = gr_json("verify", repo, "default", *FGS_WORKLOADS, *sync,
                           "--create-namespaces")
        assert actions(verified)["Namespace/demo"] == "keep"
        assert actions(verified)["Deployment/demo/podinfo"] == "unchanged"
        gr_json("verify", repo, "default", *FGS_WORKLOADS, *sync, "--create-namespaces",
                "--strict", code=3)
        # An older commit of workloads/ (before the HPA example), as a rollback goes back.
        back = gr_json("rollback", repo, "default", *FGS_WORKLOADS, *sync, "--to", "458d97e",
                       "--create-namespaces", "--prune-data")
        assert actions(back)["Namespace/demo"] == "unchanged"
        gr_json("verify", repo, "default", *FGS_WORKLOADS, *sync, "--ref", "458d97e",
                "--create-namespaces")
    finally:
        core.delete_namespace("demo")


def test_verify_names_missing_objects_of_a_namespace_restore_would_refuse(namespace, tmp_path):
    repo = new_repo(tmp_path / "elsewhere")
    target = f"{namespace}-nowhere"
    commit(repo, {"cm.yaml": m.configmap("cm").replace(
        "metadata:\n", f"metadata:\n  namespace: {target}\n")}, "an undeclared namespace")
    refused = gr("restore", repo, namespace, code=2)
    assert "--create-namespaces" in refused.stderr
    report = gr_json("verify", repo, namespace, code=3)
    assert actions(report) == {f"ConfigMap/{target}/cm": "create",
                               f"Namespace/{target}": "create"}
    assert "restore needs --create-namespaces" in details(report)[f"Namespace/{target}"]


def test_verify_after_a_refused_rollback_says_which_immutable_field_differs(namespace,
                                                                            tmp_path):
    repo = new_repo(tmp_path / "selector")
    commit(repo, {"web.yaml": m.deployment("web", app_label="web")}, "v1")
    commit(repo, {"web.yaml": m.deployment("web", app_label="web-v2")}, "relabel web")
    gr_json("restore", repo, namespace)
    refused = gr("rollback", repo, namespace, "--to", "HEAD~1", code=2)
    assert "--force" in refused.stderr
    report = gr_json("verify", repo, namespace, "--ref", "HEAD~1", code=3)
    web = f"Deployment/{namespace}/web"
    assert actions(report) == {web: "recreate"}
    assert "spec.selector" in details(report)[web]
    assert "drifted" in gr("verify", repo, namespace, "--ref", "HEAD~1", code=3).stdout


def test_a_statefulset_spec_update_the_server_forbids_needs_force_and_verify_names_it(
        api_client, namespace, tmp_path):
    """A database's StatefulSet asks for bigger volumes: the API server forbids that update
    in place. restore names --force, verify says drifted, --force recreates it."""
    statefulset = m.deployment("db", replicas=1, image="postgres:17").replace(
        "kind: Deployment", "kind: StatefulSet").replace(
        "spec:\n  replicas", "spec:\n  serviceName: db\n  replicas") + """  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
"""
    repo = new_repo(tmp_path / "db")
    commit(repo, {"db.yaml": statefulset}, "postgres")
    commit(repo, {"db.yaml": statefulset.replace("storage: 1Gi", "storage: 2Gi")},
           "postgres: 2Gi volumes")
    gr_json("restore", repo, namespace, "--ref", "HEAD~1")
    refused = gr("restore", repo, namespace, code=2)
    assert "StatefulSet" in refused.stderr and "--force" in refused.stderr
    db = f"StatefulSet/{namespace}/db"
    report = gr_json("verify", repo, namespace, code=3)
    assert actions(report) == {db: "recreate"} and "--force" in details(report)[db]
    forced = gr_json("restore", repo, namespace, "--force")
    assert actions(forced) == {db: "recreate"}
    assert forced["needs"][0]["flag"] == "--force" and db in forced["needs"][0]["reason"]
    live = client.AppsV1Api(api_client).read_namespaced_stateful_set("db", namespace)
    assert live.spec.volume_claim_templates[0].spec.resources.requests["storage"] == "2Gi"
    gr_json("verify", repo, namespace)
