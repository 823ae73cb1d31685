"""The local provider gives a real cluster: workloads roll out on simulated nodes, volumes bind."""

from __future__ import annotations

import subprocess
import time

from kubernetes import client

from sync_agent import paths


def wait_for(condition, timeout=90, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_kubectl_sees_three_ready_nodes(local_cluster):
    ready = "{.status.conditions[?(@.type=='Ready')].status}"
    jsonpath = f"jsonpath={{range .items[*]}}{{.metadata.name}}={ready}{{'\\n'}}{{end}}"
    out = subprocess.run(
        [paths.kubectl(), "--kubeconfig", local_cluster.kubeconfig, "get", "nodes", "-o", jsonpath],
        check=True, capture_output=True, text=True).stdout.split()
    assert len(out) == 3
    assert all(line.endswith("=True") for line in out), out


def test_api_server_reports_the_pinned_version(api_client):
    info = client.VersionApi(api_client).get_code()
    assert info.git_version == paths.K8S_VERSION


def test_deployment_becomes_available_with_three_ready_pods(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=3,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx")]),
            ),
        ),
    ))

    def available():
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return status.ready_replicas == 3 and status.available_replicas == 3

    assert wait_for(available), apps.read_namespaced_deployment_status("web", namespace).status
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="app=web")
    nodes = {n.metadata.name for n in client.CoreV1Api(api_client).list_node().items}
    assert len(pods.items) == 3
    for pod in pods.items:
        assert pod.status.phase == "Running"
        assert pod.spec.node_name in nodes
        assert all(c.ready for c in pod.status.container_statuses)


def test_statefulset_volume_claims_are_bound_and_pods_ready(api_client, namespace):
    apps = client.AppsV1Api(api_client)
    labels = {"app": "db"}
    apps.create_namespaced_stateful_set(namespace, client.V1StatefulSet(
        metadata=client.V1ObjectMeta(name="db"),
        spec=client.V1StatefulSetSpec(
            replicas=2,
            service_name="db",
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="db", image="postgres",
                    volume_mounts=[client.V1VolumeMount(name="data", mount_path="/data")])]),
            ),
            volume_claim_templates=[client.V1PersistentVolumeClaim(
                metadata=client.V1ObjectMeta(name="data"),
                spec=client.V1PersistentVolumeClaimSpec(
                    access_modes=["ReadWriteOnce"],
                    resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
                ),
            )],
        ),
    ))

    def ready():
        status = apps.read_namespaced_stateful_set_status("db", namespace).status
        return status.ready_replicas == 2

    assert wait_for(ready, timeout=120), apps.read_namespaced_stateful_set_status(
        "db", namespace).status
    claims = client.CoreV1Api(api_client).list_namespaced_persistent_volume_claim(namespace).items
    assert sorted(c.metadata.name for c in claims) == ["data-db-0", "data-db-1"]
    assert all(c.status.phase == "Bound" for c in claims)
    assert all(c.spec.storage_class_name == "standard" for c in claims)
