"""sync_agent.source over real SSH: OpenSSH's sshd on loopback serving bare repositories through
git-shell (tests/sshgit.py). Clone, incremental fetch, refused keys and host keys, and a whole
restore over SSH into the real local cluster."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client

from sync_agent import source
from sync_agent.errors import SourceError
from tests import cli, sshgit
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.sshgit import SshGit, SshGitServer, make_key_pair
from tests.testdata.gitrepos import commit, new_repo

ssh_git, ssh_git_server = sshgit.ssh_git, sshgit.ssh_git_server  # the shared fixtures


def open_within_a_minute(url: str, auth: source.GitAuth):
    """open_repository, failing the test instead of hanging if ssh ever waited for input."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(source.open_repository, url, auth).result(timeout=60)


def head_of(repo: Path) -> str:
    return (repo / ".git" / "refs" / "heads" / "main").read_text().strip()


def test_clone_over_ssh_resolves_the_pushed_head_and_exports_its_files(
        ssh_git: SshGit, work_tree: Path, clone_cache: Path, tmp_path: Path) -> None:
    url = ssh_git.server.create_repo("team/app", from_repo=work_tree)
    assert url.startswith(f"ssh://git@127.0.0.1:{ssh_git.server.port}/")
    repo = open_within_a_minute(url, ssh_git.auth)
    revision = source.resolve(repo, url)
    assert revision.sha == head_of(work_tree)
    assert revision.repo == url
    source.export_tree(repo, revision.sha, tmp_path / "out")
    assert "color: 'blue'" in (tmp_path / "out" / "app" / "settings.yaml").read_text()
    assert Path(repo.git_dir) == source.cache_path(url)


def test_a_pushed_commit_is_fetched_into_the_same_mirror_on_reopen(
        ssh_git: SshGit, work_tree: Path, clone_cache: Path) -> None:
    url = ssh_git.server.create_repo("app", from_repo=work_tree)
    first = source.resolve(open_within_a_minute(url, ssh_git.auth), url).sha
    second = commit(work_tree, {"app/settings.yaml": m.configmap("settings", color="green")},
                    "v2")
    ssh_git.server.update_repo("app", work_tree)
    repo = open_within_a_minute(url, ssh_git.auth)
    assert source.resolve(repo, url).sha == second
    assert source.resolve(repo, url, "HEAD~1").sha == first  # the mirror kept its history
    assert Path(repo.git_dir) == source.cache_path(url)


def test_a_key_the_server_does_not_know_is_refused_with_a_source_error(
        ssh_git: SshGit, work_tree: Path, clone_cache: Path, tmp_path: Path) -> None:
    url = ssh_git.server.create_repo("app", from_repo=work_tree)
    stranger = make_key_pair(tmp_path / "stranger")
    with pytest.raises(SourceError) as caught:
        open_within_a_minute(url, source.GitAuth(stranger.private, ssh_git.known_hosts))
    message = str(caught.value)
    assert message.startswith(f"{url}: cannot clone")
    assert "Permission denied (publickey)" in message
    assert "deploy key" in message
    assert stranger.private_text.splitlines()[1] not in message
    assert not source.cache_path(url).exists()
    assert "Failed publickey" in ssh_git.server.log_text() or \
        "Connection closed by authenticating user git" in ssh_git.server.log_text()


def test_known_hosts_without_the_servers_key_is_refused(
        ssh_git: SshGit, work_tree: Path, clone_cache: Path, tmp_path: Path) -> None:
    url = ssh_git.server.create_repo("app", from_repo=work_tree)
    impostor = make_key_pair(tmp_path / "impostor")
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{ssh_git.server.port} {impostor.public}\n"
                     f"github.com {impostor.public}\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    for known_hosts in (other, empty):
        with pytest.raises(SourceError, match=f"^{url}: cannot clone") as caught:
            open_within_a_minute(url, source.GitAuth(ssh_git.key.private, known_hosts))
        assert "Host key verification failed" in str(caught.value)
    assert not source.cache_path(url).exists()
    # The server never saw a login: the client gave up at the host key.
    assert "Accepted publickey" not in ssh_git.server.log_text()


def test_after_the_host_key_changes_the_old_known_hosts_is_refused(
        ssh_git: SshGit, work_tree: Path, clone_cache: Path, tmp_path: Path) -> None:
    url = ssh_git.server.create_repo("app", from_repo=work_tree)
    sha = source.resolve(open_within_a_minute(url, ssh_git.auth), url).sha
    old_line = ssh_git.server.known_hosts_line()
    ssh_git.server.rotate_host_key()
    assert ssh_git.server.known_hosts_line() != old_line
    with pytest.raises(SourceError, match=f"^{url}: cannot fetch") as caught:
        open_within_a_minute(url, ssh_git.auth)
    assert "Host key verification failed" in str(caught.value)
    renewed = ssh_git.server.write_known_hosts(tmp_path / "renewed_known_hosts")
    repo = open_within_a_minute(url, source.GitAuth(ssh_git.key.private, renewed))
    assert source.resolve(repo, url).sha == sha


def test_server_is_stopped_and_removed_when_closed(tmp_path: Path) -> None:
    server = SshGitServer().start()
    root, port = server.root, server.port
    assert root.exists()
    server.close()
    assert not root.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), 2).close()


def test_restore_over_ssh_creates_the_objects(
        api_client, namespace: str, ssh_git: SshGit, tmp_path: Path) -> None:
    work = new_repo(tmp_path / "fleet")
    sha = commit(work, {"app/settings.yaml": m.configmap("settings", color="blue"),
                        "app/web.yaml": m.deployment("web", replicas=2) + "---\n"
                        + m.service("web")}, "v1")
    url = ssh_git.server.create_repo("fleet", from_repo=work)
    result = cli.run("restore", "--repo", url, "--path", "app",
                     "--ssh-key", str(ssh_git.key.private),
                     "--known-hosts", str(ssh_git.known_hosts), "--cluster", SESSION_CLUSTER,
                     "-n", namespace, "--sync", namespace, "--output", "json", check_code=0)
    report = json.loads(result.stdout)
    assert report["sha"] == sha
    assert report["counts"]["create"] == 3
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    assert core.read_namespaced_config_map("settings", namespace).data == {"color": "blue"}
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 2
    assert core.read_namespaced_service("web", namespace).spec.ports[0].port == 80
    assert ssh_git.key.private_text.splitlines()[1] not in result.stdout + result.stderr
