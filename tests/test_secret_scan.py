"""Secrets stay secret: one known token, one known SSH key and one known Secret value go through
every command, and then nothing the tool wrote or showed may hold any of them.

The repository (a ConfigMap and a Secret under app/) is served by a real HTTPS Git server
(git http-backend, basic auth with the known token; tests/httpsgit.py) and a real SSH Git
server (sshd, the known key authorized; tests/sshgit.py). Into the real local cluster, run as a
user runs them:

  restore, plan, verify (the Secret edited by hand, so it shows as drift), history  -- HTTPS,
      the token in the URL and in GITOPS_RESTORE_GIT_PASSWORD;
  agent install (HTTPS, token in the URL) and its agent; rollback (pins the agent) and
      rollback --revert (pushes over HTTPS with the token);
  bootstrap (SSH, the known key as --private-key-file) and its agent;
  drill (HTTPS, on the same cluster) with its JUnit, JSON and Markdown reports.

A second Secret under app/ is SOPS-encrypted (real sops, a fresh age key): every command gets
the key (SOPS_AGE_KEY_FILE; agent install and bootstrap --sops-age-key, so the agents decrypt
too), and its plain value and the age key are searched for like the rest.

Then `Scan` searches, and names as it goes, every place one could surface: stdout and stderr of
each command, the drill reports, each agent's log file and metrics page, every Event, the Sync
objects (spec and status), the inventory ConfigMaps and Leases, every file in the clone cache
(mirrors' config, FETCH_HEAD, packed refs ...), and the command line of every git and ssh that
ran (what `ps` shows). The secrets are searched as written, base64-encoded and, for the token,
inside an HTTP basic-auth value.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client

from bootstrap import clusters
from sync_agent import conventions, git_https, inventory, paths, sops
from sync_agent.agent import localproc, syncobject
from sync_agent.conventions import EVENT_RT, LEASE_RT
from sync_agent.kube import Kube, ResourceType
from tests import cli
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.httpsgit import HttpsGitServer
from tests.sopsfiles import AgeKey, age_key, encrypt
from tests.sshgit import SshGitServer, make_key_pair
from tests.testdata.gitrepos import commit, git, new_repo

NS = conventions.NAMESPACE
TOKEN = f"tok-scan-{secrets.token_hex(12)}"
SECRET_VALUE = f"secret-value-{secrets.token_hex(12)}"
EDITED_VALUE = f"hand-edited-{secrets.token_hex(12)}"
SOPS_VALUE = f"sops-value-{secrets.token_hex(12)}"
CONFIGMAP_RT = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)


# -- the search ---------------------------------------------------------------------------------

@dataclass
class Scan:
    """Looks for each secret, in each of its spellings, in everything it is shown; records
    what it searched (so the test can say where it looked) and what it found."""

    spellings: dict[str, list[str]]  # what the secret is -> the strings it may appear as
    searched: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def look(self, where: str, content: str | bytes) -> None:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        self.searched.append(where)
        for secret, forms in self.spellings.items():
            for form in forms:
                if form in text:
                    self.found.append(f"{secret} ({form[:12]}…) in {where}")

    def command(self, label: str, result) -> None:
        self.look(f"{label}: stdout", result.stdout)
        self.look(f"{label}: stderr", result.stderr)

    def files(self, label: str, root: Path) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.look(f"{label}: {path.relative_to(root)}", path.read_bytes())

    def objects(self, label: str, items: list[dict]) -> None:
        for item in items:
            meta = item.get("metadata", {})
            self.look(f"{label} {meta.get('namespace', '')}/{meta.get('name')}",
                      json.dumps(item))

    def places(self, kind: str) -> list[str]:
        return [w for w in self.searched if w.startswith(kind)]


def spellings(key_text: str, age_secret: str) -> dict[str, list[str]]:
    body = [line for line in key_text.splitlines() if line and not line.startswith("-----")]
    basic = base64.b64encode(f"deploy:{TOKEN}".encode()).decode()
    return {
        "the token": [TOKEN, base64.b64encode(TOKEN.encode()).decode()[:24], basic],
        "the SSH private key": [*body, base64.b64encode(key_text.encode()).decode()[:40]],
        "the Secret's value": [SECRET_VALUE, base64.b64encode(SECRET_VALUE.encode()).decode(),
                               EDITED_VALUE, base64.b64encode(EDITED_VALUE.encode()).decode()],
        "the SOPS-encrypted value": [SOPS_VALUE, base64.b64encode(SOPS_VALUE.encode()).decode()],
        "the age key": [age_secret],
    }


# -- the world ------------------------------------------------------------------------------------

@pytest.fixture
def clone_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private clone cache for the commands and the agents they start; bootstrap still finds
    the control-plane binaries (they live in the same cache root)."""
    root = tmp_path / "cache"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / paths.K8S_VERSION).symlink_to(paths.k8s_bin_dir())
    monkeypatch.setenv("GITOPS_RESTORE_CACHE", str(root))
    return root / "repos"


