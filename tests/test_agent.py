"""The sync agent as a real process (`python -m sync_agent`) against the real local cluster,
reading the repository over real SSH (tests/sshgit.py) with the deploy key from its Secret.

Each test gets its own namespace, repository, deploy key and Sync; every agent process a
test starts is stopped afterwards, also when the test fails. Intervals are 2 s and every wait
is a poll with a deadline: nothing here asserts how long anything took.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client

from bootstrap import agent
from bootstrap import deploy_key as dk
from sync_agent import conventions, inventory
from sync_agent.agent import syncobject
from sync_agent.conventions import LEASE_RT
from sync_agent.kube import Kube
from tests import cli
from tests import manifests as m
from tests.sshgit import SshGitServer, make_key_pair
from tests.testdata.gitrepos import commit, new_repo

NS = conventions.NAMESPACE
DEADLINE = 90.0


def wait_for(check: Callable[[], object], what: str, timeout: float = DEADLINE,
             explain: Callable[[], str] = lambda: "") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}\n{explain()}", pytrace=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Fleet:
    """A work tree pushed to the SSH server's bare repository `fleet`."""

    work: Path
    server: SshGitServer
    url: str
    namespace: str

    def push(self, files: dict[str, str | None], message: str) -> str:
        sha = commit(self.work, files, message)
        self.server.update_repo("fleet", self.work)
        return sha


@dataclass
class AgentProcess:
    process: subprocess.Popen
    log: Path
    port: int
    identity: str

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def count(self, message: str) -> int:
        return self.text().count(f'msg="{message}"')

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""


@dataclass
class Sync:
    name: str
    kube: Kube
    kubeconfig: str
    fleet: Fleet
    deploy_key: Path
    known_hosts: Path
    agents: list[AgentProcess] = field(default_factory=list)

    def obj(self) -> syncobject.SyncObject:
        return syncobject.parse(syncobject.read(self.kube, NS, self.name))

    def ready(self) -> dict:
        return self.obj().condition(syncobject.READY)

    def applied(self, sha: str) -> bool:
        obj = self.obj()
        return obj.status.get("lastAppliedRevision") == sha \
            and obj.condition(syncobject.READY).get("status") == "True"

    def start_agent(self, identity: str = "", *extra: str) -> AgentProcess:
        port = free_port()
        identity = identity or f"agent-{len(self.agents)}"
        log = self.fleet.work.parent / f"{identity}.log"
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "sync_agent", "--sync", self.name,
                 "--kubeconfig", self.kubeconfig, "--interval", "2s",
                 "--listen", f"127.0.0.1:{port}", "--identity", identity,
                 "--lease-duration", "8s", "--renew-deadline", "5s", "--retry-period", "1s",
                 *extra], stdout=handle, stderr=handle, stdin=subprocess.DEVNULL)
        started = AgentProcess(process, log, port, identity)
        self.agents.append(started)
        return started

    def explain(self) -> str:
        logs = "\n".join(f"--- {a.identity} (exit {a.process.poll()}):\n{a.text()[-4000:]}"
                         for a in self.agents)
        try:
            status = json.dumps(self.obj().status, indent=1)
        except Exception as e:  # noqa: BLE001 (only for the failure message)
            status = f"(unreadable: {e})"
        return f"Sync status: {status}\n{logs}"

    def wait(self, check: Callable[[], object], what: str, timeout: float = DEADLINE):
        return wait_for(check, what, timeout, self.explain)

    def remove(self, secret: str) -> None:
        """Stop the agents started and delete what `agent install` and the syncs made: the
        Sync, its Lease and Deployment, the Secret named, the inventory."""
        for started in self.agents:
            if started.process.poll() is None:
                started.process.kill()
            started.process.wait(10)
        for rt, obj in ((syncobject.SYNC_RT, self.name), (LEASE_RT, f"agent-{self.name}"),
                        (agent.DEPLOYMENT_RT, f"agent-{self.name}"),
                        (conventions.SECRET_RT, secret)):
            self.kube.delete(rt, NS, obj)
        inventory.delete(self.kube, self.name)
        self.kube.close()


