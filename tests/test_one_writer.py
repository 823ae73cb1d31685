"""One writer per sync: two `restore` processes of the same sync never interleave.

Real `gitops-restore` processes against the real local cluster. The first restore holds the
sync's lock for a while because it waits (--wait) for a Deployment that can never become
ready (its Pods select no node); the second one then waits for the lock, or gives up after
--lock-timeout. Nothing here asserts how long anything took.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client

from sync_agent import conventions, inventory, lock
from sync_agent.kube import Kube
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.testdata.gitrepos import commit, git, new_repo

UNSCHEDULABLE = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
spec:
  replicas: 1
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      nodeSelector: {gitops-restore.io/test: no-such-node}
      containers:
        - name: stuck
          image: nginx:1.27
"""


@pytest.fixture
def revisions(tmp_path: Path) -> Path:
    """v1: a ConfigMap and a Deployment that never becomes ready; v2: the ConfigMap changed,
    another one added, the Deployment gone."""
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/settings.yaml": m.configmap("settings", color="blue"),
                  "app/stuck.yaml": UNSCHEDULABLE}, "v1")
    git(repo, "tag", "v1")
    commit(repo, {"app/settings.yaml": m.configmap("settings", color="green"),
                  "app/later.yaml": m.configmap("later", added="yes"),
                  "app/stuck.yaml": None}, "v2")
    git(repo, "tag", "v2")
    return repo


def restore_args(repo: Path, namespace: str, *args: str) -> list[str]:
    return ["restore", "--repo", str(repo), "--path", "app", "--cluster", SESSION_CLUSTER,
            "-n", namespace, "--sync", namespace, *args]


def start(tmp_path: Path, args: list[str]) -> tuple[subprocess.Popen, Path]:
    """A restore in the background; its stderr goes to a file."""
    log = tmp_path / f"first-{time.monotonic_ns()}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen([cli.COMMAND, *args], stdout=handle, stderr=handle,
                                   stdin=subprocess.DEVNULL)
    return process, log


def wait_for_holder(kube: Kube, sync: str, process: subprocess.Popen, log: Path) -> dict:
    """The Lease, once `process` holds it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lease = kube.get(conventions.LEASE_RT, conventions.NAMESPACE, lock.lease_name(sync))
        if lease and lock.Holder.of(lease).identity.endswith(f" pid {process.pid}"):
            return lease
        if process.poll() is not None:
            break
        time.sleep(0.1)
    pytest.fail(f"the first restore never held the lock (exit {process.poll()}):\n"
                f"{log.read_text(errors='replace')}", pytrace=False)


def wait_for_text(process: subprocess.Popen, log: Path, text: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    pytest.fail(f"{text!r} never appeared (exit {process.poll()}):\n"
                f"{log.read_text(errors='replace')}", pytrace=False)


def configmaps(api_client, namespace: str) -> dict[str, dict]:
    found = client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
    return {c.metadata.name: c.data or {} for c in found if c.metadata.name != "kube-root-ca.crt"}


def deployments(api_client, namespace: str) -> list[str]:
    return [d.metadata.name
            for d in client.AppsV1Api(api_client).list_namespaced_deployment(namespace).items]


@pytest.fixture
def cleanup(kube):
    """Stops the background restores a test started and removes its lock and inventory."""
    started: list[tuple[subprocess.Popen, str]] = []
    yield started
    for process, sync in started:
        if process.poll() is None:
            process.kill()
        process.wait(30)
        kube.delete(conventions.LEASE_RT, conventions.NAMESPACE, lock.lease_name(sync))
        inventory.delete(kube, sync)


def test_a_second_restore_waits_for_the_first_then_applies_on_top_of_it(
        kube, api_client, namespace, revisions, tmp_path, cleanup):
    first, log = start(tmp_path, restore_args(revisions, namespace, "--ref", "v1", "--wait",
                                              "--timeout", "15s"))
    cleanup.append((first, namespace))
    lease = wait_for_holder(kube, namespace, first, log)
    holder = lock.Holder.of(lease)
    assert holder.busy and holder.note == "gitops-restore restore"

    second = cli.run(*restore_args(revisions, namespace, "--ref", "v2", "--prune",
                                   "--output", "json"), check_code=0)

    assert first.wait(60) == 1, log.read_text()  # its Deployment never became ready
    assert "stuck" in log.read_text()
    assert f"waiting up to 2m0s for the lock held by gitops-restore restore ({holder.identity}" \
        in " ".join(second.stderr.split())
    report = json.loads(second.stdout)
    assert "lock" in [p["phase"] for p in report["phases"]]
    # The second run planned after the first had recorded what it applied, so it pruned the
    # first run's Deployment instead of leaking it.
    assert {c["object"]: c["action"] for c in report["changes"]}[
        f"Deployment/{namespace}/stuck"] == "delete"
    assert deployments(api_client, namespace) == []
    assert configmaps(api_client, namespace) == {"settings": {"color": "green"},
                                                 "later": {"added": "yes"}}
    recorded = inventory.load(kube, namespace)
    assert recorded.complete and recorded.revision == report["sha"]
    assert sorted(e.ref.name for e in recorded.entries) == ["later", "settings"]
    released = kube.get(conventions.LEASE_RT, conventions.NAMESPACE, lock.lease_name(namespace))
    assert lock.Holder.of(released).identity == ""


def test_a_short_lock_timeout_exits_2_naming_the_holder_and_changes_nothing(
        kube, api_client, namespace, revisions, tmp_path, cleanup):
    first, log = start(tmp_path, restore_args(revisions, namespace, "--ref", "v1", "--wait",
                                              "--timeout", "20s"))
    cleanup.append((first, namespace))
    holder = lock.Holder.of(wait_for_holder(kube, namespace, first, log))
    wait_for_text(first, log, "inventory:")  # written; it now waits for health, holding the lock
    recorded = inventory.load(kube, namespace)
    assert recorded.complete

    second = cli.run(*restore_args(revisions, namespace, "--ref", "v2", "--prune",
                                   "--lock-timeout", "2s"), check_code=2)

    message = " ".join(second.stderr.split())
    assert f"sync '{namespace}': locked by gitops-restore restore ({holder.identity}), " \
           f"writing, since {holder.since[:19]}Z" in message
    assert f"Lease {conventions.NAMESPACE}/agent-{namespace}" in message
    assert "waited 2s (--lock-timeout)" in message and "Nothing was changed" in message
    assert "later" not in configmaps(api_client, namespace)
    assert inventory.load(kube, namespace) == recorded
    assert first.wait(60) == 1


def test_a_bad_lock_timeout_is_refused_before_anything_happens(namespace, revisions):
    result = cli.run(*restore_args(revisions, namespace, "--lock-timeout", "soon"),
                     check_code=2)
    assert "--lock-timeout 'soon': use a duration such as 90s" in " ".join(result.stderr.split())
