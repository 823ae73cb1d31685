"""`gitops-restore bootstrap` end to end, run as a user runs it: a new local cluster, the
guestbook fixture served by a real SSH Git server, a generated deploy key printed for the user
to add, the agent as a local process; a second run changes nothing; destroy stops the agent.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client, config

from bootstrap import agent, cluster_bootstrap, clusters
from bootstrap import deploy_key as dk
from bootstrap.cli import agent as agent_cli
from bootstrap.errors import UserError
from sync_agent import conventions, inventory, paths
from sync_agent.agent import decryption, localproc, syncobject, verifykeys
from sync_agent.conventions import LEASE_RT
from sync_agent.kube import Kube
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.sopsfiles import age_key
from tests.sshgit import HOST, SshGitServer, make_key_pair
from tests.test_agent import wait_for
from tests.test_sops import PASSWORD
from tests.test_trusted_drill import ROTATED, age_secret, app_files, db_password
from tests.testdata import signing
from tests.testdata.gitrepos import clone_bundle, commit, git, new_repo

CLUSTER = "bootstrap-e2e"
GUESTBOOK = ("--path", "web/guestbook", "--ignore", "all-in-one", "--ignore", "legacy",
             "--branch", "master")


@pytest.fixture
def git_server():
    with SshGitServer() as server:
        yield server


@pytest.fixture
def guestbook(git_server: SshGitServer, tmp_path: Path) -> tuple[str, str]:
    work = clone_bundle("guestbook", tmp_path / "guestbook")
    git(work, "checkout", "-q", "master")
    return git_server.create_repo("guestbook", from_repo=work), git(work, "rev-parse", "HEAD")


@pytest.fixture
def e2e_cluster(state_root, tmp_path, monkeypatch):
    """A cluster only this test uses, in a state root of its own (its control plane shares
    nothing with the session's), removed afterwards whatever happened -- also when bootstrap
    was stopped halfway through provisioning, before the cluster was recorded."""
    monkeypatch.setenv("GITOPS_RESTORE_STATE", str(tmp_path / "e2e-state"))
    yield CLUSTER
    if (clusters.cluster_dir(CLUSTER) / "cluster.json").exists():
        cli.run("destroy", "--cluster", CLUSTER)
    localproc.stop_all(clusters.cluster_dir(CLUSTER))  # in case destroy itself failed
    kwok = paths.state_root() / "kwok"
    if (kwok / "clusters" / CLUSTER).exists():
        subprocess.run([str(paths.k8s_bin_dir() / "kwokctl"), "delete", "cluster", "--name",
                        CLUSTER], env={**os.environ, "KWOK_WORKDIR": str(kwok)},
                       capture_output=True, timeout=120)


class Lines:
    """stderr of a running command, read in a thread so the test can react to a line."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.lines.append(line)

    def wait_for(self, start: str, process: subprocess.Popen, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            for line in list(self.lines):
                if line.strip().startswith(start):
                    return line.strip()
            time.sleep(0.2)
        pytest.fail(f"no line starting {start!r}; stderr:\n{''.join(self.lines)}",
                    pytrace=False)

    def text(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)


def bootstrap_args(url: str, fingerprint: str, source: tuple[str, ...] = GUESTBOOK
                   ) -> list[str]:
    return [cli.COMMAND, "bootstrap", "--provider", "local", "--cluster", CLUSTER, "--repo", url,
            *source, "--interval", "2s", "--accept-host-key", fingerprint, "--yes",
            "--timeout", "3m"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_bootstrap_end_to_end_then_nothing_changes_then_destroy_stops_the_agent(
        git_server: SshGitServer, guestbook, e2e_cluster, tmp_path):
    url, head = guestbook
    first = subprocess.Popen([*bootstrap_args(url, git_server.host_key_fingerprint()),
                              "--output", "json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                             start_new_session=True)
    try:
        stderr = Lines(first)
        # No key was given: bootstrap makes one, prints it, and waits until the server
        # accepts it -- as a user adding it to the forge would make it.
        public = stderr.wait_for("ssh-ed25519 ", first)
        git_server.add_key(public)
        out, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:  # its whole session: ansible and what it started too
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 0, stderr.text()
    report = json.loads(out)
    assert report["sha"] == head and report["changed"] is True
    record = clusters.load(CLUSTER)
    assert (report["kubeconfig"], report["context"]) == (record.kubeconfig, record.context)
    assert [p["phase"] for p in report["phases"]] == [
        "provision", "deploy-key", "agent-install", "restore", "agent-start", "agent-ready"]
    # The recovery time a user reads is the sum of the phases listed, none left out.
    assert report["seconds"] == pytest.approx(sum(p["seconds"] for p in report["phases"]),
                                              abs=0.01)
    assert "health" in [p["phase"] for p in report["restore_phases"]]
    pid = report["agent"]["local"]["pid"]
    assert report["agent"]["where"] == "local-process" and pid_alive(pid)

    api = config.new_client_from_config(config_file=record.kubeconfig)
    apps = client.AppsV1Api(api)
    frontend = apps.read_namespaced_deployment("frontend", "default")
    assert frontend.status.ready_replicas == frontend.spec.replicas
    names = {d.metadata.name for d in apps.list_namespaced_deployment("default").items}
    assert names == {"frontend", "redis-master", "redis-replica"}
    agent_deployment = apps.read_namespaced_deployment(
        f"agent-{report['sync']}", "gitops-restore-system")
    assert agent_deployment.spec.replicas == 0  # pods run nothing here: a local process does

    status = cli.run_json("agent", "status", "--cluster", CLUSTER, check_code=0)
    assert status["ready"] == "True" and status["status"]["lastAppliedRevision"] == head
    assert status["agent"]["running"] is True and status["agent"]["local"]["pid"] == pid
    assert status["leader"].startswith(f"{socket.gethostname()}-{pid}-")  # it holds the Lease

    # The agent keeps the cluster converged: a deleted Service comes back.
    client.CoreV1Api(api).delete_namespaced_service("frontend", "default")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        services = client.CoreV1Api(api).list_namespaced_service("default").items
        if "frontend" in {s.metadata.name for s in services}:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the agent did not restore the deleted Service")

    again = cli.run(*bootstrap_args(url, git_server.host_key_fingerprint())[1:],
                    check_code=0)
    assert "nothing changed" in again.stdout
    assert "recovery time" in again.stdout
    assert f"kubeconfig: {record.kubeconfig}" in again.stdout
    assert "configured" not in again.stderr and "stored in Secret" not in again.stderr, again.stderr
    assert cli.run_json("agent", "status", "--cluster", CLUSTER)["agent"]["local"]["pid"] == pid

    # The same again with the key pair given as a file: it is the one stored, so nothing is
    # stored again and every phase says so once.
    with Kube.from_kubeconfig(record.kubeconfig) as kube:
        key = dk.load_deploy_key(kube, agent_cli.default_key_name(None, url))
    key_file = tmp_path / "deploy_key"
    dk.write_private(key_file, key.identity)
    third = cli.run(*bootstrap_args(url, git_server.host_key_fingerprint())[1:],
                    "--private-key-file", str(key_file), "--output", "json", check_code=0)
    rerun = json.loads(third.stdout)
    assert rerun["changed"] is False and not any(p["changed"] for p in rerun["phases"])
    notes = {p["phase"]: p["note"] for p in rerun["phases"]}
    assert notes["agent-install"].endswith(" objects unchanged"), notes
    assert notes["deploy-key"].startswith(key.fingerprint), notes
    assert "stored in Secret" not in third.stderr and "configured" not in third.stderr, third.stderr

    cli.run("destroy", "--cluster", CLUSTER, check_code=0)
    assert not pid_alive(pid)
    assert not clusters.cluster_dir(CLUSTER).exists()


def test_bootstrap_of_signed_commits_and_sops_secrets_restores_them_and_the_agent_follows(
        git_server: SshGitServer, e2e_cluster, tmp_path):
    """Bootstrap with the allowed signers and the age key, from a repository of SSH-signed
    commits whose Secret the real sops encrypted: the decrypted value lands in the cluster, the
    agent gets the key and a Sync that verifies and decrypts, and applies a signed push."""
    dana = signing.ssh_signer(tmp_path / "keys", "dana@example.com")
    age = age_key(tmp_path)
    work = new_repo(tmp_path / "work")
    v1 = signing.signed_commit(work, dana, app_files(tmp_path, age.recipient, PASSWORD, "blue",
                                                     1), "v1, signed")
    url = git_server.create_repo("fleet", from_repo=work)
    deploy = make_key_pair(tmp_path / "deploy-key", comment="bootstrap-trusted")
    git_server.add_key(deploy.public)
    result = cli.run(*bootstrap_args(url, git_server.host_key_fingerprint(), ("--path", "app"))[1:],
                     "--private-key-file", str(deploy.private), "--verify-signatures", "head",
                     "--allowed-signers", str(dana.allowed_signers(tmp_path / "allowed")),
                     "--sops-age-key", str(age.file), "--output", "json", check_code=0)
    report = json.loads(result.stdout)
    assert report["sha"] == v1 and "sops-age-key" in [p["phase"] for p in report["phases"]]
    record = clusters.load(CLUSTER)
    core = client.CoreV1Api(config.new_client_from_config(config_file=record.kubeconfig))

    assert db_password(core, "default") == PASSWORD
    sync = report["sync"]
    stored = core.read_namespaced_secret(decryption.secret_name(sync), conventions.NAMESPACE)
    assert base64.b64decode(stored.data[decryption.DATA_KEY]).decode().strip() \
        == age_secret(age.file)
    with Kube.from_kubeconfig(record.kubeconfig) as kube:
        spec = agent.read_sync(kube, sync).spec
    assert (spec.verify_mode, spec.verify_secret, spec.decryption_secret) == (
        "head", verifykeys.secret_name(sync), decryption.secret_name(sync))
    trusted = core.read_namespaced_secret(spec.verify_secret, conventions.NAMESPACE).data
    [(entry, text)] = [(k, base64.b64decode(v).decode()) for k, v in trusted.items()]
    assert entry.endswith(".sshpub") and dana.public.read_text().split()[1] in text

    v2 = signing.signed_commit(work, dana, app_files(tmp_path, age.recipient, ROTATED, "green",
                                                     2), "v2: new password, signed")
    git_server.update_repo("fleet", work)
    log = localproc.logfile(clusters.cluster_dir(CLUSTER), sync)
    wait_for(lambda: cli.run_json("agent", "status", "--cluster", CLUSTER)["status"].get(
        "lastAppliedRevision") == v2, "the agent to apply the pushed, signed v2",
        explain=lambda: log.read_text(errors="replace")[-4000:])
    assert db_password(core, "default") == ROTATED


def test_bootstrap_refuses_a_wrong_host_key_before_making_anything(git_server, guestbook,
                                                                   state_root):
    url, _ = guestbook
    wrong = "SHA256:" + "A" * 43
    result = cli.run("bootstrap", "--provider", "local", "--cluster", "never-made", "--repo", url,
                     *GUESTBOOK, "--accept-host-key", wrong, "--yes", check_code=2)
    assert "refusing it" in result.stderr and "nothing was changed" in result.stderr
    assert not clusters.cluster_dir("never-made").exists()


def test_bootstrap_checks_the_private_key_file_before_making_anything(git_server, guestbook,
                                                                     state_root, tmp_path):
    url, _ = guestbook
    args = ("bootstrap", "--provider", "local", "--cluster", "never-made", "--repo", url,
            *GUESTBOOK, "--accept-host-key", git_server.host_key_fingerprint(), "--yes")
    missing = tmp_path / "no-such-key"
    result = cli.run(*args, "--private-key-file", str(missing), check_code=2)
    assert f"--private-key-file {missing}: cannot read it" in result.stderr
    garbage = tmp_path / "not-a-key"
    garbage.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnonsense\n")
    result = cli.run(*args, "--private-key-file", str(garbage), check_code=2)
    assert f"--private-key-file {garbage}: not an unencrypted SSH private key" in result.stderr
    assert "nonsense" not in result.stderr
    assert not clusters.cluster_dir("never-made").exists()


def test_bootstrap_with_yes_and_no_pinned_host_key_refuses_before_making_anything(
        git_server, guestbook, state_root):
    url, _ = guestbook
    result = cli.run("bootstrap", "--provider", "local", "--cluster", "never-made", "--repo", url,
                     *GUESTBOOK, "--yes", check_code=2)
    assert f"--accept-host-key {git_server.host_key_fingerprint()}" in result.stderr
    assert "nothing was changed" in result.stderr
    assert not clusters.cluster_dir("never-made").exists()


def test_bootstrap_asks_whoever_runs_it_to_confirm_a_scanned_host_key_first(git_server,
                                                                              guestbook,
                                                                              state_root):
    """Without --known-hosts or --accept-host-key the service asks through `confirm` before
    the first phase: accepted, its fingerprint is the one pinned later; refused, the error
    names the fingerprint to pass and nothing is made."""
    url, _ = guestbook
    fingerprint = git_server.host_key_fingerprint()
    request = cluster_bootstrap.BootstrapRequest(
        cluster="never-made", install=agent.InstallRequest(sync="s", repo=url, deploy_key="k"))
    asked = []
    assert cluster_bootstrap.check(request, lambda *shown: asked.append(shown) or True) \
        == fingerprint
    assert asked == [(f"[{HOST}]:{git_server.port}", fingerprint, "ssh-ed25519")]
    with pytest.raises(UserError) as refused:
        cluster_bootstrap.check(request, lambda *shown: False)
    assert f"--accept-host-key {fingerprint}" in str(refused.value)
    assert "nothing was changed" in str(refused.value)
    assert not clusters.cluster_dir("never-made").exists()


def test_agent_status_never_reports_a_dead_agent_as_running(tmp_path):
    """A pidfile whose process is gone, or whose pid now belongs to another program, is not
    an agent."""
    directory = tmp_path / "cluster"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        started = localproc.LocalAgent(sleeper.pid, "demo", 0.0, "127.0.0.1:1", "x.log")
        directory.mkdir()
        localproc.pidfile(directory, "demo").write_text(json.dumps(started.to_json()))
        assert localproc.running(directory, "demo") is None  # alive, but not our agent
        assert not localproc.pidfile(directory, "demo").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    agent = localproc.start(directory, "demo", str(tmp_path / "no-kubeconfig"), None,
                            "127.0.0.1:0")
    try:
        assert localproc.running(directory, "demo") == agent
    finally:
        # It exits by itself (no kubeconfig): then it is no longer reported as running.
        deadline = time.monotonic() + 60
        while localproc.running(directory, "demo") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert localproc.running(directory, "demo") is None
        assert "cannot configure the Kubernetes client" in Path(agent.log).read_text()


def test_agent_install_on_the_local_provider_starts_one_local_process(api_client, namespace,
                                                                       tmp_path):
    repo = new_repo(tmp_path / "fleet")
    commit(repo, {"app/a.yaml": m.configmap("a", k="v")}, "v1")
    args = ("agent", "install", "--repo", str(repo), "--path", "app", "--interval", "2s",
            "--cluster", SESSION_CLUSTER, "--sync", namespace, "-n", namespace)
    directory = clusters.cluster_dir(SESSION_CLUSTER)
    kube = Kube.from_kubeconfig(clusters.load(SESSION_CLUSTER).kubeconfig)
    try:
        first = cli.run_json(*args, check_code=0)
        assert first["started"] is True and first["agent"]["where"] == "local-process"
        pid = first["agent"]["local"]["pid"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            found = client.CoreV1Api(api_client).list_namespaced_config_map(namespace).items
            if "a" in {c.metadata.name for c in found}:
                break
            time.sleep(0.25)
        else:
            log = Path(first["agent"]["local"]["log"]).read_text()
            pytest.fail(f"the local agent did not apply:\n{log}", pytrace=False)
        again = cli.run_json(*args, check_code=0)
        assert again["started"] is False and again["agent"]["local"]["pid"] == pid
        assert not any(o["changed"] for o in again["objects"])
        status = cli.run_json("agent", "status", "--cluster", SESSION_CLUSTER, "--sync",
                              namespace, check_code=0)
        assert status["agent"]["running"] is True and status["agent"]["local"]["pid"] == pid
    finally:
        localproc.stop(directory, namespace)
    assert not pid_alive(pid)
    text = cli.run("agent", "status", "--cluster", SESSION_CLUSTER, "--sync", namespace,
                   check_code=0).stdout
    assert "NOT RUNNING" in text
    for rt, name in ((syncobject.SYNC_RT, namespace), (LEASE_RT, f"agent-{namespace}")):
        kube.delete(rt, conventions.NAMESPACE, name)
    inventory.delete(kube, namespace)
    kube.close()