def configmap(api_client, namespace: str, name: str) -> dict | None:
    try:
        found = client.CoreV1Api(api_client).read_namespaced_config_map(name, namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return found.data or {}


@pytest.fixture
def git_server() -> Iterator[SshGitServer]:
    with SshGitServer() as server:
        yield server


@pytest.fixture
def fleet(git_server: SshGitServer, tmp_path: Path, namespace: str) -> Fleet:
    work = new_repo(tmp_path / "work")
    commit(work, {"app/settings.yaml": m.configmap("settings", color="blue"),
                  "app/extra.yaml": m.configmap("extra", added="yes"),
                  "app/more.yaml": m.configmap("more", n="1")}, "v1")
    return Fleet(work, git_server, git_server.create_repo("fleet", from_repo=work), namespace)


@pytest.fixture
def sync(local_cluster, fleet: Fleet, namespace: str, tmp_path: Path) -> Iterator[Sync]:
    """A Sync of `app/` into the test namespace, installed as `agent install` does (without
    starting an agent), with its deploy key in the Secret and authorized on the server."""
    kube = Kube.from_kubeconfig(local_cluster.kubeconfig)
    name = namespace[:52].strip("-")
    key = make_key_pair(tmp_path / "deploy-key", comment="agent-test")
    fleet.server.add_key(key.public)
    known_hosts = fleet.server.write_known_hosts(tmp_path / "known_hosts")
    dk.create_deploy_key(kube, dk.DeployKeyRequest(repo=fleet.url, name=name,
                                                   known_hosts_file=known_hosts,
                                                   private_key_file=key.private))
    request = agent.InstallRequest(sync=name, repo=fleet.url, branch="main", path="app",
                                   interval="2s", default_namespace=namespace, deploy_key=name)
    agent.install(agent.Target(kube, local_cluster.kubeconfig, None), request, start=False)
    handle = Sync(name, kube, local_cluster.kubeconfig, fleet, key.private, known_hosts)
    yield handle
    handle.remove(dk.secret_name(name))


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def head(fleet: Fleet) -> str:
    return subprocess.run(["git", "-C", str(fleet.work), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()


# --- following the branch --------------------------------------------------------------------

def test_pushed_commit_is_applied_by_the_running_agent(api_client, sync: Sync, namespace):
    v1 = head(sync.fleet)
    sync.start_agent()
    sync.wait(lambda: sync.applied(v1), "the first sync")
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    status = sync.obj().status
    assert status["counts"]["create"] == 3
    assert status["observedGeneration"] == sync.obj().generation
    assert "Applied revision main@sha1:" + v1 in sync.ready()["message"]

    v2 = sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="green")}, "v2")
    sync.wait(lambda: sync.applied(v2), "the pushed commit to be applied")
    assert configmap(api_client, namespace, "settings") == {"color": "green"}
    assert sync.obj().status["counts"]["update"] == 1


def test_hand_deleted_and_edited_objects_come_back(api_client, sync: Sync, namespace):
    sync.start_agent()
    sync.wait(lambda: sync.applied(head(sync.fleet)), "the first sync")
    core = client.CoreV1Api(api_client)
    core.delete_namespaced_config_map("extra", namespace)
    core.patch_namespaced_config_map("settings", namespace, {"data": {"color": "red"}})
    sync.wait(lambda: configmap(api_client, namespace, "extra") == {"added": "yes"},
              "the deleted ConfigMap to come back")
    sync.wait(lambda: configmap(api_client, namespace, "settings") == {"color": "blue"},
              "the hand edit to be reverted")


def test_commit_that_removes_an_object_prunes_it(api_client, sync: Sync, namespace):
    sync.start_agent()
    sync.wait(lambda: sync.applied(head(sync.fleet)), "the first sync")
    v2 = sync.fleet.push({"app/extra.yaml": None}, "drop extra")
    sync.wait(lambda: sync.applied(v2), "the removal to be applied")
    assert configmap(api_client, namespace, "extra") is None
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    assert sync.obj().status["counts"]["delete"] == 1


