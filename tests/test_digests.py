"""The inventory's digests let an unchanged object skip its dry-run; a Secret's digest is keyed
by the cluster's digest key (sync_agent/digests.py), so it skips it too without exposing its
values to whoever reads the inventory. Requests are counted by the real API server."""

from __future__ import annotations

import base64
import dataclasses

import pytest
import yaml

from bench import apiserver_metrics
from sync_agent import digests, engine, inventory
from sync_agent.conventions import CONFIGMAP_RT, NAMESPACE, SECRET_RT, SYNC_LABEL
from tests import manifests as m
from tests.testdata.gitrepos import commit, new_repo

SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: hunter2-not-real
"""


def dry_runs(before, after) -> int:
    return sum(n for (verb, dry_run, resource, _), n in (after - before).items()
               if dry_run and resource in ("secrets", "configmaps"))


def test_an_unchanged_secret_is_known_by_its_keyed_digest_and_not_dry_run_again(
        kube, local_cluster, namespace, tmp_path):
    repo = new_repo(tmp_path / "app")
    commit(repo, {"secret.yaml": SECRET, "cm.yaml": m.configmap("settings")}, "v1")
    spec, options = (engine.SourceSpec(repo=str(repo)),
                     engine.SyncOptions(sync_name=namespace, namespace=namespace))
    try:
        engine.restore(kube, spec, options)
        key = digests.cluster_key(kube, create=False)
        entry = next(e for e in inventory.load(kube, namespace).entries if e.ref.kind == "Secret")
        sent = {**yaml.safe_load(SECRET), "metadata": {
            "name": "db", "namespace": namespace, "labels": {SYNC_LABEL: namespace}}}
        assert len(key) == 32
        assert entry.digest == digests.keyed(sent, key) != digests.plain(sent)

        before = apiserver_metrics.sample(local_cluster.kubeconfig)
        again = engine.restore(kube, spec, options)
        after = apiserver_metrics.sample(local_cluster.kubeconfig)
        assert again.changes.count()["unchanged"] == 2
        assert dry_runs(before, after) == 0

        commit(repo, {"secret.yaml": SECRET.replace("hunter2", "hunter3")}, "v2")
        changed = engine.restore(kube, spec, options)
        assert [str(c.ref) for c in changed.changes.changes if c.action.value == "update"] == [
            f"Secret/{namespace}/db"]
    finally:
        inventory.delete(kube, namespace)


def test_a_digest_key_secret_without_a_key_is_refused_naming_it_and_nothing_is_written(
        kube, namespace, tmp_path):
    repo = new_repo(tmp_path / "app")
    commit(repo, {"cm.yaml": m.configmap("settings")}, "v1")
    spec, options = (engine.SourceSpec(repo=str(repo)),
                     engine.SyncOptions(sync_name=namespace, namespace=namespace))
    path = SECRET_RT.path(NAMESPACE, digests.KEY_SECRET)
    original = None
    try:
        first = engine.restore(kube, spec, options).revision.sha  # makes the key if none yet
        original = kube.get(SECRET_RT, NAMESPACE, digests.KEY_SECRET)
        kube.request("PATCH", path, {"data": {"key": base64.b64encode(b"short").decode()}},
                     content_type="application/merge-patch+json")
        commit(repo, {"more.yaml": m.configmap("more")}, "v2")
        with pytest.raises(digests.DigestKeyError, match=f"{NAMESPACE}/{digests.KEY_SECRET}"):
            engine.restore(kube, spec, options)
        assert kube.get(CONFIGMAP_RT, namespace, "more") is None
        assert inventory.load(kube, namespace).revision == first
    finally:
        if original is not None:
            kube.request("PATCH", path, {"data": original["data"]},
                         content_type="application/merge-patch+json")
        inventory.delete(kube, namespace)


def test_an_object_a_dry_run_finds_unchanged_is_recorded_so_the_next_run_trusts_it(
        kube, local_cluster, namespace, tmp_path):
    repo = new_repo(tmp_path / "app")
    commit(repo, {"cm.yaml": m.configmap("settings", mode="fast")}, "v1")
    spec, options = (engine.SourceSpec(repo=str(repo)),
                     engine.SyncOptions(sync_name=namespace, namespace=namespace))
    try:
        engine.restore(kube, spec, options)
        # As an older inventory (or a lost write) leaves it: owned, but no digest to trust.
        old = inventory.load(kube, namespace)
        inventory.save(kube, dataclasses.replace(
            old, entries=tuple(dataclasses.replace(e, digest="", owned="") for e in old.entries)))

        before = apiserver_metrics.sample(local_cluster.kubeconfig)
        engine.restore(kube, spec, options)
        between = apiserver_metrics.sample(local_cluster.kubeconfig)
        engine.restore(kube, spec, options)
        after = apiserver_metrics.sample(local_cluster.kubeconfig)

        assert dry_runs(before, between) == 1  # the object had to be checked once
        entry = inventory.load(kube, namespace).entries[0]
        assert entry.digest and entry.owned
        assert dry_runs(between, after) == 0  # and was trusted then
    finally:
        inventory.delete(kube, namespace)
