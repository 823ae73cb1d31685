"""The API server stopping mid-restore: the run fails (exit 1, not "bad input") within a
bounded time with a sentence that says what happened, nothing is lost, and the re-run after
the server is back converges with `verify` clean.

The real kube-apiserver process of a local cluster of this test's own is stopped as
`kwokctl stop` stops it (SIGKILL: a graceful SIGTERM lets it drain for a minute or more) and
started again with `kwokctl start cluster`, which starts only what is not running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bootstrap import clusters
from sync_agent import inventory, paths
from sync_agent.kube import Kube, ResourceType
from tests import cli
from tests import manifests as m
from tests.test_bootstrap import pid_alive
from tests.testdata.gitrepos import commit, new_repo

CLUSTER = "apiserver-outage"
NAMESPACE = "outage"
OBJECTS = 1500
CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)


@pytest.fixture
def own_cluster(state_root, tmp_path, monkeypatch):
    """A local cluster only this test uses (its API server is stopped), in a state root of
    its own, removed afterwards whatever happened."""
    monkeypatch.setenv("GITOPS_RESTORE_STATE", str(tmp_path / "outage-state"))
    cli.run("provision", "--provider", "local", "--name", CLUSTER, check_code=0)
    yield clusters.load(CLUSTER)
    start_api_server()  # destroy asks the API server which volumes to delete
    cli.run("destroy", "--cluster", CLUSTER)


def kwok_env() -> dict[str, str]:
    return {**os.environ, "KWOK_WORKDIR": str(paths.state_root() / "kwok")}


class PortHolder:
    """The stopped API server's port, kept from other clusters on this shared machine (their
    kwokctl takes any free port, and once did take this one): every connection is closed at
    once, as nothing is behind it."""

    def __init__(self, port: int):
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # over TIME_WAIT
        # Taken the moment the dying server lets go of it, before anyone else can.
        deadline = time.monotonic() + 30
        while True:
            try:
                self._socket.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    holders = subprocess.run(["ss", "-ltnp", f"sport = :{port}"],
                                             capture_output=True, text=True).stdout
                    pytest.fail(f"port {port} stayed taken:\n{holders}", pytrace=False)
                time.sleep(0.001)
        self._socket.listen(64)
        threading.Thread(target=self._refuse, daemon=True).start()

    def _refuse(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            connection.close()

    def close(self) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()


HELD: list[PortHolder] = []


def stop_api_server(host: str) -> None:
    pidfile = paths.state_root() / "kwok" / "clusters" / CLUSTER / "pids" / "kube-apiserver.pid"
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    HELD.append(PortHolder(urlsplit(host).port))
    deadline = time.monotonic() + 60
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid), "kube-apiserver did not stop"


def start_api_server() -> None:
    while HELD:
        HELD.pop().close()
    subprocess.run([str(paths.k8s_bin_dir() / "kwokctl"), "start", "cluster", "--name", CLUSTER,
                    "--wait", "2m"], env=kwok_env(), check=True, capture_output=True,
                   timeout=300)


def restore(repo: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [cli.COMMAND, "restore", "--repo", str(repo), "--cluster", CLUSTER, "--sync", "outage",
         "-n", NAMESPACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL, start_new_session=True)


def finished(process: subprocess.Popen) -> tuple[int, str]:
    """Its exit code and stderr; a run that does not end by itself fails the test."""
    try:
        _, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("the restore did not end after the API server stopped", pytrace=False)
    return process.returncode, err


def assert_says_the_server_went_away(code: int, err: str, host: str) -> None:
    assert code == 1, err  # a failure, not bad input (2)
    assert f"API server {host}: no answer" in err, err
    assert "re-run once the API server answers again" in err, err
    assert "dry-run" not in err and "Traceback" not in err, err


def test_api_server_stopping_mid_restore_fails_the_run_and_the_rerun_converges(
        own_cluster, tmp_path):
    repo = new_repo(tmp_path / "many")
    files = {f"cm/{i // 100:02d}.yaml": "---\n".join(m.configmap(f"cm-{j:04d}", i=str(j))
                                                     for j in range(i, i + 100))
             for i in range(0, OBJECTS, 100)}
    files["ns.yaml"] = f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
    commit(repo, files, f"{OBJECTS} ConfigMaps and their Namespace")
    kube = Kube.from_kubeconfig(own_cluster.kubeconfig)
    host = kube.host

    # 1. While it validates (server-side dry-runs, before any write): stopped when the render
    # phase ends. Before, every refused dry-run was reported as an invalid object (exit 2).
    # (Its `validate:` timing line is printed when the phase ends, failed or not.)
    process = restore(repo, "--workers", "1")
    lines: list[str] = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith("render:"):
            stop_api_server(host)
            break
    code, err = finished(process)
    err = "".join(lines) + err
    assert "apply:" not in err, "the server stopped only after validation"
    assert_says_the_server_went_away(code, err, host)
    start_api_server()
    assert kube.list(CONFIGMAPS, NAMESPACE) == []  # stopped before the first write

    # 2. While it applies.
    process = restore(repo, "--workers", "2")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if len(kube.list(CONFIGMAPS, NAMESPACE, metadata_only=True)) >= 50:
                break
        except Exception:  # noqa: BLE001 (the namespace may not exist yet)
            pass
        time.sleep(0.05)
    stop_api_server(host)
    code, err = finished(process)
    assert_says_the_server_went_away(code, err, host)

    start_api_server()
    kube = Kube.from_kubeconfig(own_cluster.kubeconfig)
    made = {c["metadata"]["name"] for c in kube.list(CONFIGMAPS, NAMESPACE, metadata_only=True)}
    made.discard("kube-root-ca.crt")
    assert 50 <= len(made) < OBJECTS, "the restore was not stopped mid-apply"
    pending = inventory.load(kube, "outage")
    assert pending is not None and not pending.complete
    assert {e.ref.name for e in pending.entries} >= made  # nothing it made is lost to prune

    again = cli.run_json("restore", "--repo", str(repo), "--cluster", CLUSTER, "--sync",
                         "outage", "-n", NAMESPACE, check_code=0)
    assert again["counts"]["create"] + again["counts"]["unchanged"] == OBJECTS + 1
    assert inventory.load(kube, "outage").complete
    cli.run("verify", "--repo", str(repo), "--cluster", CLUSTER, "--sync", "outage",
            "-n", NAMESPACE, check_code=0)
    kube.close()