def test_bad_commit_changes_nothing_and_status_says_why(api_client, sync: Sync, namespace):
    sync.start_agent()
    v1 = head(sync.fleet)
    sync.wait(lambda: sync.applied(v1), "the first sync")
    bad = sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="green"),
                           "app/broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n"},
                          "broken")
    sync.wait(lambda: sync.ready().get("reason") == "ValidationFailed", "ValidationFailed")
    obj = sync.obj()
    assert obj.status["lastAppliedRevision"] == v1
    assert obj.status["lastAttemptedRevision"] == bad
    assert "broken.yaml" in obj.status["lastError"]
    assert obj.condition(syncobject.STALLED)["status"] == "True"
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}  # untouched
    fixed = sync.fleet.push({"app/broken.yaml": None}, "fix")
    sync.wait(lambda: sync.applied(fixed), "the fixed commit to be applied")
    assert sync.obj().condition(syncobject.STALLED)["status"] == "False"


LAUGHS = "".join(f"    {n}: &{n} [{','.join([f'*{p}'] * 10)}]\n"
                 for p, n in zip("abcdefgh", "bcdefghi", strict=True))
BOMB = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\n  annotations:\n"
        '    a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + LAUGHS)


def test_hostile_repository_leaves_the_agent_running_and_the_last_state(
        api_client, sync: Sync, namespace, tmp_path):
    """A billion laughs, a kustomization reading a key outside the repository and a remote
    base: the agent reports them in the Sync's status, keeps serving and applies nothing."""
    key = tmp_path / "operator-key"
    key.write_text("hostile-agent-secret\n")
    agent_process = sync.start_agent()
    v1 = head(sync.fleet)
    sync.wait(lambda: sync.applied(v1), "the first sync")
    bad = sync.fleet.push({
        "app/settings.yaml": m.configmap("settings", color="green"),
        "app/lol.yaml": BOMB,
        "app/steal/kustomization.yaml": f"secretGenerator:\n- name: s\n  files: [k={key}]\n",
        "app/remote/kustomization.yaml": "resources:\n- github.com/org/repo//base?ref=v1\n",
    }, "hostile")
    sync.wait(lambda: sync.obj().status.get("lastAttemptedRevision") == bad
              and sync.ready().get("reason") == "ValidationFailed", "ValidationFailed")
    obj = sync.obj()
    error = obj.status["lastError"]
    assert "app/lol.yaml" in error and "billion laughs" in error
    assert "app/steal/kustomization.yaml" in error and "outside the repository" in error
    assert "app/remote/kustomization.yaml" in error and "spec.allowRemoteBases" in error
    assert obj.status["lastAppliedRevision"] == v1
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    assert configmap(api_client, namespace, "lol") is None
    assert agent_process.process.poll() is None  # still running: no crash, no restart
    sync.wait(lambda: agent_process.get("/healthz")[0] == 200, "the agent to answer /healthz")
    assert "hostile-agent-secret" not in json.dumps(obj.status) + agent_process.text()
    fixed = sync.fleet.push({"app/lol.yaml": None, "app/steal/kustomization.yaml": None,
                             "app/remote/kustomization.yaml": None}, "fix")
    sync.wait(lambda: sync.applied(fixed), "the fixed commit to be applied")
    assert configmap(api_client, namespace, "settings") == {"color": "green"}
    assert agent_process.process.poll() is None


# --- pin, suspend, rollback ------------------------------------------------------------------

def agent_cli(sync: Sync, *args: str, code: int = 0):
    return cli.run("agent", *args, "--sync", sync.name, "--kubeconfig", sync.kubeconfig,
                   check_code=code)


def test_pinned_agent_ignores_new_commits_until_unpinned(api_client, sync: Sync, namespace):
    v1 = head(sync.fleet)
    started = sync.start_agent()
    sync.wait(lambda: sync.applied(v1), "the first sync")
    agent_cli(sync, "pin", "HEAD")
    assert sync.obj().spec.revision == v1  # resolved to the commit, not left as "HEAD"
    v2 = sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="green")}, "v2")
    before = started.count("sync applied")
    sync.wait(lambda: started.count("sync applied") >= before + 2, "two syncs after the push")
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    assert sync.obj().status["lastAppliedRevision"] == v1
    status = json.loads(agent_cli(sync, "status", "-o", "json").stdout)
    assert status["spec"]["revision"] == v1
    agent_cli(sync, "unpin")
    sync.wait(lambda: sync.applied(v2), "the branch head after unpin")
    assert configmap(api_client, namespace, "settings") == {"color": "green"}


