"""Restore and roll back across the real history of public GitOps repositories."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.test_restore import actions, gr, gr_json, names_in
from tests.testdata.gitrepos import clone_bundle

GUESTBOOK_ONLY_APP = ("--ignore", "all-in-one", "--ignore", "legacy")


@pytest.fixture(scope="module")
def guestbook(tmp_path_factory):
    return clone_bundle("guestbook", tmp_path_factory.mktemp("fixtures") / "guestbook")


@pytest.fixture(scope="module")
def flux_get_started(tmp_path_factory):
    return clone_bundle("flux-get-started", tmp_path_factory.mktemp("fixtures") / "fgs")


def test_guestbook_whole_folder_reports_the_duplicate_objects(api_client, namespace, guestbook):
    result = gr("restore", guestbook, namespace, "--path", "web/guestbook", code=2)
    assert "web/guestbook/all-in-one/guestbook-all-in-one.yaml" in result.stderr
    assert "web/guestbook/frontend-deployment.yaml" in result.stderr
    assert "declared twice" in result.stderr
    assert names_in(api_client, namespace)["deployments"] == []


def test_guestbook_rollback_across_moved_paths_and_renamed_objects(api_client, namespace,
                                                                   guestbook):
    head = gr_json("restore", guestbook, namespace, "--path", "web/guestbook",
                   *GUESTBOOK_ONLY_APP, "--wait", "--timeout", "2m")
    assert head["counts"]["create"] == 6 and head["unhealthy"] == []
    assert names_in(api_client, namespace)["deployments"] == [
        "frontend", "redis-master", "redis-replica"]

    # 2020-03: the app lived in guestbook/, the replica was still called redis-slave.
    old = gr_json("rollback", guestbook, namespace, "--path", "guestbook", "--to", "ce18ba0",
                  *GUESTBOOK_ONLY_APP, "--allow-mass-prune", "--wait", "--timeout", "2m")
    assert old["sha"].startswith("ce18ba0")
    done = actions(old)
    assert done[f"Deployment/{namespace}/redis-replica"] == "delete"
    assert done[f"Deployment/{namespace}/redis-slave"] == "create"
    assert names_in(api_client, namespace)["deployments"] == [
        "frontend", "redis-master", "redis-slave"]
    frontend = client.CoreV1Api(api_client).read_namespaced_service("frontend", namespace)
    assert frontend.spec.type == "NodePort"

    verified = gr_json("verify", guestbook, namespace, "--path", "guestbook", "--ref", "ce18ba0",
                       *GUESTBOOK_ONLY_APP)
    assert set(actions(verified).values()) == {"unchanged"}


def test_guestbook_2017_removed_api_versions_are_named_and_nothing_changes(api_client, namespace,
                                                                            guestbook):
    gr_json("restore", guestbook, namespace, "--path", "web/guestbook", *GUESTBOOK_ONLY_APP)
    before = names_in(api_client, namespace)
    result = gr("rollback", guestbook, namespace, "--path", "guestbook", "--to", "680cd07",
                *GUESTBOOK_ONLY_APP, code=2)
    assert "guestbook/frontend-deployment.yaml" in result.stderr
    assert "extensions/v1beta1" in result.stderr
    assert "apps/v1" in result.stderr  # what the cluster serves instead
    assert names_in(api_client, namespace) == before


def test_flux_get_started_helm_releases_whose_charts_cannot_be_had(api_client,
                                                                  flux_get_started):
    result = gr("restore", flux_get_started, "default", code=2)
    assert "releases/ghost.yaml, document 1 (line 2): HelmRelease/demo/ghost: spec.chart.git " \
           "(ssh://git@github.com/fluxcd/flux-get-started, path charts/ghost) is not this " \
           "repository" in result.stderr
    for release, version in (("mongodb", "7.6.3"), ("redis", "10.3.1")):
        assert f"releases/{release}.yaml, document 1 (line 2): HelmRelease/demo/{release} " \
               f"(release demo/{release}): chart {release} {version} from " \
               "https://kubernetes-charts.storage.googleapis.com/: " in result.stderr
    core = client.CoreV1Api(api_client)
    assert "demo" not in {n.metadata.name for n in core.list_namespace().items}


def test_flux_get_started_custom_resources_without_their_crd(api_client, flux_get_started):
    result = gr("restore", flux_get_started, "default", "--helm", "controller", code=2)
    for release in ("ghost", "mongodb", "redis"):  # redis-auth.yaml holds a Secret
        assert f"releases/{release}.yaml" in result.stderr
    assert "HelmRelease" in result.stderr and "no CustomResourceDefinition" in result.stderr
    assert "autoscaling/v2beta1" in result.stderr  # the HPA's removed API version
    core = client.CoreV1Api(api_client)
    assert "demo" not in {n.metadata.name for n in core.list_namespace().items}


def test_flux_get_started_workloads_restore_and_roll_back(api_client, flux_get_started):
    leave_out = ("--ignore", "releases", "--ignore", "workloads/podinfo-hpa.yaml")
    try:
        report = gr_json("restore", flux_get_started, "default", *leave_out, "--wait",
                         "--timeout", "2m")
        assert actions(report)["Namespace/demo"] == "create"
        assert actions(report)["Deployment/demo/podinfo"] == "create"
        image = client.AppsV1Api(api_client).read_namespaced_deployment(
            "podinfo", "demo").spec.template.spec.containers[0].image
        assert image.startswith("stefanprodan/podinfo")
    finally:
        client.CoreV1Api(api_client).delete_namespace("demo")
