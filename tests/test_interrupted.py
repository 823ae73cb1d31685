"""A restore killed mid-apply converges when re-run, and still owns what it created."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from kubernetes import client

from sync_agent import inventory
from sync_agent.kube import Kube
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.test_restore import gr_json
from tests.testdata.gitrepos import commit, new_repo

OBJECTS = 1500


def configmaps(api_client, namespace: str) -> set[str]:
    items = client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
    return {c.metadata.name for c in items} - {"kube-root-ca.crt"}


def test_killed_restore_converges_on_rerun_and_can_prune_what_it_made(api_client, local_cluster,
                                                                       namespace, tmp_path):
    repo = new_repo(tmp_path / "many")
    files = {f"cm/{i // 100:02d}.yaml": "---\n".join(m.configmap(f"cm-{j:04d}", i=str(j))
                                                     for j in range(i, i + 100))
             for i in range(0, OBJECTS, 100)}
    commit(repo, files, f"{OBJECTS} ConfigMaps")

    process = subprocess.Popen(
        [cli.COMMAND, "restore", "--repo", str(repo), "--cluster", SESSION_CLUSTER,
         "-n", namespace, "--sync", namespace, "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while len(configmaps(api_client, namespace)) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    made = configmaps(api_client, namespace)
    assert 50 <= len(made) < OBJECTS, "the restore was not interrupted mid-apply"

    kube = Kube.from_kubeconfig(local_cluster.kubeconfig)
    pending = inventory.load(kube, namespace)
    assert pending is not None and not pending.complete
    assert {e.ref.name for e in pending.entries} >= made  # everything created is owned

    report = gr_json("restore", repo, namespace)
    assert report["counts"]["create"] + report["counts"]["unchanged"] == OBJECTS
    assert len(configmaps(api_client, namespace)) == OBJECTS
    assert inventory.load(kube, namespace).complete

    commit(repo, {name: None for name in files if name != "cm/00.yaml"}, "keep 100")
    gr_json("restore", repo, namespace, "--prune", "--allow-mass-prune")
    assert configmaps(api_client, namespace) == {f"cm-{j:04d}" for j in range(100)}