def test_suspended_agent_applies_nothing_until_resumed(api_client, sync: Sync, namespace):
    sync.start_agent()
    sync.wait(lambda: sync.applied(head(sync.fleet)), "the first sync")
    agent_cli(sync, "suspend")
    sync.wait(lambda: sync.obj().condition(syncobject.RECONCILING).get("reason") == "Suspended",
              "the agent to notice the suspension")
    client.CoreV1Api(api_client).delete_namespaced_config_map("extra", namespace)
    v2 = sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="green")}, "v2")
    time.sleep(5)  # two intervals in which a running agent would have acted
    assert configmap(api_client, namespace, "extra") is None
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    agent_cli(sync, "resume")
    sync.wait(lambda: sync.applied(v2), "the head after resume")
    assert configmap(api_client, namespace, "extra") == {"added": "yes"}


def rollback(sync: Sync, namespace: str, *args: str) -> dict:
    result = cli.run("rollback", "--repo", sync.fleet.url, "--path", "app", "--sync", sync.name,
                     "-n", namespace, "--kubeconfig", sync.kubeconfig,
                     "--ssh-key", str(sync.deploy_key), "--known-hosts", str(sync.known_hosts),
                     *args, "--output", "json", check_code=0)
    return json.loads(result.stdout)


def test_rollback_pins_the_agent_so_it_does_not_roll_forward(api_client, sync: Sync,
                                                             namespace):
    v1 = head(sync.fleet)
    v2 = sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="green")}, "v2")
    started = sync.start_agent()
    sync.wait(lambda: sync.applied(v2), "the head")
    report = rollback(sync, namespace, "--to", "HEAD~1")
    assert report["sha"] == v1 and report["agent"]["pinned"] == v1
    before = started.count("sync applied")
    sync.wait(lambda: started.count("sync applied") >= before + 2, "two syncs after rollback")
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    assert sync.obj().status["lastAppliedRevision"] == v1
    agent_cli(sync, "resume")
    sync.wait(lambda: sync.applied(v2), "the head after resume")


def test_rollback_to_a_bad_revision_changes_nothing_and_leaves_the_agent_unpinned(
        api_client, sync: Sync, namespace):
    sync.fleet.push({"app/broken.yaml": "kind: ConfigMap\nmetadata: [\n"}, "broken")
    v3 = sync.fleet.push({"app/broken.yaml": None}, "fixed")
    sync.start_agent()
    sync.wait(lambda: sync.applied(v3), "the head")
    result = cli.run("rollback", "--repo", sync.fleet.url, "--path", "app", "--sync", sync.name,
                     "-n", namespace, "--kubeconfig", sync.kubeconfig, "--to", "HEAD~1",
                     "--ssh-key", str(sync.deploy_key), "--known-hosts", str(sync.known_hosts),
                     check_code=2)
    assert "broken.yaml" in result.stderr
    assert sync.obj().spec.revision == ""  # the pin was put back: the agent follows main
    assert sync.obj().status["lastAppliedRevision"] == v3


def test_rollback_with_a_bad_option_refuses_before_pinning_the_agent(sync: Sync, namespace):
    """Options are parsed before the hand-over: a bad one used to be found only after the
    agent was pinned, and the pin stayed."""
    result = cli.run("rollback", "--repo", sync.fleet.url, "--path", "app", "--name", sync.name,
                     "-n", namespace, "--kubeconfig", sync.kubeconfig, "--to", "HEAD",
                     "--ssh-key", str(sync.deploy_key), "--known-hosts", str(sync.known_hosts),
                     "--helm", "sometimes", check_code=2)
    assert "--helm 'sometimes': use one of auto, render, controller" in result.stderr
    assert sync.obj().spec.revision == ""