@dataclass
class World:
    kube: Kube
    kubeconfig: str
    https: HttpsGitServer
    ssh: SshGitServer
    age: AgeKey  # decrypts app/sops-secret.yaml
    work: Path
    namespaces: dict[str, str]  # what for -> namespace
    syncs: list[str] = field(default_factory=list)

    def url(self, token: bool = True) -> str:
        return self.https.url("fleet", password=TOKEN if token else None)

    def push(self, files: dict[str, str], message: str) -> str:
        sha = commit(self.work, files, message)
        self.https.update_repo("fleet", self.work)
        return sha

    def sync_object(self, name: str) -> dict:
        return syncobject.read(self.kube, NS, name) or {}

    def wait_applied(self, name: str, sha: str, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.sync_object(name).get("status") or {}
            ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
            if status.get("lastAppliedRevision") == sha and ready \
                    and ready[0].get("status") == "True":
                return
            time.sleep(0.5)
        pytest.fail(f"{what}: Sync {name} did not apply {sha[:12]}; status "
                    f"{json.dumps(self.sync_object(name).get('status'))}", pytrace=False)


@pytest.fixture
def world(local_cluster, api_client, tmp_path: Path, clone_cache: Path,
          command_lines: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    core = client.CoreV1Api(api_client)
    suffix = secrets.token_hex(3)
    namespaces = {use: f"scan-{use}-{suffix}" for use in ("https", "ssh", "drill")}
    for name in namespaces.values():
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    work = new_repo(tmp_path / "work")
    age = age_key(tmp_path)
    monkeypatch.setenv(sops.KEY_FILE_ENV, str(age.file))
    sops_secret = encrypt(secret_manifest(SOPS_VALUE, "sops-credentials"), age.recipient,
                          tmp_path, "yaml", "--encrypted-regex", "^(data|stringData)$")
    commit(work, {"app/settings.yaml": m.configmap("settings", color="blue"),
                  "app/secret.yaml": secret_manifest(SECRET_VALUE),
                  "app/sops-secret.yaml": sops_secret}, "v1")
    kube = Kube.from_kubeconfig(local_cluster.kubeconfig)
    with HttpsGitServer(username="deploy", token=TOKEN) as https, SshGitServer() as ssh:
        https.create_repo("fleet", from_repo=work)
        handle = World(kube, local_cluster.kubeconfig, https, ssh, age, work, namespaces)
        try:
            yield handle
        finally:
            _clean_up(handle, core)


def _clean_up(world: World, core: client.CoreV1Api) -> None:
    directory = clusters.cluster_dir(SESSION_CLUSTER)
    for sync in world.syncs:
        localproc.stop(directory, sync)
        for rt, name in ((syncobject.SYNC_RT, sync), (LEASE_RT, f"agent-{sync}")):
            world.kube.delete(rt, NS, name)
        inventory.delete(world.kube, sync)
    for secret in core.list_namespaced_secret(NS).items:
        if secret.metadata.name.startswith(tuple(world.syncs)):
            core.delete_namespaced_secret(secret.metadata.name, NS)
    for name in world.namespaces.values():
        core.delete_namespace(name, propagation_policy="Background")
    world.kube.close()


def secret_manifest(value: str, name: str = "app-credentials") -> str:
    return (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\n"
            f"stringData:\n  password: {value}\n")


def metrics_of(sync: str) -> str | None:
    """The agent's /metrics page; None if its process is not running."""
    agent = localproc.running(clusters.cluster_dir(SESSION_CLUSTER), sync)
    if agent is None:
        return None
    with urllib.request.urlopen(f"http://{agent.listen}/metrics", timeout=10) as response:
        return response.read().decode()


def run(scan: Scan, label: str, *args: str, code: int | tuple[int, ...] = 0,
        env: dict[str, str] | None = None) -> dict | None:
    result = cli.run(*args, env=env, timeout=600)
    codes = code if isinstance(code, tuple) else (code,)
    assert result.returncode in codes, (f"{label}: exit {result.returncode}\nstdout:\n"
                                        f"{result.stdout}\nstderr:\n{result.stderr}")
    scan.command(label, result)
    return json.loads(result.stdout) if "--output" in args and result.stdout.strip() else None


# -- the test -------------------------------------------------------------------------------------

def test_no_token_key_or_secret_value_appears_in_any_output_record_or_cache(
        world: World, api_client, clone_cache: Path, command_lines: Path,
        tmp_path: Path) -> None:
    key = make_key_pair(tmp_path / "deploy-key", comment="scan")
    age_secret = next(line for line in world.age.file.read_text().splitlines()
                      if line.startswith("AGE-SECRET-KEY-"))
    scan = Scan(spellings(key.private_text, age_secret))
    with_age = ("--sops-age-key", str(world.age.file))  # the commands without SOPS_AGE_KEY_FILE
    cluster = ("--kubeconfig", world.kubeconfig)
    https_ns, ssh_ns, drill_ns = (world.namespaces[u] for u in ("https", "ssh", "drill"))
    ca = ("--ca-file", str(world.https.ca_file))
    sync = f"scan-https-{https_ns[-6:]}"
    world.syncs.append(sync)
    source = ("--repo", world.url(), "--path", "app", "--sync", sync, "--namespace", https_ns,
              *ca, *cluster)
    env_token = {git_https.USERNAME_ENV: "deploy", git_https.PASSWORD_ENV: TOKEN}
    v1 = git(world.work, "rev-parse", "HEAD")

    # restore, plan and verify of a hand-edited Secret, history -- over HTTPS
    run(scan, "restore -o json", "restore", *source, "--output", "json")
    run(scan, "restore (text)", "restore", *source)
    secret = client.CoreV1Api(api_client).read_namespaced_secret("app-credentials", https_ns)
    assert base64.b64decode(secret.data["password"]).decode() == SECRET_VALUE  # really applied
    decrypted = client.CoreV1Api(api_client).read_namespaced_secret("sops-credentials", https_ns)
    assert base64.b64decode(decrypted.data["password"]).decode() == SOPS_VALUE
    client.CoreV1Api(api_client).patch_namespaced_secret(
        "app-credentials", https_ns, {"stringData": {"password": EDITED_VALUE}})
    # Whether the hand edit counts as a difference (exit 3) is verify's business, not this
    # test's: here the edited value is live, and must not be shown either way.
    run(scan, "plan -o json", "plan", *source, "--output", "json", code=(0, 3))
    run(scan, "verify -o json", "verify", *source, "--output", "json", code=(0, 3))
    run(scan, "verify (text)", "verify", *source, code=(0, 3))
    clean = ("--repo", world.url(token=False), "--path", "app", *ca)
    run(scan, "history -o json (token from the environment)", "history", *clean,
        "--output", "json", env=env_token)

    # the agent over HTTPS; rollback pins it, rollback --revert pushes with the token
    v2 = world.push({"app/settings.yaml": m.configmap("settings", color="green")}, "v2")
    run(scan, "agent install (https)", "agent", "install", "--repo", world.url(), "--path",
        "app", "--sync", sync, "--namespace", https_ns, "--interval", "2s", *ca, *with_age,
        *cluster)
    world.wait_applied(sync, v2, "the HTTPS agent")
    run(scan, "rollback -o json", "rollback", *source, "--to", v1, "--output", "json")
    world.wait_applied(sync, v1, "the pinned HTTPS agent")
    run(scan, "rollback --revert", "rollback", *source, "--to", v1, "--revert")
    bare = world.https.repo_path("fleet")
    reverted = git(bare, "rev-parse", "refs/heads/main")
    # The revert commit was pushed over HTTPS: on top of v2, with app/ as it was at v1.
    assert git(bare, "rev-parse", f"{reverted}^") == v2
    assert git(bare, "rev-parse", f"{reverted}:app") == git(bare, "rev-parse", f"{v1}:app")
    world.wait_applied(sync, reverted, "the HTTPS agent following the revert")
    run(scan, "agent status -o json", "agent", "status", "--sync", sync, "--output", "json",
        *cluster)

    # bootstrap over SSH with the known key, and its agent
    world.ssh.add_key(key.public)
    ssh_url = world.ssh.create_repo(f"scan-{secrets.token_hex(3)}", from_repo=world.work)
    known_hosts = world.ssh.write_known_hosts(tmp_path / "known_hosts")
    ssh_sync = f"scan-ssh-{ssh_ns[-6:]}"
    world.syncs.append(ssh_sync)
    run(scan, "bootstrap -o json", "bootstrap", "--provider", "local", "--cluster",
        SESSION_CLUSTER, "--nodes", "3", "--repo", ssh_url, "--path", "app", "--sync",
        ssh_sync, "--namespace", ssh_ns, "--interval", "2s", "--private-key-file", str(key.private),
        "--known-hosts", str(known_hosts), "--yes", "--timeout", "3m", *with_age,
        "--output", "json")
    world.syncs.append(ssh_url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))  # its key
    world.wait_applied(ssh_sync, git(world.work, "rev-parse", "HEAD"), "the SSH agent")

    # drill over HTTPS on the same cluster, with every report
    reports = tmp_path / "reports"
    reports.mkdir()
    drill_sync = f"scan-drill-{drill_ns[-6:]}"
    world.syncs.append(drill_sync)
    run(scan, "drill", "drill", "--repo", world.url(), "--path", "app", "--from", v2, "--to", v1,
        "--provider", "existing", "--kubeconfig", world.kubeconfig, "--sync", drill_sync,
        "--namespace", drill_ns, *ca, "--junit", str(reports / "drill.xml"),
        "--report", str(reports / "drill.json"), "--summary", str(reports / "drill.md"))
    scan.files("drill report", reports)

    # everything the tool left behind
    stopped = []
    for name in (sync, ssh_sync):
        log = localproc.logfile(clusters.cluster_dir(SESSION_CLUSTER), name).read_text()
        scan.look(f"agent log of {name}", log)
        metrics = metrics_of(name)
        if metrics is None:
            stopped.append(f"the agent of {name} is not running; its log ends:\n{log[-3000:]}")
        else:
            scan.look(f"metrics page of {name}", metrics)
    scan.objects("Sync", world.kube.list(syncobject.SYNC_RT, NS))
    scan.objects("Event", [e for ns in (NS, *world.namespaces.values())
                           for e in world.kube.list(EVENT_RT, ns)])
    scan.objects("inventory ConfigMap", world.kube.list(CONFIGMAP_RT, NS))
    scan.objects("Lease", world.kube.list(LEASE_RT, NS))
    scan.files("clone cache", clone_cache)
    scan.look("git and ssh command lines (ps)", command_lines.read_text())

    assert scan.found == [], "\n".join(scan.found)
    assert stopped == [], "\n".join(stopped)
    # The scan looked where it says, and the secrets were really used along the way.
    for kind, least in (("restore", 2), ("plan", 1), ("verify", 2), ("rollback", 2),
                        ("bootstrap", 2), ("drill", 2), ("drill report", 3), ("agent log", 2),
                        ("metrics page", 2), ("Sync", 2), ("Event", 1),
                        ("inventory ConfigMap", 2), ("clone cache", 2), ("git and ssh", 1)):
        assert len(scan.places(kind)) >= least, f"searched too few {kind}: {scan.searched}"
    assert any(w.endswith("/config") for w in scan.places("clone cache"))
    assert ("POST", "deploy", 200) in {(a.method, a.user, a.status)
                                       for a in world.https.accesses}
    assert " push " in command_lines.read_text()
    assert "Accepted publickey for git" in world.ssh.log_text()

