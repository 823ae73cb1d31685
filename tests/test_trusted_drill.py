"""Issue 13 end to end: a repository whose commits are SSH-signed and whose Secrets are
encrypted with SOPS/age, drilled on a cluster of its own (local provider) and followed by the
real agent on the session cluster over real SSH Git -- a newly signed push applied with its
decrypted value, an unsigned push refused with the last applied state kept.

Everything is real: ssh-keygen signing keys and an allowed_signers file, the sops CLI with an
age key, sshd serving the repository, the local API server, the agent as a local process."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from kubernetes import client

from bootstrap import clusters
from bootstrap import deploy_key as dk
from sync_agent import conventions, inventory
from sync_agent.agent import decryption, localproc, syncobject, verifykeys
from sync_agent.conventions import LEASE_RT, SECRET_RT
from sync_agent.kube import Kube
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.sopsfiles import age_key, encrypt
from tests.sshgit import SshGitServer, make_key_pair
from tests.test_agent import NS, Sync, configmap, events_of, wait_for
from tests.test_agent_signatures import LocalFleet
from tests.test_drill import PHASES, junit_cases, phase, valid_report
from tests.test_sops import PASSWORD, SECRET, TOKEN
from tests.testdata import signing
from tests.testdata.gitrepos import new_repo

ROTATED = "rotated-plain-sops-value-2"  # the Secret's value in the second signed commit
EVIL = "unsigned-plain-sops-value-3"  # ... in the unsigned commit the agent must refuse
DRILL_NS = "vault-drill"


def namespace_yaml(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"


def app_files(workdir: Path, recipient: str, password: str, color: str, replicas: int,
              namespace: str | None = None) -> dict[str, str]:
    """app/: a ConfigMap, a Deployment and the Secret encrypted by the real sops (data and
    stringData only, as teams commit them); with `namespace`, its Namespace too."""
    secret = encrypt(SECRET.replace(PASSWORD, password), recipient, workdir, "yaml",
                     "--encrypted-regex", "^(data|stringData)$")
    files = {"app/settings.yaml": m.configmap("settings", color=color),
             "app/web.yaml": m.deployment("web", replicas=replicas),
             "app/secret.yaml": secret}
    if namespace:
        files["app/namespace.yaml"] = namespace_yaml(namespace)
    return files


def plain_spellings(*values: str) -> list[str]:
    return [s for v in values for s in (v, base64.b64encode(v.encode()).decode())]


def age_secret(key_file: Path) -> str:
    return next(line for line in key_file.read_text().splitlines()
                if line.startswith("AGE-SECRET-KEY-"))


def db_password(core: client.CoreV1Api, namespace: str) -> str:
    """The password of the Secret `db` as the cluster holds it ("" while there is none)."""
    found = [s for s in core.list_namespaced_secret(namespace).items if s.metadata.name == "db"]
    return base64.b64decode(found[0].data["password"]).decode() if found else ""


def assert_nothing_leaks(texts: dict[str, str], secrets: list[str]) -> None:
    for where, text in texts.items():
        for value in secrets:
            assert value not in text, f"{value[:12]}… appears in {where}"


def test_drill_of_a_signed_repository_with_encrypted_secrets_passes_and_names_signers(
        state_root, tmp_path):
    dana = signing.ssh_signer(tmp_path / "keys", "dana@example.com")
    allowed = dana.allowed_signers(tmp_path / "allowed_signers")
    key = age_key(tmp_path)
    repo = new_repo(tmp_path / "repo")
    v1 = signing.signed_commit(repo, dana, app_files(tmp_path, key.recipient, PASSWORD, "blue",
                                                     1, DRILL_NS), "v1, signed")
    v2 = signing.signed_commit(repo, dana, app_files(tmp_path, key.recipient, ROTATED, "green",
                                                     2, DRILL_NS), "v2: new password, signed")
    out = {name: tmp_path / f"drill.{name}" for name in ("json", "xml", "md")}
    result = cli.run("drill", "--repo", str(repo), "--path", "app", "-n", DRILL_NS,
                     "--verify-signatures", "head", "--allowed-signers", str(allowed),
                     "--sops-age-key", str(key.file), "--timeout", "3m",
                     "--report", str(out["json"]), "--junit", str(out["xml"]),
                     "--summary", str(out["md"]), check_code=0)

    report = valid_report(out["json"])
    assert report["result"] == "passed"
    assert [(p["name"], p["result"]) for p in report["phases"]] == [
        (name, "passed") for name in PHASES]
    assert (report["from"]["sha"], report["to"]["sha"]) == (v2, v1)
    for label, sha in (("from", v2), ("to", v1)):
        [signed] = report[label]["signatures"]
        assert (signed["sha"], signed["signer"]) == (sha, "dana@example.com")
        assert signed["key"].startswith("SHA256:")
    secret = f"Secret/{DRILL_NS}/db"
    for name in ("rollback-to", "roll-forward"):  # the decrypted value changed both ways
        assert {"object": secret, "result": "configured"} in phase(report, name)["changes"]
    for name in ("verify-from", "verify-to", "verify-forward"):
        assert phase(report, name)["result"] == "passed"
    assert report["cluster"]["provider"] == "local" and not report["cluster"]["kept"]
    assert not any(case.findall("failure") for case in junit_cases(out["xml"]).values())

    texts = {"stdout": result.stdout, "stderr": result.stderr,
             **{path.name: path.read_text() for path in out.values()}}
    assert_nothing_leaks(texts, [*plain_spellings(PASSWORD, ROTATED, TOKEN),
                                 age_secret(key.file)])


# --- the agent: signed pushes followed, an unsigned one refused ------------------------------

@pytest.fixture
def trusted_sync(local_cluster, namespace, tmp_path):
    """An SSH Git server with a `fleet` repository (one signed commit), the deploy key
    authorized, and the names to clean up afterwards."""
    with SshGitServer() as server:
        dana = signing.ssh_signer(tmp_path / "keys", "dana@example.com")
        key = age_key(tmp_path)
        work = new_repo(tmp_path / "work")
        v1 = signing.signed_commit(work, dana, app_files(tmp_path, key.recipient, PASSWORD,
                                                         "blue", 1), "v1, signed")
        url = server.create_repo("fleet", from_repo=work)
        deploy = make_key_pair(tmp_path / "deploy-key", comment="trusted-drill")
        server.add_key(deploy.public)
        kube = Kube.from_kubeconfig(local_cluster.kubeconfig)
        name = namespace[:52].strip("-")
        handle = Sync(name, kube, local_cluster.kubeconfig, LocalFleet(work), deploy.private,
                      server.write_known_hosts(tmp_path / "known_hosts"))
        try:
            yield handle, server, url, dana, key, v1
        finally:
            localproc.stop(clusters.cluster_dir(SESSION_CLUSTER), name)
            for rt, obj in ((syncobject.SYNC_RT, name), (LEASE_RT, f"agent-{name}"),
                            (SECRET_RT, verifykeys.secret_name(name)),
                            (SECRET_RT, decryption.secret_name(name)),
                            (SECRET_RT, dk.secret_name(name))):
                kube.delete(rt, NS, obj)
            inventory.delete(kube, name)
            kube.close()


def test_agent_follows_signed_pushes_with_decrypted_secrets_and_refuses_an_unsigned_one(
        api_client, namespace, tmp_path, trusted_sync):
    sync, server, url, dana, key, v1 = trusted_sync
    work = sync.fleet.work
    outputs: dict[str, str] = {}

    def run(label: str, *args: str) -> dict:
        result = cli.run(*args, "--cluster", SESSION_CLUSTER, "--output", "json", check_code=0)
        outputs[f"{label} stdout"], outputs[f"{label} stderr"] = result.stdout, result.stderr
        return json.loads(result.stdout)

    run("deploy-key create", "deploy-key", "create", "--repo", url, "--deploy-key", sync.name,
        "--private-key-file", str(sync.deploy_key), "--known-hosts", str(sync.known_hosts))
    installed = run("agent install", "agent", "install", "--repo", url, "--path", "app",
                    "--interval", "2s", "--sync", sync.name, "-n", namespace,
                    "--deploy-key", sync.name, "--verify-signatures", "head",
                    "--allowed-signers", str(dana.allowed_signers(tmp_path / "allowed")),
                    "--sops-age-key", str(key.file))
    assert installed["started"] is True
    log = localproc.logfile(clusters.cluster_dir(SESSION_CLUSTER), sync.name)
    core = client.CoreV1Api(api_client)

    def password() -> str:
        return db_password(core, namespace)

    def explain() -> str:
        return sync.explain() + "\n--- local agent:\n" + log.read_text(errors="replace")[-4000:]

    wait_for(lambda: sync.applied(v1), "the signed v1 to be applied", explain=explain)
    assert password() == PASSWORD
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}

    v2 = signing.signed_commit(work, dana, app_files(tmp_path, key.recipient, ROTATED, "green",
                                                     2), "v2: new password, signed")
    server.update_repo("fleet", work)
    wait_for(lambda: sync.applied(v2), "the pushed, signed v2 to be applied", explain=explain)
    assert password() == ROTATED
    assert configmap(api_client, namespace, "settings") == {"color": "green"}
    assert client.AppsV1Api(api_client).read_namespaced_deployment(
        "web", namespace).spec.replicas == 2

    unsigned = signing.signed_commit(work, None, app_files(tmp_path, key.recipient, EVIL, "evil",
                                                           3), "pushed without a signature")
    server.update_repo("fleet", work)
    ready = wait_for(lambda: (r := sync.ready()).get("status") == "False" and r,
                     "Ready=False for the unsigned push", explain=explain)
    assert ready["reason"] == "SignatureVerificationFailed"
    assert f"commit {unsigned[:12]} by Dana Ops <dana@example.com>" in ready["message"]
    assert "unsigned" in ready["message"]
    status = sync.obj().status
    assert (status["lastAppliedRevision"], status["lastAttemptedRevision"]) == (v2, unsigned)
    assert password() == ROTATED  # the last applied state stays
    assert configmap(api_client, namespace, "settings") == {"color": "green"}
    [event] = wait_for(lambda: events_of(sync, "SignatureVerificationFailed"),
                       "a Warning Event naming the commit", explain=explain)[:1]
    assert event["type"] == "Warning" and unsigned[:12] in event["message"]

    events = [e.get("message", "") for e in sync.kube.list(conventions.EVENT_RT, NS)]
    assert_nothing_leaks({**outputs, "agent log": log.read_text(errors="replace"),
                          "Sync status": json.dumps(status), "Events": json.dumps(events)},
                         [*plain_spellings(PASSWORD, ROTATED, EVIL, TOKEN),
                          age_secret(key.file)])