def test_rollback_revert_pushes_a_revert_commit_the_agent_follows(api_client, sync: Sync,
                                                                  namespace, tmp_path):
    v2 = sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="green"),
                          "README.md": "outside the path: not reverted\n"}, "v2")
    sync.start_agent()
    sync.wait(lambda: sync.applied(v2), "the head")
    push_key = make_key_pair(tmp_path / "push-key", comment="writer")
    sync.fleet.server.add_key(push_key.public)
    report = rollback(sync, namespace, "--to", "HEAD~1", "--revert",
                      "--push-key", str(push_key.private))
    revert = report["agent"]["revert"]
    assert report["agent"]["pinned"] is None and len(revert["reverted"]) == 1
    bare = sync.fleet.server.repo_path("fleet")
    log = subprocess.run(["git", "--git-dir", str(bare), "log", "-1", "--format=%H %s", "main"],
                         capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert log[0] == revert["commit"] == report["sha"] and log[1].startswith("Revert app")
    shown = subprocess.run(["git", "--git-dir", str(bare), "show", "main:README.md"],
                           capture_output=True, text=True).stdout
    assert "not reverted" in shown  # only --path went back
    sync.wait(lambda: sync.applied(revert["commit"]), "the agent to follow the revert")
    assert sync.obj().spec.revision == ""
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}


# --- failures: Git unreachable, host key changed --------------------------------------------

def events_of(sync: Sync, reason: str) -> list[dict]:
    found = sync.kube.list(conventions.EVENT_RT, NS)
    return [e for e in found if e["involvedObject"].get("name") == sync.name
            and e.get("reason") == reason]


def test_stopped_git_server_leaves_objects_and_status_says_why(api_client, sync: Sync,
                                                               namespace):
    sync.start_agent()
    v1 = head(sync.fleet)
    sync.wait(lambda: sync.applied(v1), "the first sync")
    sync.fleet.server.stop()
    ready = sync.wait(lambda: (r := sync.ready()).get("status") == "False" and r,
                      "Ready=False")
    assert ready["reason"] == "GitOperationFailed"
    assert "cannot fetch" in ready["message"] and "Connection refused" in ready["message"]
    assert sync.obj().status["lastAppliedRevision"] == v1
    assert {n: configmap(api_client, namespace, n) for n in ("settings", "extra", "more")} == {
        "settings": {"color": "blue"}, "extra": {"added": "yes"}, "more": {"n": "1"}}
    sync.wait(lambda: events_of(sync, "GitOperationFailed"), "a Warning Event")
    assert events_of(sync, "GitOperationFailed")[0]["type"] == "Warning"
    sync.fleet.server.start()  # retried with backoff: recovers by itself
    sync.wait(lambda: sync.ready().get("status") == "True", "recovery once Git is back")


def test_changed_host_key_is_refused_and_nothing_changes(api_client, sync: Sync, namespace):
    started = sync.start_agent()
    v1 = head(sync.fleet)
    sync.wait(lambda: sync.applied(v1), "the first sync")
    sync.fleet.server.rotate_host_key()
    sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="evil")}, "v2")
    ready = sync.wait(lambda: (r := sync.ready()).get("status") == "False" and r,
                      "Ready=False")
    assert ready["reason"] == "HostKeyVerificationFailed"
    assert "host key" in ready["message"].lower()
    failed = started.count("sync failed")
    sync.wait(lambda: started.count("sync failed") >= failed + 2, "two more attempts")
    assert sync.ready()["reason"] == "HostKeyVerificationFailed"
    assert configmap(api_client, namespace, "settings") == {"color": "blue"}
    assert sync.obj().status["lastAppliedRevision"] == v1


# --- the daemon: metrics, SIGTERM, leader election -------------------------------------------

