"""sync_agent.source over real HTTPS: git http-backend behind a TLS server with basic auth, its
certificate signed by a throwaway CA (tests/httpsgit.py). Clone at a ref, incremental fetch,
history, refused credentials and certificates, tokens kept out of the cache and the output, and
a whole restore over HTTPS into the real local cluster."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kubernetes import client

from sync_agent import git_https, source
from sync_agent.errors import SourceError
from tests import cli, httpsgit
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.httpsgit import HttpsGitServer, make_ca, port_is_closed
from tests.testdata.gitrepos import commit, git, new_repo

https_git_server = httpsgit.https_git_server  # the shared fixture


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, for a user's global git configuration."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return path


def open_within_a_minute(url: str, auth: source.GitAuth | None):
    """open_repository, failing the test instead of hanging if git ever waited for input."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(source.open_repository, url, auth).result(timeout=60)


def every_byte_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def http_requests(server: HttpsGitServer) -> list[httpsgit.Access]:
    return [a for a in server.accesses if a.method != "TLS"]


def test_clone_over_https_resolves_refs_and_exports_their_files(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path,
        tmp_path: Path) -> None:
    first = git(work_tree, "rev-parse", "HEAD")
    git(work_tree, "tag", "v1")
    second = commit(work_tree, {"app/settings.yaml": m.configmap("settings", color="green")},
                    "v2")
    url = https_git_server.create_repo("team/app", from_repo=work_tree)
    assert url == f"https://127.0.0.1:{https_git_server.port}/team/app.git"
    repo = open_within_a_minute(url, https_git_server.auth())
    assert Path(repo.git_dir) == source.cache_path(url)
    assert source.resolve(repo, url).sha == second
    revision = source.resolve(repo, url, "v1")
    assert (revision.sha, revision.repo) == (first, url)
    source.export_tree(repo, revision.sha, tmp_path / "out")
    assert "color: 'blue'" in (tmp_path / "out" / "app" / "settings.yaml").read_text()
    served = {(a.method, a.user, a.status) for a in https_git_server.accesses}
    assert ("POST", "deploy", 200) in served  # git-upload-pack, authenticated


def test_a_pushed_commit_is_fetched_into_the_same_mirror_on_reopen(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path) -> None:
    url = https_git_server.create_repo("app", from_repo=work_tree)
    first = source.resolve(open_within_a_minute(url, https_git_server.auth()), url).sha
    marker = source.cache_path(url) / "kept-by-an-incremental-fetch"
    marker.write_text("")
    second = commit(work_tree, {"app/settings.yaml": m.configmap("settings", color="green")},
                    "v2")
    https_git_server.update_repo("app", work_tree)
    repo = open_within_a_minute(url, https_git_server.auth())
    assert source.resolve(repo, url).sha == second
    assert source.resolve(repo, url, "HEAD~1").sha == first  # the mirror kept its history
    assert marker.exists()  # fetched into, not cloned again


def test_a_token_in_the_url_never_reaches_the_cache_or_the_revision(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path) -> None:
    https_git_server.create_repo("app", from_repo=work_tree)
    token = https_git_server.token
    url = https_git_server.url("app", password=token)
    repo = open_within_a_minute(url, source.GitAuth(ca_file=https_git_server.ca_file))
    revision = source.resolve(repo, url)
    assert revision.repo == f"https://deploy:***@127.0.0.1:{https_git_server.port}/app.git"
    mirror = source.cache_path(url)
    assert mirror == source.cache_path(https_git_server.url("app", password="rotated-token"))
    assert token not in str(mirror)
    assert f"url = https://127.0.0.1:{https_git_server.port}/app.git" in (
        mirror / "config").read_text()
    assert token.encode() not in every_byte_under(clone_cache)
    assert token not in repr(https_git_server.auth())


def test_an_odd_token_in_the_url_is_percent_decoded(
        work_tree: Path, clone_cache: Path) -> None:
    with HttpsGitServer(username="ci bot", token="p@ss/w:rd%?#") as server:
        server.create_repo("app", from_repo=work_tree)
        url = server.url("app", password=server.token)
        repo = open_within_a_minute(url, source.GitAuth(ca_file=server.ca_file))
        assert source.resolve(repo, url).sha == git(work_tree, "rev-parse", "HEAD")


def test_the_users_credential_helper_neither_answers_nor_stores_the_token(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path,
        home: Path) -> None:
    url = https_git_server.create_repo("app", from_repo=work_tree)
    stored = home / "git-credentials"
    stale = f"https://deploy:stale-token@127.0.0.1:{https_git_server.port}\n"
    stored.write_text(stale)
    (home / ".gitconfig").write_text(f"[credential]\n\thelper = store --file {stored}\n")
    open_within_a_minute(url, https_git_server.auth())
    assert stored.read_text() == stale


