"""Shared fixtures: one real local cluster for the whole session, a fresh namespace per test.

The cluster is provisioned exactly as a user would (`provision --provider local`, through the
Ansible playbook) under a private state directory, and destroyed at the end. When the
control-plane binaries are missing the session fails with the command that builds them: tests
that need Kubernetes are never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from bootstrap import binaries, provision
from sync_agent import paths
from sync_agent.kube import Kube
from tests import manifests as m
from tests.testdata.gitrepos import commit, new_repo

SESSION_CLUSTER = "pytest"


@pytest.fixture(scope="session")
def state_root(tmp_path_factory) -> Iterator[Path]:
    """A private state root so the tests never see or touch a user's own clusters."""
    root = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:  # undone when the session ends
        patch.setenv("GITOPS_RESTORE_STATE", str(root))
        yield root


@pytest.fixture(scope="session")
def local_cluster(state_root):
    missing = binaries.missing_binaries()
    if missing:
        pytest.fail(f"control-plane binaries missing from {paths.k8s_bin_dir()}: "
                    f"{', '.join(missing)}; build them with `make cluster-bin`", pytrace=False)
    result = provision.provision("local", SESSION_CLUSTER, nodes=3)
    yield result.record
    provision.destroy(SESSION_CLUSTER)


@pytest.fixture(scope="session")
def api_client(local_cluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=local_cluster.kubeconfig)


@pytest.fixture(scope="module")
def kube(local_cluster) -> Iterator[Kube]:
    """The engine's own connection to the session cluster, one per test module."""
    with Kube.from_kubeconfig(local_cluster.kubeconfig, local_cluster.context) as connection:
        yield connection


@pytest.fixture
def namespace(api_client, request) -> str:
    """A namespace of its own for one test, deleted afterwards."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().replace("_", "-"))
    stem = stem[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def clone_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private clone cache, so a test sees exactly the mirrors it made."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(cache))
    return cache


@pytest.fixture
def work_tree(tmp_path: Path) -> Path:
    """A repository with one commit: app/settings.yaml, a ConfigMap."""
    repo = new_repo(tmp_path / "work")
    commit(repo, {"app/settings.yaml": m.configmap("settings", color="blue")}, "v1")
    return repo


@pytest.fixture
def command_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A log of every git and ssh command line started through PATH (one per line), by the
    commands and by the agents they start."""
    log = tmp_path / "command-lines.log"
    log.touch()
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    for program in ("git", "ssh"):
        wrapper = wrappers / program
        wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> "{log}"\n'
                           f'exec {shutil.which(program)} "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrappers}{os.pathsep}{os.environ['PATH']}")
    return log