def test_metrics_and_probes_report_the_last_sync(sync: Sync):
    before = time.time()
    started = sync.start_agent()
    v1 = head(sync.fleet)
    sync.wait(lambda: sync.applied(v1), "the first sync")
    status, text = sync.wait(lambda: (r := started.get("/metrics")) and
                             metric(r[1], "gitops_restore_last_sync_timestamp_seconds",
                                    sync=sync.name) and r, "the metrics of the first sync")
    assert status == 200
    synced_at = metric(text, "gitops_restore_last_sync_timestamp_seconds", sync=sync.name)
    assert before <= synced_at <= time.time()  # the Unix time of this agent's sync
    assert metric(text, "gitops_restore_revision_info", sync=sync.name, revision=v1) == 1
    assert metric(text, "gitops_restore_objects_total", sync=sync.name, action="create") == 3
    assert metric(text, "gitops_restore_sync_duration_seconds_count", sync=sync.name) >= 1
    assert metric(text, "gitops_restore_leader", sync=sync.name) == 1
    assert started.get("/healthz")[0] == 200
    code, body = started.get("/readyz")
    assert code == 200 and "leader" in body
    sync.fleet.server.stop()
    sync.wait(lambda: metric(started.get("/metrics")[1], "gitops_restore_sync_errors_total",
                             sync=sync.name, reason="GitOperationFailed"),
              "the error counter")


def test_sigterm_finishes_cleanly_and_releases_the_lease(sync: Sync):
    started = sync.start_agent("leader-to-stop")
    sync.wait(lambda: sync.applied(head(sync.fleet)), "the first sync")
    assert agent_lease_holder(sync) == "leader-to-stop"
    started.process.send_signal(signal.SIGTERM)
    assert started.process.wait(30) == 0, started.text()
    assert agent_lease_holder(sync) == ""
    assert 'msg="agent stopped"' in started.text()
    assert "identity" in started.text() and "BEGIN OPENSSH" not in started.text()


def test_sigterm_during_a_sync_stops_safely_and_a_restart_converges(api_client, sync: Sync,
                                                                     namespace):
    many = {f"app/many-{i}.yaml": m.configmap(f"many-{i}", n=str(i)) for i in range(150)}
    v2 = sync.fleet.push(many, "150 more")
    started = sync.start_agent("interrupted")
    sync.wait(lambda: started.count("sync started") >= 1, "a sync to start")
    started.process.send_signal(signal.SIGTERM)
    assert started.process.wait(60) == 0, started.text()
    assert agent_lease_holder(sync) == ""
    # Finished, or abandoned before its first write: never half-recorded.
    assert started.count("sync applied") + started.count("sync abandoned") == 1
    sync.start_agent("restarted")
    sync.wait(lambda: sync.applied(v2), "the restarted agent to converge")
    assert configmap(api_client, namespace, "many-149") == {"n": "149"}


def agent_lease_holder(sync: Sync) -> str:
    lease = sync.kube.get(LEASE_RT, NS, f"agent-{sync.name}") or {}
    return (lease.get("spec") or {}).get("holderIdentity") or ""


def test_two_agents_only_the_leader_applies_and_the_other_takes_over(api_client, sync: Sync,
                                                                     namespace):
    first = sync.start_agent("first")
    second = sync.start_agent("second")
    sync.wait(lambda: sync.applied(head(sync.fleet)), "the first sync")
    leader_name = sync.wait(agent_lease_holder_of(sync), "a lease holder")
    leader, standby = (first, second) if leader_name == "first" else (second, first)
    sync.wait(lambda: leader.count("sync applied") >= 3, "more syncs by the leader")
    assert standby.count("sync started") == 0
    assert standby.get("/readyz")[0] == 200 and "standby" in standby.get("/readyz")[1]

    leader.process.kill()  # no release: the standby must wait for the lease to expire
    leader.process.wait(10)
    v2 = sync.fleet.push({"app/settings.yaml": m.configmap("settings", color="green")}, "v2")
    sync.wait(lambda: sync.applied(v2), "the standby to take over and apply")
    assert agent_lease_holder(sync) == standby.identity
    assert standby.count("sync applied") >= 1 and 'msg="became leader"' in standby.text()
    assert configmap(api_client, namespace, "settings") == {"color": "green"}


def agent_lease_holder_of(sync: Sync) -> Callable[[], str]:
    return lambda: agent_lease_holder(sync)


def test_the_agent_never_imports_bootstrap():
    """Dependencies point bootstrap -> sync_agent: the daemon runs without the CLI's code."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sync_agent.__main__, sync_agent.agent.main; "
         "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bootstrap', 'typer')))"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