def test_history_over_https_with_credentials_from_the_environment(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path) -> None:
    first = git(work_tree, "rev-parse", "HEAD")
    second = commit(work_tree, {"app/settings.yaml": m.configmap("settings", color="green")},
                    "v2")
    url = https_git_server.create_repo("app", from_repo=work_tree)
    env = {git_https.USERNAME_ENV: https_git_server.username,
           git_https.PASSWORD_ENV: https_git_server.token}
    result = cli.run("history", "--repo", url, "--path", "app", "--ca-file",
                     str(https_git_server.ca_file), "--output", "json", env=env, check_code=0)
    entries = json.loads(result.stdout)
    assert [e["sha"] for e in entries] == [second, first]
    assert entries[0]["changed"] == ["ConfigMap/settings"]
    text = cli.run("history", "--repo", url, "--path", "app", "--ca-file",
                   str(https_git_server.ca_file), env=env, check_code=0)
    assert second[:12] in text.stdout
    for output in (result, text):
        assert https_git_server.token not in output.stdout + output.stderr


def test_a_wrong_token_is_refused_in_one_line_and_nothing_is_cloned(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path) -> None:
    https_git_server.create_repo("app", from_repo=work_tree)
    url = https_git_server.url("app", password="wrong-token")
    result = cli.run("history", "--repo", url, "--ca-file", str(https_git_server.ca_file),
                     check_code=2)
    shown = f"https://deploy:***@127.0.0.1:{https_git_server.port}/app.git"
    assert result.stderr.startswith(f"error: {shown}: cannot clone: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "refused the username and token" in result.stderr
    assert git_https.PASSWORD_ENV in result.stderr
    assert "wrong-token" not in result.stdout + result.stderr
    assert not source.cache_path(url).exists()
    assert https_git_server.refused()  # the server really said no
    assert not any(a.status == 200 for a in https_git_server.accesses)


def test_no_credentials_at_all_says_how_to_give_them(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path) -> None:
    url = https_git_server.create_repo("app", from_repo=work_tree)
    with pytest.raises(SourceError, match=f"^{url}: cannot clone: ") as caught:
        open_within_a_minute(url, source.GitAuth(ca_file=https_git_server.ca_file))
    assert git_https.USERNAME_ENV in str(caught.value)
    assert git_https.PASSWORD_ENV in str(caught.value)


def test_a_certificate_from_an_untrusted_ca_is_refused_before_anything_is_sent(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path, home: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = https_git_server.create_repo("app", from_repo=work_tree)
    impostor = make_ca(tmp_path / "impostor", "impostor CA")
    # Neither a user's `http.sslVerify = false` nor GIT_SSL_NO_VERIFY switches checks off.
    (home / ".gitconfig").write_text("[http]\n\tsslVerify = false\n")
    monkeypatch.setenv("GIT_SSL_NO_VERIFY", "1")
    token = https_git_server.token
    for ca_file in (None, impostor.cert_file):
        auth = source.GitAuth(ca_file=ca_file, username="deploy", password=token)
        with pytest.raises(SourceError, match=f"^{url}: cannot clone: ") as caught:
            open_within_a_minute(url, auth)
        assert "--ca-file" in str(caught.value)
        assert "certificate" in str(caught.value)
    assert http_requests(https_git_server) == []  # the token was never sent
    assert not source.cache_path(url).exists()
    result = cli.run("history", "--repo", https_git_server.url("app", password=token),
                     check_code=2)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--ca-file PATH" in result.stderr and token not in result.stderr


def test_a_missing_ca_file_is_named_and_nothing_is_fetched(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path,
        tmp_path: Path) -> None:
    url = https_git_server.create_repo("app", from_repo=work_tree)
    absent = tmp_path / "absent-ca.pem"
    result = cli.run("history", "--repo", url, "--ca-file", str(absent), check_code=2)
    assert result.stderr.strip() == f"error: {url}: the CA file {absent} does not exist"
    assert https_git_server.accesses == []
    assert not source.cache_path(url).exists()


def test_server_is_stopped_and_removed_when_closed() -> None:
    server = HttpsGitServer().start()
    root, port = server.root, server.port
    assert root.exists()
    server.close()
    assert not root.exists()
    assert port_is_closed(port)


def test_restore_over_https_creates_the_objects_and_stores_no_token(
        api_client, namespace: str, https_git_server: HttpsGitServer, clone_cache: Path,
        tmp_path: Path) -> None:
    work = new_repo(tmp_path / "fleet")
    sha = commit(work, {"app/settings.yaml": m.configmap("settings", color="blue"),
                        "app/web.yaml": m.deployment("web", replicas=2) + "---\n"
                        + m.service("web")}, "v1")
    https_git_server.create_repo("fleet", from_repo=work)
    token = https_git_server.token
    url = https_git_server.url("fleet", password=token)
    result = cli.run("restore", "--repo", url, "--path", "app",
                     "--ca-file", str(https_git_server.ca_file), "--cluster", SESSION_CLUSTER,
                     "-n", namespace, "--sync", namespace, "--output", "json", check_code=0)
    report = json.loads(result.stdout)
    assert report["sha"] == sha
    assert report["repo"] == f"https://deploy:***@127.0.0.1:{https_git_server.port}/fleet.git"
    assert report["counts"]["create"] == 3
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    assert core.read_namespaced_config_map("settings", namespace).data == {"color": "blue"}
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 2
    assert token not in result.stdout + result.stderr
    status = cli.run("status", "--sync", namespace, "--cluster", SESSION_CLUSTER,
                     "--output", "json", check_code=0)
    assert [row["repo"] for row in json.loads(status.stdout)] == [report["repo"]]
    assert token not in status.stdout
