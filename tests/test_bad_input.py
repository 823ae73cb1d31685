"""Bad input gets an error naming the file and object, and the cluster is left unchanged."""

from __future__ import annotations

import pytest
from kubernetes import client

from sync_agent import inventory
from sync_agent.kube import Kube
from tests import manifests as m
from tests.test_restore import gr, gr_json, names_in
from tests.testdata.gitrepos import commit, new_repo

GOOD = {"a.yaml": m.configmap("a", k="v"), "web.yaml": m.deployment("web")}


def assert_unchanged(api_client, local_cluster, namespace, before):
    assert names_in(api_client, namespace) == before
    kube = Kube.from_kubeconfig(local_cluster.kubeconfig)
    assert inventory.load(kube, namespace) is None


BAD_REVISIONS = {
    "yaml-syntax": ({"broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n"},
                    ["broken.yaml", "line"]),
    "missing-name": ({"noname.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"},
                     ["noname.yaml", "metadata.name"]),
    "duplicate": ({"dup1.yaml": m.configmap("same"), "dup2.yaml": m.configmap("same")},
                  ["dup1.yaml", "dup2.yaml"]),
    "unknown-kind": ({"cr.yaml": m.widget("w", 1, group="nowhere.example.io")},
                     ["cr.yaml", "Widget", "no CustomResourceDefinition"]),
    "removed-api": ({"old.yaml": m.deployment("old").replace("apps/v1", "extensions/v1beta1")},
                    ["old.yaml", "extensions/v1beta1", "apps/v1"]),
    "missing-namespace": ({"elsewhere.yaml": m.configmap("x").replace(
                               "metadata:\n", "metadata:\n  namespace: no-such-ns-anywhere\n")},
                          ["elsewhere.yaml", "no-such-ns-anywhere", "--create-namespaces"]),
    "unknown-field": ({"typo.yaml": m.deployment("typo").replace("replicas: 2",
                                                                  "replica: 2")},
                      ["typo.yaml", "Deployment", "replica"]),
    "rejected-by-server": ({"neg.yaml": m.deployment("neg").replace("replicas: 2",
                                                                    "replicas: -1")},
                           ["neg.yaml", "Deployment", "spec.replicas"]),
}


@pytest.mark.parametrize("case", sorted(BAD_REVISIONS))
def test_bad_revision_is_reported_and_changes_nothing(api_client, local_cluster, namespace,
                                                      tmp_path, case):
    files, expected = BAD_REVISIONS[case]
    repo = new_repo(tmp_path / case)
    commit(repo, {**GOOD, **files}, case)
    before = names_in(api_client, namespace)
    result = gr("restore", repo, namespace, "--prune", code=2)
    for text in expected:
        assert text in result.stderr, result.stderr
    assert_unchanged(api_client, local_cluster, namespace, before)


def test_all_problems_are_listed_at_once(api_client, local_cluster, namespace, tmp_path):
    repo = new_repo(tmp_path / "many")
    commit(repo, {**GOOD, **BAD_REVISIONS["unknown-kind"][0],
                  **BAD_REVISIONS["removed-api"][0], **BAD_REVISIONS["rejected-by-server"][0]},
           "three problems")
    before = names_in(api_client, namespace)
    result = gr("restore", repo, namespace, code=2)
    assert "3 problems (nothing was changed)" in result.stderr
    assert_unchanged(api_client, local_cluster, namespace, before)


def test_missing_path_and_unknown_ref_are_clear_errors(api_client, local_cluster, namespace,
                                                       tmp_path):
    repo = new_repo(tmp_path / "paths")
    commit(repo, {"apps/a.yaml": m.configmap("a")}, "one")
    before = names_in(api_client, namespace)
    missing = gr("restore", repo, namespace, "--path", "clusters/prod", code=2)
    assert "clusters/prod" in missing.stderr and "apps" in missing.stderr
    unknown = gr("restore", repo, namespace, "--ref", "v9.9.9", code=2)
    assert "v9.9.9" in unknown.stderr and "main" in unknown.stderr
    bad_time = gr("restore", repo, namespace, "--at", "yesterday-ish", code=2)
    assert "yesterday-ish" in bad_time.stderr
    assert_unchanged(api_client, local_cluster, namespace, before)


def test_create_namespaces_creates_and_owns_undeclared_namespaces(api_client, namespace,
                                                                  tmp_path):
    target = f"{namespace}-extra"
    repo = new_repo(tmp_path / "createns")
    commit(repo, {"x.yaml": m.configmap("x").replace(
        "metadata:\n", f"metadata:\n  namespace: {target}\n")}, "uses another namespace")
    report = gr_json("restore", repo, namespace, "--create-namespaces")
    assert {c["object"]: c["action"] for c in report["changes"]} == {
        f"Namespace/{target}": "create", f"ConfigMap/{target}/x": "create"}
    core = client.CoreV1Api(api_client)
    assert core.read_namespaced_config_map("x", target).metadata.name == "x"
    core.delete_namespace(target)


def test_unknown_field_in_a_namespace_the_revision_creates(api_client, local_cluster,
                                                           namespace, tmp_path):
    """Objects of a namespace still to be created are dry-run elsewhere; still rejected."""
    new_namespace = f"{namespace}-new"
    typo = m.configmap("typo", k="v").replace(
        "metadata:\n", f"metadata:\n  namespace: {new_namespace}\n") + "spec:\n  oops: 1\n"
    repo = new_repo(tmp_path / "typo")
    declared = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {new_namespace}\n"
    commit(repo, {"ns.yaml": declared, "typo.yaml": typo, **GOOD}, "a typo in a new namespace")
    before = names_in(api_client, namespace)
    result = gr("restore", repo, namespace, code=2)
    assert "typo.yaml" in result.stderr and "spec" in result.stderr, result.stderr
    assert new_namespace not in [n.metadata.name for n in
                                 client.CoreV1Api(api_client).list_namespace().items]
    assert_unchanged(api_client, local_cluster, namespace, before)
