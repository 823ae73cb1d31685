"""The agent with a Sync `verify` section: keys from a Secret in Flux's shape (written by
`agent install`), a pushed signed commit applied, an unsigned one refused with the last
applied state kept, a condition, an Event naming the commit and a refusal counted.

The agent runs as a real process against the real local cluster (as in test_agent.py); the
repository is a local path the test commits to, signed with keys the test made."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrap import agent
from sync_agent import inventory, signatures
from sync_agent.agent import syncobject, verifykeys
from sync_agent.conventions import LEASE_RT, SECRET_RT
from sync_agent.kube import Kube
from tests import manifests as m
from tests.test_agent import NS, Sync, configmap, events_of, metric
from tests.testdata import signing
from tests.testdata.gitrepos import git, new_repo


@dataclass
class LocalFleet:
    """What test_agent's Sync helper needs of a fleet: the work tree (logs go beside it)."""

    work: Path


@pytest.fixture
def signed_sync(local_cluster, namespace, tmp_path):
    dana = signing.ssh_signer(tmp_path / "keys", "dana@example.com")
    work = new_repo(tmp_path / "work")
    signing.signed_commit(work, dana, {"app/settings.yaml": m.configmap("settings",
                                                                         color="blue")}, "v1")
    allowed = dana.allowed_signers(tmp_path / "allowed_signers")
    policy = signatures.Policy("head", signatures.Keys.from_files(allowed, None))
    kube = Kube.from_kubeconfig(local_cluster.kubeconfig)
    name = namespace[:52].strip("-")
    request = agent.InstallRequest(sync=name, repo=str(work), branch="main", path="app",
                                   interval="2s", default_namespace=namespace, verify=policy)
    agent.install(agent.Target(kube, local_cluster.kubeconfig, None), request, start=False)
    handle = Sync(name, kube, local_cluster.kubeconfig, LocalFleet(work), Path(), Path())
    yield handle, dana
    handle.remove(verifykeys.secret_name(name))


def test_install_stores_the_keys_in_a_flux_shaped_secret(signed_sync):
    sync, dana = signed_sync
    spec = sync.obj().spec
    assert (spec.verify_mode, spec.verify_secret) == ("head", verifykeys.secret_name(sync.name))
    secret = sync.kube.get(SECRET_RT, NS, spec.verify_secret)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert list(data) == ["dana_example.com.sshpub"]
    assert data["dana_example.com.sshpub"].split()[:2] == dana.public.read_text().split()[:2]


def test_agent_applies_signed_commits_and_refuses_an_unsigned_one_keeping_state(
        api_client, namespace, signed_sync):
    sync, dana = signed_sync
    work = sync.fleet.work
    started = sync.start_agent()
    v1 = git(work, "rev-parse", "HEAD")
    sync.wait(lambda: sync.applied(v1), "the first, signed commit to be applied")
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}

    unsigned = signing.signed_commit(work, None, {"app/settings.yaml": m.configmap(
        "settings", color="evil")}, "pushed without a signature")
    ready = sync.wait(lambda: (r := sync.ready()).get("status") == "False" and r,
                      "Ready=False for the unsigned commit")
    assert ready["reason"] == "SignatureVerificationFailed"
    assert f"commit {unsigned[:12]} by Dana Ops <dana@example.com>" in ready["message"]
    assert "unsigned" in ready["message"]
    status = sync.obj().status
    assert status["lastAppliedRevision"] == v1
    assert status["lastAttemptedRevision"] == unsigned
    assert sync.obj().condition(syncobject.STALLED)["status"] == "True"
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    [event] = sync.wait(lambda: events_of(sync, "SignatureVerificationFailed"),
                        "a Warning Event")[:1]
    assert event["type"] == "Warning" and unsigned[:12] in event["message"]
    text = sync.wait(lambda: (r := started.get("/metrics")[1]) and metric(
        r, "gitops_restore_signature_refusals_total", sync=sync.name) and r,
        "the refusal counter")
    assert metric(text, "gitops_restore_signature_refusals_total", sync=sync.name) >= 1

    signed = signing.signed_commit(work, dana, {"app/settings.yaml": m.configmap(
        "settings", color="green")}, "signed again")
    sync.wait(lambda: sync.applied(signed), "the next signed commit (head mode)")
    assert configmap(api_client, namespace, "settings") == {"color": "green"}


def test_agent_install_cli_chain_mode_refuses_an_unsigned_commit_under_a_signed_head(
        api_client, namespace, tmp_path):
    """`agent install --verify-signatures chain` (the local provider runs the agent as a local
    process): a signed head does not carry an unsigned commit below it into the cluster."""
    from bootstrap import clusters
    from sync_agent.agent import localproc
    from tests import cli
    from tests.conftest import SESSION_CLUSTER
    dana = signing.ssh_signer(tmp_path / "keys", "dana@example.com")
    work = new_repo(tmp_path / "work")
    v1 = signing.signed_commit(work, dana, {"app/settings.yaml": m.configmap(
        "settings", color="blue")}, "v1")
    args = ("agent", "install", "--repo", str(work), "--path", "app", "--interval", "2s",
            "--cluster", SESSION_CLUSTER, "--sync", namespace, "-n", namespace,
            "--verify-signatures", "chain",
            "--allowed-signers", str(dana.allowed_signers(tmp_path / "allowed")))
    kube = Kube.from_kubeconfig(clusters.load(SESSION_CLUSTER).kubeconfig)
    sync = Sync(namespace, kube, "", LocalFleet(work), Path(), Path())
    try:
        cli.run_json(*args, check_code=0)
        sync.wait(lambda: sync.applied(v1), "the signed v1")
        sneaked = signing.signed_commit(work, None, {"app/settings.yaml": m.configmap(
            "settings", color="evil")}, "unsigned, hidden under a signed head")
        signing.signed_commit(work, dana, {"app/more.yaml": m.configmap("more")}, "signed")
        ready = sync.wait(lambda: (r := sync.ready()).get("status") == "False" and r,
                          "the chain to be refused")
        assert ready["reason"] == "SignatureVerificationFailed"
        assert f"commit {sneaked[:12]}" in ready["message"]
        assert sync.obj().status["lastAppliedRevision"] == v1
        assert configmap(api_client, namespace, "settings") == {"color": "blue"}
        assert configmap(api_client, namespace, "more") is None
    finally:
        localproc.stop(clusters.cluster_dir(SESSION_CLUSTER), namespace)
        for rt, obj in ((syncobject.SYNC_RT, namespace), (LEASE_RT, f"agent-{namespace}"),
                        (SECRET_RT, verifykeys.secret_name(namespace))):
            kube.delete(rt, NS, obj)
        inventory.delete(kube, namespace)
        kube.close()
