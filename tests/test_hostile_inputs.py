"""Every entry of tests/hostile_inputs.yaml, run through the real CLI against the real cluster.

The catalogue is the specification: a test per entry, parametrized from the file, so the list
and the tests cannot disagree. Each test commits the entry's files to a fresh repository next
to an operator "secret" kept outside it, runs the command, and checks the exit code, every
text the entry says the user gets, that the secret never shows, and (for refusals) that the
cluster is exactly as before: same objects, same inventory, no object holding the secret.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from sync_agent import conventions, inventory
from tests import cli
from tests.conftest import SESSION_CLUSTER
from tests.test_restore import names_in
from tests.testdata.gitrepos import commit, new_repo

CATALOGUE = Path(__file__).with_name("hostile_inputs.yaml")
SECRET = "hostile-input-test-secret-4f1c9a"
UP = "../" * 11 + ".."  # from any directory of an exported tree up to /

# Inputs too large or too regular to write out in the catalogue.
GENERATED = {
    "deep1500": "[" * 1500 + "]" * 1500,
    "deep600": "[" * 600 + "]" * 600,
    "deepjson": "[" * 100_000 + "]" * 100_000,
}
LATIN1 = "{latin1}"


def load(places: dict[str, str]) -> list[dict[str, Any]]:
    """The catalogue with its placeholders filled in (see its header)."""
    text = CATALOGUE.read_text(encoding="utf-8")
    for key, value in {**places, **GENERATED, "up": UP}.items():
        text = text.replace("{" + key + "}", value)
    return yaml.safe_load(text)


SOPS_KEY = Path(__file__).with_name("testdata") / "sops" / "test.agekey"
ENTRIES = load({"secret": "/secret", "outside": "/outside", "outside_repo": "/outside-repo",
                "sops_key": str(SOPS_KEY)})


# Entries that need a cluster state no repository can make are run by the test they name.
RUN_HERE = [entry for entry in ENTRIES if "tested_by" not in entry]
RUN_ELSEWHERE = [entry for entry in ENTRIES if "tested_by" in entry]


def test_the_catalogue_is_complete():
    """At least 25 entries, each with the fields a test needs, ids unique."""
    ids = [entry["id"] for entry in ENTRIES]
    assert len(ids) >= 25 and len(set(ids)) == len(ids)
    for entry in RUN_HERE:
        assert {"id", "input", "files", "exit", "says"} <= set(entry), entry["id"]
        assert entry["says"], entry["id"]


@pytest.mark.parametrize("entry_id", [entry["id"] for entry in RUN_ELSEWHERE])
def test_entries_run_elsewhere_name_a_test_that_exists(entry_id: str) -> None:
    entry = {e["id"]: e for e in RUN_ELSEWHERE}[entry_id]
    module, function = entry["tested_by"].split("::")
    source = (Path(__file__).parents[1] / module).read_text(encoding="utf-8")
    assert f"def {function}(" in source, entry["tested_by"]
    assert {"input", "exit", "says"} <= set(entry) and entry["says"], entry_id
    for text in entry["says"]:  # what the catalogue promises is what that test asserts
        assert text in source, f"{entry_id}: {text!r} is not checked in {module}"


def operator_files(tmp_path: Path) -> dict[str, str]:
    """What an operator keeps beside the repository: a key, a kustomization, a Git repo."""
    secret = tmp_path / "operator" / ".ssh" / "id_ed25519"
    secret.parent.mkdir(parents=True)
    secret.write_text(f"SECRET={SECRET}\n")
    outside = tmp_path / "outside-base"
    outside.mkdir()
    (outside / "kustomization.yaml").write_text(
        f"configMapGenerator:\n- name: stolen\n  files: [key={secret}]\n")
    outside_repo = new_repo(tmp_path / "outside-repo")
    commit(outside_repo, {"base/kustomization.yaml": "resources: [cm.yaml]\n",
                          "base/cm.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                          f"  name: remote\ndata: {{s: {SECRET}}}\n"},
           "elsewhere")
    return {"secret": str(secret), "outside": str(outside), "outside_repo": str(outside_repo),
            "sops_key": str(SOPS_KEY)}


def write(repo: Path, files: dict[str, str], links: dict[str, str]) -> None:
    for name, text in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith(LATIN1):
            target.write_bytes(text[len(LATIN1):].encode("latin-1"))
        else:
            target.write_text(text)
    for name, pointee in links.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(pointee, repo / name)


def run(command: str, repo: Path, namespace: str, args: list[str]) -> subprocess.CompletedProcess:
    if command == "history":
        return cli.run("history", "--repo", str(repo), *args)
    return cli.run(command, "--repo", str(repo), "--cluster", SESSION_CLUSTER, "-n", namespace,
                   "--sync", namespace, *args)


def cluster_state(api_client, namespace: str) -> tuple[Any, ...]:
    return names_in(api_client, namespace), stored_inventory(api_client, namespace)


def stored_inventory(api_client, namespace: str) -> dict[str, Any] | None:
    """The sync's inventory as stored (every shard's data), or None when there is none."""
    core = client.CoreV1Api(api_client)
    maps = core.list_namespaced_config_map(conventions.NAMESPACE).items
    prefix = inventory.configmap_name(namespace)
    mine = {m.metadata.name: m.data for m in maps if m.metadata.name.startswith(prefix)}
    return mine or None


def secret_in_cluster(api_client, namespace: str) -> bool:
    core = client.CoreV1Api(api_client)
    texts = [str(c.data) for c in core.list_namespaced_config_map(namespace).items]
    texts += [str(s.data) for s in core.list_namespaced_secret(namespace).items]
    return any(SECRET in text for text in texts)


@pytest.mark.parametrize("entry_id", [entry["id"] for entry in RUN_HERE])
def test_hostile_input(entry_id: str, api_client, local_cluster, namespace: str,
                       tmp_path: Path) -> None:
    entry = {e["id"]: e for e in load(operator_files(tmp_path))}[entry_id]
    repo = new_repo(tmp_path / "repo")
    if entry.get("before"):
        write(repo, entry["before"], {})
        commit(repo, {}, "before")
        run("restore", repo, namespace, entry.get("args") or []).check_returncode()
    before = cluster_state(api_client, namespace)
    if entry["files"] is not None:
        write(repo, entry["files"], entry.get("links") or {})
        commit(repo, {}, entry_id)
    result = run(entry.get("command", "restore"), repo, namespace, entry.get("args") or [])
    shown = result.stdout + result.stderr
    assert result.returncode == entry["exit"], f"exit {result.returncode}\n{shown}"
    for text in entry["says"]:
        assert text in shown, f"{text!r} not in:\n{shown}"
    for text in [SECRET, *entry.get("never", [])]:
        assert text not in shown
    assert "Traceback" not in shown
    if entry["exit"] == 2:
        assert cluster_state(api_client, namespace) == before
    assert not secret_in_cluster(api_client, namespace)


def test_remote_bases_are_fetched_only_when_allowed_and_without_our_credentials(
        api_client, local_cluster, namespace: str, tmp_path: Path) -> None:
    """--allow-remote-bases lets the real kustomize fetch a real Git base (file://), and the
    git it runs sees none of the tool's credentials: a git earlier on PATH records its
    environment and hands over to the real one."""
    places = operator_files(tmp_path)
    repo = new_repo(tmp_path / "repo")
    commit(repo, {"app/kustomization.yaml":
                  f"resources:\n- file://{places['outside_repo']}//base?ref=main\n"}, "remote")
    recorded = tmp_path / "git-calls"
    recorded.mkdir()
    spy = tmp_path / "bin"
    spy.mkdir()
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True,
                              check=True).stdout.strip()
    (spy / "git").write_text(f"#!/bin/sh\n{{ echo \"$*\"; env; }} > {recorded}/$$\n"
                             f"exec {real_git} \"$@\"\n")
    (spy / "git").chmod(0o755)
    env = {"PATH": f"{spy}:{os.environ['PATH']}", "GITOPS_RESTORE_GIT_PASSWORD": SECRET,
           "GITOPS_RESTORE_GIT_USERNAME": "operator", "GITHUB_TOKEN": SECRET,
           "KUBECONFIG": "/nonexistent/kubeconfig-of-the-operator"}
    refused = cli.run("restore", "--repo", str(repo), "--cluster", SESSION_CLUSTER,
                      "-n", namespace, "--sync", namespace, "--path", "app", env=env)
    assert refused.returncode == 2 and "--allow-remote-bases" in refused.stderr
    assert names_in(api_client, namespace)["configmaps"] == []
    allowed = cli.run("restore", "--repo", str(repo), "--cluster", SESSION_CLUSTER,
                      "-n", namespace, "--sync", namespace, "--path", "app",
                      "--allow-remote-bases", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert names_in(api_client, namespace)["configmaps"] == ["remote"]
    calls = [call.read_text() for call in recorded.iterdir()]
    # kustomize's own git: the fetch of the remote base (ours reads the local repository).
    fetches = [call for call in calls if call.startswith("fetch") and "outside-repo" in call]
    assert fetches, "\n".join(call.splitlines()[0] for call in calls)
    for call in fetches:
        assert "GIT_CONFIG_NOSYSTEM=1" in call  # the environment child_process built
        assert SECRET not in call
        for name in ("GITOPS_RESTORE_GIT_PASSWORD", "GITOPS_RESTORE_GIT_USERNAME",
                     "KUBECONFIG", "GITHUB_TOKEN"):
            assert f"\n{name}=" not in call
