"""--verify-signatures end to end: the real CLI, real signed commits, the real local cluster.

A refused commit stops the run before anything is applied (exit 2, naming the commit, its
author, the reason and the fix); a verified one is restored and its signer reported."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.testdata import signing
from tests.testdata.gitrepos import new_repo


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    where = tmp_path_factory.mktemp("keys")
    pgp = signing.pgp_signer(where / "gnupg", "Rel Eng <releng@example.com>")
    dana = signing.ssh_signer(where / "ssh", "dana@example.com")
    trusted = where / "trusted"
    trusted.mkdir()
    pgp.export(trusted / "releng.asc")
    yield {"dana": dana, "pgp": pgp, "stranger": signing.ssh_signer(where / "x", "mallory@x.org"),
           "allowed": dana.allowed_signers(where / "allowed_signers"), "trusted": trusted}
    signing.stop_agent(pgp)


def gr(verb: str, repo, namespace: str, *args: str, code: int | None = 0):
    return cli.run(verb, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n", namespace,
                   "--sync", namespace, *args, check_code=code)


def color(api_client, namespace: str) -> str | None:
    core = client.CoreV1Api(api_client)
    found = [c for c in core.list_namespaced_config_map(namespace).items
             if c.metadata.name == "settings"]
    return found[0].data["color"] if found else None


def settings(value: str) -> dict[str, str]:
    return {"app/settings.yaml": m.configmap("settings", color=value)}


def test_good_signature_restores_and_names_the_signer(local_cluster, api_client, namespace,
                                                      tmp_path, keys):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, keys["dana"], settings("blue"), "signed v1")
    result = gr("restore", repo, namespace, "--path", "app", "--verify-signatures", "head",
                "--allowed-signers", str(keys["allowed"]), "--output", "json")
    report = json.loads(result.stdout)
    [signed] = report["signatures"]
    assert (signed["sha"], signed["signer"]) == (sha, "dana@example.com")
    assert signed["key"].startswith("SHA256:")
    assert "signatures" in [p["phase"] for p in report["phases"]]
    assert color(api_client, namespace) == "blue"
    text = gr("plan", repo, namespace, "--path", "app", "--verify-signatures", "head",
              "--allowed-signers", str(keys["allowed"])).stdout
    assert f"signed: {sha[:12]} signed by dana@example.com (SHA256:" in text


@pytest.mark.parametrize("signer, reason", [
    (None, "unsigned"),
    ("stranger", "signed by an SSH key that is not in the allowed signers"),
])
def test_unsigned_or_unknown_key_is_refused_before_anything_is_applied(
        local_cluster, api_client, namespace, tmp_path, keys, signer, reason):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, keys[signer] if signer else None, settings("red"), "v1")
    result = gr("restore", repo, namespace, "--path", "app", "--verify-signatures", "head",
                "--allowed-signers", str(keys["allowed"]), code=2)
    assert f"commit {sha[:12]} by Dana Ops <dana@example.com>" in result.stderr
    assert reason in result.stderr and "Fix:" in result.stderr
    assert "nothing was applied" in result.stderr
    assert color(api_client, namespace) is None


def test_tampered_commit_is_refused(local_cluster, api_client, namespace, tmp_path, keys):
    repo = new_repo(tmp_path / "repo")
    signed = signing.signed_commit(repo, keys["dana"], settings("blue"), "signed v1")
    forged = signing.tamper(repo, signed, "signed v1, or so it says")
    result = gr("restore", repo, namespace, "--path", "app", "--verify-signatures", "head",
                "--allowed-signers", str(keys["allowed"]), code=2)
    assert f"commit {forged[:12]}" in result.stderr and "bad signature" in result.stderr
    assert color(api_client, namespace) is None


def test_signed_tag_vouches_for_its_commit(local_cluster, api_client, namespace, tmp_path,
                                          keys):
    repo = new_repo(tmp_path / "repo")
    sha = signing.signed_commit(repo, None, settings("green"), "release, unsigned commit")
    signing.signed_tag(repo, keys["pgp"], "v1.4.0")
    args = ("--path", "app", "--verify-signatures", "head", "--trusted-keys",
            str(keys["trusted"]))
    refused = gr("restore", repo, namespace, *args, "--ref", sha, code=2)
    assert "unsigned" in refused.stderr
    report = json.loads(gr("restore", repo, namespace, *args, "--ref", "v1.4.0",
                           "--output", "json").stdout)
    [tag] = report["signatures"]
    assert (tag["tag"], tag["sha"], tag["key"]) == ("v1.4.0", sha, keys["pgp"].fingerprint)
    assert color(api_client, namespace) == "green"


def test_chain_refuses_an_unsigned_commit_since_the_last_applied_one(
        local_cluster, api_client, namespace, tmp_path, keys):
    repo = new_repo(tmp_path / "repo")
    chain = ("--path", "app", "--verify-signatures", "chain", "--allowed-signers",
             str(keys["allowed"]))
    signing.signed_commit(repo, keys["dana"], settings("blue"), "v1")
    gr("restore", repo, namespace, *chain)
    sneaked = signing.signed_commit(repo, None, settings("evil"), "sneaked in unsigned")
    signing.signed_commit(repo, keys["dana"], {"app/more.yaml": m.configmap("more")}, "v2")
    result = gr("restore", repo, namespace, *chain, code=2)
    assert f"commit {sneaked[:12]} by Dana Ops" in result.stderr
    assert color(api_client, namespace) == "blue"  # the last applied state stays
    # head mode looks at the signed head only (the operator's choice)
    gr("restore", repo, namespace, *chain[:3], "head", *chain[4:])
    assert color(api_client, namespace) == "evil"


def test_rollback_verifies_its_target(local_cluster, api_client, namespace, tmp_path, keys):
    repo = new_repo(tmp_path / "repo")
    first = signing.signed_commit(repo, None, settings("blue"), "v1 unsigned")
    signing.signed_commit(repo, keys["dana"], settings("green"), "v2")
    verify = ("--verify-signatures", "chain", "--allowed-signers", str(keys["allowed"]))
    gr("restore", repo, namespace, "--path", "app", *verify)
    result = gr("rollback", repo, namespace, "--path", "app", "--to", first, *verify, code=2)
    assert f"commit {first[:12]}" in result.stderr and "unsigned" in result.stderr
    assert color(api_client, namespace) == "green"
    # A signed release tag on that commit vouches for it: the rollback by tag goes through.
    signing.signed_tag(repo, keys["dana"], "v1", first)
    report = json.loads(gr("rollback", repo, namespace, "--path", "app", "--to", "v1",
                           *verify, "--output", "json").stdout)
    assert [(s["tag"], s["sha"], s["signer"]) for s in report["signatures"]] == [
        ("v1", first, "dana@example.com")]
    assert color(api_client, namespace) == "blue"


def test_key_options_without_a_mode_or_with_a_bad_file_are_refused(tmp_path, keys):
    repo = new_repo(tmp_path / "repo")
    signing.signed_commit(repo, keys["dana"], settings("blue"), "v1")
    result = cli.run("plan", "--repo", str(repo), "--allowed-signers", str(keys["allowed"]),
                     check_code=2)
    assert "--verify-signatures head|chain" in result.stderr
    bad = tmp_path / "allowed"
    bad.write_text("dana ssh-ed25519\n")
    result = cli.run("plan", "--repo", str(repo), "--verify-signatures", "head",
                     "--allowed-signers", str(bad), check_code=2)
    assert f"--allowed-signers {bad}, line 1" in result.stderr


def test_history_shows_each_commits_signer(tmp_path, keys):
    repo = new_repo(tmp_path / "repo")
    ssh = signing.signed_commit(repo, keys["dana"], settings("blue"), "v1")
    plain = signing.signed_commit(repo, None, settings("green"), "v2")
    pgp = signing.signed_commit(repo, keys["pgp"], settings("red"), "v3")
    args = ("history", "--repo", str(repo), "--path", "app")
    rows = json.loads(cli.run(*args, "--allowed-signers", str(keys["allowed"]),
                              "--trusted-keys", str(keys["trusted"]), "--output", "json",
                              check_code=0).stdout)
    signer = {row["sha"]: row["signer"] for row in rows}
    assert signer[ssh].startswith("dana@example.com (SHA256:")
    assert signer[plain] == "unsigned"
    assert signer[pgp] == f"Rel Eng <releng@example.com> ({keys['pgp'].fingerprint})"
    # without the OpenPGP keys that commit's key is not trusted; the text shows a column
    text = cli.run(*args, "--allowed-signers", str(keys["allowed"]), check_code=0).stdout
    assert f"{pgp[:12]}" in text and "signer: untrusted key" in text
    assert "signer: dana@example.com (SHA256:" in text


def _drill_repo(tmp_path, keys, second_signer) -> tuple:
    repo = new_repo(tmp_path / "repo")
    first = signing.signed_commit(repo, keys["dana"], settings("blue"), "v1")
    second = signing.signed_commit(repo, second_signer, settings("green"), "v2")
    return repo, first, second


def test_drill_reports_each_targets_signer(local_cluster, namespace, tmp_path, keys):
    from tests.test_drill import drill_existing  # validates the report against the schema
    repo, first, second = _drill_repo(tmp_path, keys, keys["dana"])
    report, _ = drill_existing(repo, namespace, local_cluster.kubeconfig, tmp_path,
                               "--path", "app", "--verify-signatures", "head",
                               "--allowed-signers", str(keys["allowed"]), "--timeout", "60s",
                               code=0)
    assert [(s["sha"], s["signer"]) for s in report["from"]["signatures"]] == \
        [(second, "dana@example.com")]
    assert [s["sha"] for s in report["to"]["signatures"]] == [first]
    assert "Signatures verified:" in (tmp_path / "summary.md").read_text()


def test_drill_refuses_an_unsigned_target_before_provisioning(state_root, tmp_path, keys):
    repo, _, second = _drill_repo(tmp_path, keys, None)
    result = cli.run("drill", "--repo", str(repo), "--path", "app", "--verify-signatures",
                     "head", "--allowed-signers", str(keys["allowed"]), check_code=2)
    assert f"commit {second[:12]}" in result.stderr and "unsigned" in result.stderr
    assert "provision" not in result.stderr


def test_bootstrap_and_agent_install_check_the_keys_before_changing_anything(
        state_root, tmp_path, keys):
    repo = new_repo(tmp_path / "repo")
    signing.signed_commit(repo, keys["dana"], settings("blue"), "v1")
    missing = tmp_path / "nowhere.asc"
    result = cli.run("bootstrap", "--cluster", "signed-boot", "--repo", str(repo), "--path", "app",
                     "--verify-signatures", "head", "--trusted-keys", str(missing),
                     check_code=2)
    assert f"--trusted-keys {missing}: no such file" in result.stderr
    assert "provision" not in result.stderr
    assert not (state_root / "clusters" / "signed-boot").exists()
    result = cli.run("agent", "install", "--repo", str(repo), "--verify-signatures", "chain",
                     "--kubeconfig", str(tmp_path / "no-kubeconfig"), check_code=2)
    assert "no trusted keys" in result.stderr
