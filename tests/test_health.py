"""Health: which objects are ready, which failed for good, and why, on the real local cluster.

The rules are pure (`health.assess`), so they are checked first on realistic status documents,
including states kwok never produces (an image pull back-off, a crash loop); then `health.wait`
runs against the real cluster, where kwok simulates nodes and pods: it marks pods Running and
Ready whatever their image, completes pods owned by Jobs, and (a Stage of the local provider)
gives LoadBalancer Services without a loadBalancerClass an address, as a cloud would.
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from sync_agent import discovery, events, health
from sync_agent.health import State
from sync_agent.kube import Kube, ResourceType
from sync_agent.objects import ObjectRef
from tests import cli
from tests.conftest import SESSION_CLUSTER
from tests.testdata.gitrepos import commit, new_repo


@pytest.fixture(scope="module")
def types(kube) -> discovery.Discovery:
    return discovery.discover(kube)


def create(kube: Kube, types: discovery.Discovery, body: dict) -> tuple[ResourceType, ObjectRef]:
    group = body["apiVersion"].rpartition("/")[0]
    rt = types.preferred(group, body["kind"])
    kube.apply(rt, body)
    meta = body["metadata"]
    return rt, ObjectRef(group, body["kind"], meta.get("namespace", ""), meta["name"])


def deployment(namespace: str, name: str, replicas: int = 2, selector: dict | None = None,
               **pod_spec) -> dict:
    labels = {"app": name}
    container = {"name": "web", "image": "nginx", **pod_spec.pop("container", {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": selector or {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container], **pod_spec}}}}


def job(namespace: str, name: str, **spec) -> dict:
    pod_spec = {"restartPolicy": "Never", **spec.pop("pod", {}),
                "containers": [{"name": "run", "image": "busybox", "command": ["false"]}]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}, **spec}}


def claim(namespace: str, name: str, storage_class: str = "standard") -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}


# --- the rules, on status documents as the controllers write them ---------------------------

def live(kind: str, spec: dict | None = None, status: dict | None = None,
         api_version: str = "v1", generation: int = 1) -> dict:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": "x", "namespace": "ns", "generation": generation},
            "spec": spec or {}, "status": status or {}}


def rolled_out(available: int, *, replicas: int = 3, conditions: tuple = ()) -> dict:
    return live("Deployment", {"replicas": replicas}, {
        "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
        "readyReplicas": available, "availableReplicas": available,
        "conditions": list(conditions)}, "apps/v1")


DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "web-6d4cf56db6" has timed out progressing.'}


def test_deployment_with_every_replica_available_is_ready():
    assert health.assess(rolled_out(3)) == (State.READY, "")


def test_deployment_mid_rollout_says_how_many_replicas_are_available():
    assert health.assess(rolled_out(2)) == (State.IN_PROGRESS, "2/3 replicas available")


def test_deployment_past_its_progress_deadline_has_failed_for_good():
    state, reason = health.assess(rolled_out(0, conditions=(DEADLINE,)))
    assert state is State.FAILED
    assert reason.startswith("ProgressDeadlineExceeded: ReplicaSet")
    assert "0/3 replicas available" in reason


def test_deployment_without_replicas_field_wants_one():
    body = rolled_out(1, replicas=1)
    del body["spec"]["replicas"]
    assert health.assess(body) == (State.READY, "")


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"])
def test_workload_whose_new_generation_is_not_observed_yet_is_in_progress(kind):
    body = live(kind, {"replicas": 0}, {"observedGeneration": 1}, "apps/v1", generation=2)
    assert health.assess(body) == (
        State.IN_PROGRESS, "waiting for the controller to observe generation 2 (observed 1)")


def statefulset(status: dict, strategy: dict | None = None) -> dict:
    spec = {"replicas": 2, "updateStrategy": strategy or {"type": "RollingUpdate"}}
    return live("StatefulSet", spec, {"observedGeneration": 1, "replicas": 2,
                                      "readyReplicas": 2, **status}, "apps/v1")


def test_statefulset_is_ready_once_every_replica_runs_the_update_revision():
    done = {"currentRevision": "db-7f9", "updateRevision": "db-7f9", "updatedReplicas": 2}
    assert health.assess(statefulset(done)) == (State.READY, "")
    midway = {"currentRevision": "db-5c1", "updateRevision": "db-7f9", "updatedReplicas": 1}
    state, reason = health.assess(statefulset(midway))
    assert state is State.IN_PROGRESS
    assert reason == "rolling update to revision db-7f9 in progress: 1/2 replicas updated"


def test_statefulset_with_a_partition_waits_only_for_the_replicas_above_it():
    partitioned = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    status = {"currentRevision": "db-5c1", "updateRevision": "db-7f9", "updatedReplicas": 1}
    assert health.assess(statefulset(status, partitioned)) == (State.READY, "")
    on_delete = statefulset({**status, "updatedReplicas": 0}, {"type": "OnDelete"})
    assert health.assess(on_delete) == (State.READY, "")


def test_daemonset_counts_updated_and_ready_pods_against_the_scheduled_ones():
    status = {"observedGeneration": 1, "desiredNumberScheduled": 3,
              "updatedNumberScheduled": 3, "numberReady": 1}
    assert health.assess(live("DaemonSet", {}, status, "apps/v1")) == (
        State.IN_PROGRESS, "1/3 pods ready")


@pytest.mark.parametrize(("conditions", "expected"), [
    ([{"type": "Complete", "status": "True"}], (State.READY, "")),
    ([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
       "message": "Job has reached the specified backoff limit"}],
     (State.FAILED, "job failed: BackoffLimitExceeded: Job has reached the specified backoff "
                    "limit")),
    ([], (State.IN_PROGRESS, "0/1 pods succeeded, 1 running")),
])
def test_job_is_ready_when_complete_and_failed_for_good_when_failed(conditions, expected):
    body = live("Job", {"completions": 1}, {"active": 1, "conditions": conditions}, "batch/v1")
    assert health.assess(body) == expected


IMAGE_PULL_BACK_OFF = {
    "phase": "Pending",
    "conditions": [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
         "message": "containers with unready status: [web]"},
        {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady",
         "message": "containers with unready status: [web]"}],
    "containerStatuses": [{
        "name": "web", "image": "registry.invalid/web:1.0", "imageID": "", "ready": False,
        "restartCount": 0, "started": False,
        "state": {"waiting": {"reason": "ImagePullBackOff",
                              "message": 'Back-off pulling image "registry.invalid/web:1.0"'}}}],
}


def test_pod_in_image_pull_back_off_names_the_container_and_kubelet_message():
    assert health.assess(live("Pod", {}, IMAGE_PULL_BACK_OFF)) == (
        State.IN_PROGRESS,
        'container web: ImagePullBackOff: Back-off pulling image "registry.invalid/web:1.0"')


def test_pod_that_succeeded_is_ready_and_one_that_failed_has_failed():
    assert health.assess(live("Pod", {}, {"phase": "Succeeded"})) == (State.READY, "")
    evicted = {"phase": "Failed", "reason": "Evicted",
               "message": "The node was low on resource: memory."}
    assert health.assess(live("Pod", {}, evicted)) == (
        State.FAILED, "pod failed: Evicted: The node was low on resource: memory.")


LB = {"type": "LoadBalancer"}


@pytest.mark.parametrize(("body", "expected"), [
    (live("PersistentVolumeClaim", {}, {"phase": "Bound"}), State.READY),
    (live("PersistentVolumeClaim", {}, {"phase": "Pending"}), State.IN_PROGRESS),
    (live("PersistentVolumeClaim", {}, {"phase": "Lost"}), State.FAILED),
    (live("Service", {"type": "ClusterIP"}), State.READY),
    (live("Service", LB, {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}), State.READY),
    (live("Service", LB, {"loadBalancer": {}}), State.IN_PROGRESS),
    (live("Namespace", {}, {"phase": "Active"}), State.READY),
    (live("Namespace", {}, {"phase": "Terminating"}), State.IN_PROGRESS),
    (live("CustomResourceDefinition", {}, {"conditions": [
        {"type": "Established", "status": "True"}]}, "apiextensions.k8s.io/v1"), State.READY),
    (live("CustomResourceDefinition", {}, {"conditions": [
        {"type": "NamesAccepted", "status": "False", "reason": "ListKindConflict"}]},
        "apiextensions.k8s.io/v1"), State.FAILED),
    (live("APIService", {}, {"conditions": [
        {"type": "Available", "status": "False", "reason": "MissingEndpoints"}]},
        "apiregistration.k8s.io/v1"), State.IN_PROGRESS),
    (live("ConfigMap"), State.READY),
    (live("Kustomization", {}, {"conditions": [{"type": "Ready", "status": "False"}]},
          "kustomize.toolkit.fluxcd.io/v1"), State.IN_PROGRESS),
    (live("HelmRelease", {}, {"conditions": [{"type": "Stalled", "status": "True"}]},
          "helm.toolkit.fluxcd.io/v2"), State.FAILED),
])
def test_state_of_other_kinds(body, expected):
    assert health.assess(body)[0] is expected


def test_object_being_deleted_is_in_progress():
    body = rolled_out(3)
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert health.assess(body) == (State.IN_PROGRESS, "being deleted")


# --- waiting on the real cluster ------------------------------------------------------------

def test_deployment_of_two_replicas_becomes_ready(kube, types, namespace):
    target = create(kube, types, deployment(namespace, "web"))
    seen: list[events.Event] = []
    assert health.wait(kube, [target], timeout=60, interval=0.2, emit=seen.append) == []
    assert seen[0] == events.PhaseStarted("health", 1)
    assert seen[1] == events.ObjectDone("health", target[1], "ready")
    assert isinstance(seen[2], events.PhaseFinished)


def test_claim_binds_to_a_host_path_volume(kube, types, namespace):
    target = create(kube, types, claim(namespace, "data"))
    assert health.wait(kube, [target], timeout=60, interval=0.2) == []


def test_claim_of_a_missing_storage_class_reports_the_provisioning_event(kube, types, namespace):
    target = create(kube, types, claim(namespace, "data", storage_class="missing"))
    [stuck] = health.wait(kube, [target], timeout=3, interval=0.5)
    assert stuck.state is State.IN_PROGRESS
    assert stuck.reason.startswith("not bound to a volume yet (phase Pending)")
    assert 'event ProvisioningFailed: storageclass.storage.k8s.io "missing" not found' in \
        stuck.reason


def test_job_completes_because_kwok_completes_pods_owned_by_jobs(kube, types, namespace):
    # The container would exit 1 on a real node; kwok's pod-complete stage marks every Running
    # pod owned by a Job Succeeded (exit code 0), so Jobs complete here.
    target = create(kube, types, job(namespace, "migrate"))
    assert health.wait(kube, [target], timeout=60, interval=0.2) == []


def test_job_past_its_active_deadline_has_failed_for_good(kube, types, namespace):
    unschedulable = {"nodeSelector": {"disk": "nonexistent"}}
    target = create(kube, types, job(namespace, "migrate", activeDeadlineSeconds=1,
                                     pod=unschedulable))
    seen: list[events.Event] = []
    [failed] = health.wait(kube, [target], timeout=60, interval=0.2, emit=seen.append)
    assert failed.state is State.FAILED
    assert str(failed) == (f"Job/{namespace}/migrate: job failed: DeadlineExceeded: "
                           "Job was active longer than specified deadline")
    assert events.ObjectDone("health", target[1], "failed") in seen


@pytest.mark.parametrize(("pod_spec", "scheduler_says"), [
    ({"container": {"resources": {"requests": {"cpu": "1000"}}}}, "3 Insufficient cpu"),
    ({"nodeSelector": {"disk": "nonexistent"},
      "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["big"]}]}},
     "3 node(s) didn't match Pod's node affinity/selector"),
], ids=["thousand-cpus", "node-selector"])
def test_unschedulable_deployment_times_out_with_the_schedulers_message(
        kube, types, namespace, pod_spec, scheduler_says):
    target = create(kube, types, deployment(namespace, "big", **pod_spec))
    [stuck] = health.wait(kube, [target], timeout=3, interval=0.5)
    assert stuck.state is State.IN_PROGRESS
    assert str(stuck).startswith(f"Deployment/{namespace}/big: 0/2 replicas available; pod big-")
    assert "PodScheduled False: Unschedulable: 0/3 nodes are available: " \
        f"{scheduler_says}" in stuck.reason


def test_deployment_past_its_progress_deadline_fails_before_the_timeout(kube, types, namespace):
    body = deployment(namespace, "big", container={"resources": {"requests": {"cpu": "1000"}}})
    body["spec"]["progressDeadlineSeconds"] = 1
    target = create(kube, types, body)
    [failed] = health.wait(kube, [target], timeout=90, interval=0.5)
    assert failed.state is State.FAILED
    assert failed.reason.startswith("ProgressDeadlineExceeded: ")
    assert "Insufficient cpu" in failed.reason


def test_deployment_refused_by_a_quota_names_the_quota(kube, types, namespace):
    create(kube, types, {"apiVersion": "v1", "kind": "ResourceQuota",
                         "metadata": {"name": "no-pods", "namespace": namespace},
                         "spec": {"hard": {"pods": "0"}}})
    target = create(kube, types, deployment(namespace, "web"))
    [stuck] = health.wait(kube, [target], timeout=3, interval=0.5)
    assert stuck.state is State.IN_PROGRESS
    assert "FailedCreate" in stuck.reason
    assert "no-pods" in stuck.reason


def test_kwok_runs_pods_whatever_their_image(kube, types, namespace):
    # kwok pulls no images: a Deployment of an image that does not exist becomes ready here.
    # What a kubelet would say instead is checked on its status document above.
    body = deployment(namespace, "web", container={"image": "registry.invalid/none:0"})
    assert health.wait(kube, [create(kube, types, body)], timeout=60, interval=0.2) == []


def lb_service(namespace: str, name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"port": 80}],
                     **spec}}


def test_local_provider_gives_a_load_balancer_service_an_address_as_a_cloud_would(
        kube, types, namespace):
    target = create(kube, types, lb_service(namespace, "edge"))
    assert health.wait(kube, [target], timeout=60, interval=0.2) == []
    live = kube.get(target[0], namespace, "edge")
    assert [i["ip"] for i in live["status"]["loadBalancer"]["ingress"]] == [
        live["spec"]["clusterIP"]]


def test_load_balancer_class_nothing_serves_is_a_warning_naming_it_not_a_timeout(
        kube, types, namespace):
    # The local provider, like a cloud's service controller, leaves other classes alone.
    lb_class = f"example.com/none-{uuid.uuid4().hex[:6]}"
    target = create(kube, types, lb_service(namespace, "edge", loadBalancerClass=lb_class))
    seen: list[events.Event] = []
    [warned] = health.wait(kube, [target], timeout=180, interval=0.5, emit=seen.append)
    assert warned.state is State.UNSERVED and warned.warning
    assert warned.reason.startswith(f"no controller serves loadBalancerClass {lb_class}: ")
    assert events.ObjectDone("health", target[1], "warning") in seen


def test_load_balancer_service_is_waited_for_while_a_controller_serves_its_class(
        kube, types, namespace):
    lb_class = f"example.com/manual-{uuid.uuid4().hex[:6]}"
    served = create(kube, types, lb_service(namespace, "served", loadBalancerClass=lb_class))
    # This test is that class's controller: it gave one Service of the class an address.
    kube.request("PATCH", served[0].path(namespace, "served") + "/status",
                 {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}},
                 content_type="application/merge-patch+json")
    waiting = create(kube, types, lb_service(namespace, "waiting", loadBalancerClass=lb_class))
    # A cloud's service controller marks a Service it works on with this finalizer.
    taken_body = lb_service(namespace, "taken", loadBalancerClass=f"{lb_class}-cloud")
    taken_body["metadata"]["finalizers"] = [health.LB_FINALIZER]
    taken = create(kube, types, taken_body)
    try:
        stuck = health.wait(kube, [waiting, taken], timeout=health.CONTROLLER_GRACE + 3,
                            interval=0.5)
    finally:  # else the namespace would never finish deleting
        kube.request("PATCH", taken[0].path(namespace, "taken"),
                     {"metadata": {"finalizers": None}},
                     content_type="application/merge-patch+json")
    assert [(h.ref.name, h.state) for h in stuck] == [("taken", State.IN_PROGRESS),
                                                       ("waiting", State.IN_PROGRESS)]
    assert all(h.reason.startswith("waiting for a load balancer address") for h in stuck)


def test_restore_wait_succeeds_with_a_warning_for_a_load_balancer_nothing_serves(
        namespace, tmp_path):
    repo = new_repo(tmp_path / "edge")
    commit(repo, {"app/edge.yaml": yaml.safe_dump(lb_service(
        namespace, "edge", loadBalancerClass="example.com/absent"))}, "edge")
    report = cli.run_json("restore", "--repo", str(repo), "--path", "app", "--cluster",
                          SESSION_CLUSTER, "-n", namespace, "--sync", namespace, "--wait",
                          "--timeout", "3m", check_code=0)
    assert report["unhealthy"] == []
    assert [w["object"] for w in report["warnings"]] == [f"Service/{namespace}/edge"]
    assert "loadBalancerClass example.com/absent" in report["warnings"][0]["reason"]
    text = cli.run("restore", "--repo", str(repo), "--path", "app", "--cluster",
                   SESSION_CLUSTER, "-n", namespace, "--sync", namespace, "--wait",
                   check_code=0).stdout
    assert f"warning Service/{namespace}/edge: no controller serves" in text


def test_crd_becomes_established_and_its_custom_resource_ready(kube, types, namespace):
    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                        "openAPIV3Schema": {"type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True}}}]}}
    crd_type, crd_ref = create(kube, types, crd)
    try:
        assert health.wait(kube, [(crd_type, crd_ref)], timeout=60, interval=0.2) == []
        [widget_type] = discovery.from_crd(crd)
        widget = {"apiVersion": f"{group}/v1", "kind": "Widget",
                  "metadata": {"name": "w", "namespace": namespace}, "spec": {"size": 1}}
        kube.apply(widget_type, widget)
        target = (widget_type, ObjectRef(group, "Widget", namespace, "w"))
        assert health.wait(kube, [target], timeout=30, interval=0.2) == []
    finally:
        kube.delete(crd_type, "", crd_ref.name)


def test_object_that_does_not_exist_is_reported_not_found(kube, types, namespace):
    ref = ObjectRef("", "ConfigMap", namespace, "absent")
    [stuck] = health.wait(kube, [(types.preferred("", "ConfigMap"), ref)], timeout=1)
    assert str(stuck) == f"ConfigMap/{namespace}/absent: not found"


class CountingKube(Kube):
    """Our client, counting the requests it sends to the real API server."""

    sent: list[tuple[str, str]]

    def request(self, method, path, *args, **kwargs):
        self.sent.append((method, path))
        return super().request(method, path, *args, **kwargs)


def requests_to_wait_for(kube: Kube, targets) -> list[tuple[str, str]]:
    """The requests health.wait sends until every target is ready (they must all become so)."""
    counting = CountingKube(kube.configuration)
    counting.sent = []
    try:
        assert health.wait(counting, targets, timeout=10) == []
    finally:
        counting.close()
    return counting.sent


def test_many_objects_of_one_type_are_read_with_one_list(kube, types, namespace):
    rt = types.preferred("", "ConfigMap")
    targets = [create(kube, types, {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": f"c{i}", "namespace": namespace}})
               for i in range(20)]
    assert requests_to_wait_for(kube, targets) == [("GET", rt.path(namespace))]


def test_one_type_pending_in_many_namespaces_is_read_with_one_list(kube, types, namespace):
    namespaces = [f"{namespace}-{i}" for i in range(10)]
    rt = types.preferred("", "ConfigMap")
    targets = []
    try:
        for ns in namespaces:
            create(kube, types, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            targets.append(create(kube, types, {"apiVersion": "v1", "kind": "ConfigMap",
                                                "metadata": {"name": "settings", "namespace": ns}}))
        assert requests_to_wait_for(kube, targets) == [("GET", rt.path())]
    finally:
        for ns in namespaces:
            kube.delete(types.preferred("", "Namespace"), "", ns)
