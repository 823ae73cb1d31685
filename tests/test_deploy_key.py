"""`deploy-key create` end to end: the real local cluster holds the Secret, a real sshd serves
the repository, and a local HTTP server stands in for GitHub's and GitLab's deploy-key APIs
(it implements the endpoints we call and records every request)."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from kubernetes import client

from bootstrap import deploy_key as dk
from bootstrap.errors import OperationFailed, UserError
from sync_agent.conventions import NAMESPACE
from sync_agent.kube import Kube
from tests import cli, sshgit
from tests import manifests as m
from tests.conftest import SESSION_CLUSTER
from tests.sshgit import KeyPair, SshGit, SshGitServer, make_key_pair
from tests.testdata.gitrepos import commit, new_repo

ssh_git, ssh_git_server = sshgit.ssh_git, sshgit.ssh_git_server  # the shared fixtures

TOKEN = "tok-" + uuid.uuid4().hex


# -- helpers -------------------------------------------------------------------------------------

@pytest.fixture
def key_name(api_client) -> Iterator[str]:
    """A deploy key name of this test's own; its Secret is deleted afterwards."""
    name = f"dk-{uuid.uuid4().hex[:10]}"
    yield name
    try:
        client.CoreV1Api(api_client).delete_namespaced_secret(dk.secret_name(name),
                                                               NAMESPACE)
    except client.ApiException as e:
        assert e.status == 404


@pytest.fixture
def fleet(ssh_git_server: SshGitServer, tmp_path: Path) -> str:
    """A repository on the SSH server with one ConfigMap in app/; returns its URL."""
    work = new_repo(tmp_path / "fleet")
    commit(work, {"app/settings.yaml": m.configmap("settings", color="blue")}, "v1")
    return ssh_git_server.create_repo("fleet", from_repo=work)


def create(url: str, name: str, *args: str, code: int | None = 0, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    return cli.run("deploy-key", "create", "--repo", url, "--deploy-key", name,
                   "--cluster", SESSION_CLUSTER, *args, env=env, check_code=code)


def secret_data(api_client, name: str) -> dict[str, str] | None:
    try:
        secret = client.CoreV1Api(api_client).read_namespaced_secret(dk.secret_name(name),
                                                                     NAMESPACE)
    except client.ApiException as e:
        assert e.status == 404
        return None
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items()}


def assert_never_shown(private_key: str, *results: subprocess.CompletedProcess) -> None:
    """Neither the private key nor any line of it is in any output, nor the API token."""
    body = [line for line in private_key.splitlines() if len(line) >= 20 and "-----" not in line]
    assert body, "not a private key"
    for result in results:
        for stream in (result.stdout, result.stderr):
            assert "PRIVATE KEY" not in stream
            assert TOKEN not in stream
            for line in body:
                assert line not in stream


def keygen_fingerprint(public_key: str, tmp_path: Path) -> str:
    """ssh-keygen's own idea of a public key's fingerprint (not ours)."""
    path = tmp_path / f"fp-{uuid.uuid4().hex}.pub"
    path.write_text(public_key + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return out.split()[1]


# -- a local stand-in for the forges' deploy-key APIs ------------------------------------------

class ForgeServer:
    """GitHub's /repos/{o}/{r}/keys and GitLab's /api/v4/projects/{id}/deploy_keys, in memory."""

    def __init__(self):
        self.keys: dict[str, list[dict]] = {}  # project -> keys
        self.requests: list[dict] = []
        self.fail_with: int | None = None
        self._next_id = 100
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                forge.handle(self)

            do_POST = do_DELETE = do_GET

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def calls(self) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests]

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        headers = {k.lower(): v for k, v in h.headers.items()}  # names are case-insensitive
        self.requests.append({"method": h.command, "path": h.path, "headers": headers,
                              "body": body})
        route = urlsplit(h.path).path
        github = re.fullmatch(r"/repos/([^/]+/[^/]+)/keys(?:/(\d+))?", route)
        gitlab = re.fullmatch(r"/api/v4/projects/([^/]+)/deploy_keys(?:/(\d+))?", route)
        if github:
            authorized = h.headers.get("Authorization") == f"Bearer {TOKEN}"
            project, key_id = github.groups()
        elif gitlab:
            authorized = h.headers.get("PRIVATE-TOKEN") == TOKEN
            project, key_id = unquote(gitlab.group(1)), gitlab.group(2)
        else:
            return self.reply(h, 404, {"message": "Not Found"})
        if not authorized:
            return self.reply(h, 401, {"message": "Bad credentials"})
        if self.fail_with:
            return self.reply(h, self.fail_with, {"message": "Server Error"})
        keys = self.keys.setdefault(project, [])
        if h.command == "GET":
            return self.reply(h, 200, keys)
        if h.command == "POST":
            if any(k["key"] == body["key"] for k in keys):
                return self.reply(h, 422, {"message": "key is already in use"})
            self._next_id += 1
            entry = {"id": self._next_id, "title": body["title"], "key": body["key"],
                     **{k: v for k, v in body.items() if k in ("read_only", "can_push")}}
            keys.append(entry)
            return self.reply(h, 201, entry)
        before = len(keys)
        keys[:] = [k for k in keys if str(k["id"]) != key_id]
        return self.reply(h, 204 if len(keys) < before else 404, None)

    @staticmethod
    def reply(h: BaseHTTPRequestHandler, status: int, data) -> None:
        raw = b"" if data is None else json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def forge() -> Iterator[ForgeServer]:
    server = ForgeServer()
    yield server
    server.close()


FORGE_ENV = {"FORGE_TOKEN": TOKEN}


def github(forge: ForgeServer, project: str = "acme/fleet") -> tuple[str, ...]:
    return ("--github", project, "--token-env", "FORGE_TOKEN", "--api-url", forge.url)


def gitlab(forge: ForgeServer, project: str = "platform/fleet") -> tuple[str, ...]:
    return ("--gitlab", project, "--token-env", "FORGE_TOKEN", "--api-url", forge.url)


# -- creating, storing and using a key ----------------------------------------------------------

def test_create_stores_a_new_key_and_the_pinned_host_key_in_a_secret(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        tmp_path: Path) -> None:
    host_fp = ssh_git_server.host_key_fingerprint()
    result = create(fleet, key_name, "--accept-host-key", host_fp, "--output", "json")
    shown = json.loads(result.stdout)
    data = secret_data(api_client, key_name)
    assert set(data) == {"identity", "identity.pub", "known_hosts"}
    assert data["identity"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert data["identity.pub"].strip() == shown["public_key"]
    assert shown["public_key"].startswith("ssh-ed25519 ")
    assert shown["public_key"].endswith(f" gitops-restore-{key_name}")
    assert shown["fingerprint"] == keygen_fingerprint(shown["public_key"], tmp_path)
    assert shown["host_fingerprint"] == host_fp
    assert shown["secret"] == f"gitops-restore-system/{key_name}-deploy-key"
    assert data["known_hosts"] == ssh_git_server.known_hosts_line() + "\n"
    secret = client.CoreV1Api(api_client).read_namespaced_secret(
        f"{key_name}-deploy-key", "gitops-restore-system")
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "gitops-restore"
    assert_never_shown(data["identity"], result)
    # The private and public halves belong together (ssh-keygen derives one from the other).
    identity = tmp_path / "identity"
    dk.write_private(identity, data["identity"].encode())
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(identity)], capture_output=True,
                             text=True, check=True).stdout
    assert derived.split()[:2] == shown["public_key"].split()[:2]


def test_text_output_prints_only_the_public_key_and_the_next_step(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str) -> None:
    result = create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint())
    data = secret_data(api_client, key_name)
    assert result.stdout.strip() == data["identity.pub"].strip()
    assert "READ-ONLY deploy key" in result.stderr
    assert_never_shown(data["identity"], result)


def test_the_key_from_the_secret_restores_over_ssh_once_the_server_accepts_it(
        api_client, kube: Kube, namespace: str, ssh_git_server: SshGitServer, fleet: str,
        key_name: str) -> None:
    create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint())
    key = dk.load_deploy_key(kube, key_name)
    restore = ("restore", "--repo", fleet, "--path", "app", "--cluster", SESSION_CLUSTER,
               "-n", namespace, "--sync", namespace)
    with key.git_auth() as auth:
        assert stat.S_IMODE(auth.ssh_key.parent.stat().st_mode) == 0o700
        for path in (auth.ssh_key, auth.known_hosts):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        files = ("--ssh-key", str(auth.ssh_key), "--known-hosts", str(auth.known_hosts))
        refused = cli.run(*restore, *files, check_code=2)  # not yet added to the server
        assert "cannot clone" in refused.stderr
        with pytest.raises(OperationFailed, match="not accepted within"):
            dk.wait_until_accepted(fleet, key, timeout=1, interval=0.5)
        ssh_git_server.add_key(key.public_key)
        dk.wait_until_accepted(fleet, key, timeout=30, interval=0.5)
        done = cli.run(*restore, *files, check_code=0)
    assert not auth.ssh_key.parent.exists()  # the files are gone after use
    settings = client.CoreV1Api(api_client).read_namespaced_config_map("settings", namespace)
    assert settings.data == {"color": "blue"}
    assert_never_shown(key.identity.decode(), refused, done)


def test_a_second_create_without_rotate_fails_and_changes_nothing(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str) -> None:
    fp = ssh_git_server.host_key_fingerprint()
    first = create(fleet, key_name, "--accept-host-key", fp)
    before = client.CoreV1Api(api_client).read_namespaced_secret(
        dk.secret_name(key_name), NAMESPACE)
    again = create(fleet, key_name, "--accept-host-key", fp, code=2)
    assert "already holds deploy key" in again.stderr and "--rotate" in again.stderr
    assert "nothing was changed" in again.stderr
    after = client.CoreV1Api(api_client).read_namespaced_secret(
        dk.secret_name(key_name), NAMESPACE)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert_never_shown(secret_data(api_client, key_name)["identity"], first, again)


def test_rotate_replaces_the_key_pair(api_client, ssh_git_server: SshGitServer, fleet: str,
                                      key_name: str) -> None:
    fp = ssh_git_server.host_key_fingerprint()
    first = json.loads(create(fleet, key_name, "--accept-host-key", fp, "-o", "json").stdout)
    old = secret_data(api_client, key_name)
    rotated = create(fleet, key_name, "--accept-host-key", fp, "--rotate", "-o", "json")
    second = json.loads(rotated.stdout)
    new = secret_data(api_client, key_name)
    assert second["replaced"] is True
    assert second["public_key"] != first["public_key"]
    assert new["identity.pub"].strip() == second["public_key"]
    assert new["identity"] != old["identity"]
    assert_never_shown(old["identity"], rotated)
    assert_never_shown(new["identity"], rotated)


def test_a_wrong_host_fingerprint_is_refused_and_nothing_is_stored(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str) -> None:
    wrong = "SHA256:" + base64.b64encode(os.urandom(32)).decode().rstrip("=")
    result = create(fleet, key_name, "--accept-host-key", wrong, code=2)
    assert f"not {wrong}" in result.stderr
    assert ssh_git_server.host_key_fingerprint() in result.stderr
    assert secret_data(api_client, key_name) is None


def test_without_a_fingerprint_or_a_terminal_the_error_shows_the_fingerprint(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str) -> None:
    result = create(fleet, key_name, code=2)
    fp = ssh_git_server.host_key_fingerprint()
    assert f"--accept-host-key {fp}" in result.stderr
    assert secret_data(api_client, key_name) is None


@pytest.mark.parametrize("answer, stored", [("y", True), ("n", False)])
def test_at_a_terminal_the_user_confirms_the_host_key(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str, answer: str,
        stored: bool) -> None:
    controller, terminal = pty.openpty()
    try:
        os.write(controller, f"{answer}\n".encode())
        result = subprocess.run(
            [cli.COMMAND, "deploy-key", "create", "--repo", fleet, "--deploy-key", key_name,
             "--cluster", SESSION_CLUSTER], stdin=terminal, capture_output=True, text=True,
            timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)
    assert ssh_git_server.host_key_fingerprint() in result.stderr
    assert result.returncode == (0 if stored else 2), result.stderr
    assert (secret_data(api_client, key_name) is not None) == stored


def test_known_hosts_file_pins_the_servers_entry(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        tmp_path: Path) -> None:
    other = make_key_pair(tmp_path / "other")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"github.com {other.public}\n{ssh_git_server.known_hosts_line()}\n")
    create(fleet, key_name, "--known-hosts", str(known_hosts))
    assert secret_data(api_client, key_name)["known_hosts"] == \
        ssh_git_server.known_hosts_line() + "\n"
    only_other = tmp_path / "only_other"
    only_other.write_text(f"github.com {other.public}\n")
    refused = create(fleet, "other-" + key_name, "--known-hosts", str(only_other), code=2)
    assert f"no entry for [127.0.0.1]:{ssh_git_server.port}" in refused.stderr
    assert secret_data(api_client, "other-" + key_name) is None


@pytest.fixture
def own_key(tmp_path: Path) -> KeyPair:
    return make_key_pair(tmp_path / "own", comment="ops@example.com")


def test_an_existing_key_pair_is_used_as_it_is_and_a_rerun_is_idempotent(
        api_client, ssh_git: SshGit, fleet: str, key_name: str, own_key: KeyPair) -> None:
    args = ("--accept-host-key", ssh_git.server.host_key_fingerprint(),
            "--private-key-file", str(own_key.private))
    first = create(fleet, key_name, *args)
    data = secret_data(api_client, key_name)
    assert data["identity"] == own_key.private_text
    assert data["identity.pub"].strip() == own_key.public
    assert first.stdout.strip() == own_key.public
    again = create(fleet, key_name, *args)  # same key, same host: nothing to replace
    failed = create(fleet, key_name, "--accept-host-key", "SHA256:wrong",
                    "--private-key-file", str(own_key.private), code=2)
    assert_never_shown(own_key.private_text, first, again, failed)


# -- registering with a forge -------------------------------------------------------------------

def test_github_registers_a_read_only_key_with_the_token(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        forge: ForgeServer, own_key: KeyPair) -> None:
    result = create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint(),
                    "--private-key-file", str(own_key.private), *github(forge), "-o", "json",
                    env=FORGE_ENV)
    assert forge.calls() == [("GET", "/repos/acme/fleet/keys?per_page=100"),
                             ("POST", "/repos/acme/fleet/keys")]
    post = forge.requests[1]
    assert post["body"] == {"title": f"gitops-restore-{key_name}",
                            "key": " ".join(own_key.public.split()[:2]), "read_only": True}
    for request in forge.requests:
        assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
        assert request["headers"]["accept"] == "application/vnd.github+json"
        assert request["headers"]["x-github-api-version"] == "2022-11-28"
    shown = json.loads(result.stdout)
    assert shown["registered"] == {"forge": "github", "project": "acme/fleet",
                                   "title": f"gitops-restore-{key_name}", "id": 101,
                                   "created": True, "removed": []}
    assert secret_data(api_client, key_name)["identity"] == own_key.private_text
    assert_never_shown(own_key.private_text, result)


def test_github_second_run_with_the_same_key_posts_nothing(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        forge: ForgeServer, own_key: KeyPair) -> None:
    args = ("--accept-host-key", ssh_git_server.host_key_fingerprint(),
            "--private-key-file", str(own_key.private), *github(forge))
    create(fleet, key_name, *args, env=FORGE_ENV)
    forge.requests.clear()
    again = create(fleet, key_name, *args, "-o", "json", env=FORGE_ENV)
    assert forge.calls() == [("GET", "/repos/acme/fleet/keys?per_page=100")]
    assert json.loads(again.stdout)["registered"]["created"] is False
    assert len(forge.keys["acme/fleet"]) == 1


def test_github_rotation_registers_the_new_key_before_deleting_the_old(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        forge: ForgeServer) -> None:
    args = ("--accept-host-key", ssh_git_server.host_key_fingerprint(), *github(forge))
    first = json.loads(create(fleet, key_name, *args, "-o", "json", env=FORGE_ENV).stdout)
    forge.requests.clear()
    rotated = create(fleet, key_name, *args, "--rotate", "-o", "json", env=FORGE_ENV)
    second = json.loads(rotated.stdout)
    old_id = first["registered"]["id"]
    assert forge.calls() == [("GET", "/repos/acme/fleet/keys?per_page=100"),
                             ("POST", "/repos/acme/fleet/keys"),
                             ("DELETE", f"/repos/acme/fleet/keys/{old_id}")]
    assert forge.requests[1]["body"]["key"] == " ".join(second["public_key"].split()[:2])
    assert [k["key"] for k in forge.keys["acme/fleet"]] == \
        [" ".join(second["public_key"].split()[:2])]
    assert second["registered"]["removed"] == [old_id]
    assert secret_data(api_client, key_name)["identity.pub"].strip() == second["public_key"]
    assert_never_shown(secret_data(api_client, key_name)["identity"], rotated)


def test_github_key_of_the_same_title_but_another_key_needs_rotate(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        forge: ForgeServer, own_key: KeyPair, tmp_path: Path) -> None:
    stranger = make_key_pair(tmp_path / "stranger")
    forge.keys["acme/fleet"] = [{"id": 7, "title": f"gitops-restore-{key_name}",
                                 "key": stranger.public, "read_only": True}]
    result = create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint(),
                    "--private-key-file", str(own_key.private), *github(forge), code=2,
                    env=FORGE_ENV)
    assert "already exists with another key" in result.stderr and "--rotate" in result.stderr
    assert [m for m, _ in forge.calls()] == ["GET"]
    assert secret_data(api_client, key_name) is None
    assert_never_shown(own_key.private_text, result)


def test_a_rejected_token_is_reported_without_the_token_or_key(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        forge: ForgeServer, own_key: KeyPair) -> None:
    result = create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint(),
                    "--private-key-file", str(own_key.private), *github(forge), code=2,
                    env={"FORGE_TOKEN": "not-" + TOKEN})
    assert "HTTP 401" in result.stderr and "token was rejected" in result.stderr
    assert secret_data(api_client, key_name) is None
    assert "not-" + TOKEN not in result.stdout + result.stderr
    forge.fail_with = 500
    failed = create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint(),
                    "--private-key-file", str(own_key.private), *github(forge), code=2,
                    env=FORGE_ENV)
    assert "HTTP 500" in failed.stderr
    assert_never_shown(own_key.private_text, result, failed)


def test_gitlab_registers_and_rotates_a_key_that_cannot_push(
        api_client, ssh_git_server: SshGitServer, fleet: str, key_name: str,
        forge: ForgeServer) -> None:
    args = ("--accept-host-key", ssh_git_server.host_key_fingerprint(), *gitlab(forge))
    first = json.loads(create(fleet, key_name, *args, "-o", "json", env=FORGE_ENV).stdout)
    collection = "/api/v4/projects/platform%2Ffleet/deploy_keys"
    assert forge.calls() == [("GET", f"{collection}?per_page=100"), ("POST", collection)]
    assert forge.requests[1]["body"] == {"title": f"gitops-restore-{key_name}",
                                         "key": " ".join(first["public_key"].split()[:2]),
                                         "can_push": False}
    assert all(r["headers"]["private-token"] == TOKEN for r in forge.requests)
    assert all("authorization" not in r["headers"] for r in forge.requests)
    forge.requests.clear()
    second = json.loads(create(fleet, key_name, *args, "--rotate", "-o", "json",
                               env=FORGE_ENV).stdout)
    assert forge.calls() == [("GET", f"{collection}?per_page=100"), ("POST", collection),
                             ("DELETE", f"{collection}/{first['registered']['id']}")]
    assert [k["key"] for k in forge.keys["platform/fleet"]] == \
        [" ".join(second["public_key"].split()[:2])]


# -- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("--github", "acme/fleet"), "--token-env"),
    (("--github", "acme/fleet", "--token-env", "UNSET_TOKEN_VAR"), "UNSET_TOKEN_VAR"),
    (("--github", "acme/fleet", "--token-env", "FORGE_TOKEN", "--api-url",
      "http://forge.example.com"), "use https://"),
    (("--github", "a", "--gitlab", "b", "--token-env", "FORGE_TOKEN"), "either --github"),
])
def test_forge_options_are_checked_before_anything_happens(
        api_client, fleet: str, key_name: str, args: tuple[str, ...], message: str) -> None:
    result = create(fleet, key_name, "--accept-host-key", "SHA256:x", *args, code=2,
                    env=FORGE_ENV)
    assert message in result.stderr
    assert secret_data(api_client, key_name) is None


def test_an_https_url_is_refused(api_client, key_name: str) -> None:
    result = create("https://github.com/acme/fleet.git", key_name, code=2)
    assert "a deploy key is for an SSH remote" in result.stderr


def test_show_prints_the_stored_public_key_and_a_missing_key_is_named(
        api_client, kube: Kube, ssh_git_server: SshGitServer, fleet: str,
        key_name: str) -> None:
    created = create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint())
    shown = cli.run("deploy-key", "show", "--deploy-key", key_name, "--cluster", SESSION_CLUSTER,
                    check_code=0)
    assert shown.stdout.strip() == created.stdout.strip()
    assert ssh_git_server.host_key_fingerprint() in shown.stderr
    with pytest.raises(UserError, match=f"{key_name}-missing-deploy-key does not exist"):
        dk.load_deploy_key(kube, f"{key_name}-missing")


def test_waiting_for_acceptance_stops_at_once_when_the_host_key_changed(
        kube: Kube, ssh_git_server: SshGitServer, fleet: str, key_name: str) -> None:
    create(fleet, key_name, "--accept-host-key", ssh_git_server.host_key_fingerprint())
    key = dk.load_deploy_key(kube, key_name)
    ssh_git_server.add_key(key.public_key)
    ssh_git_server.rotate_host_key()
    with pytest.raises(UserError, match="Host key verification failed"):
        dk.wait_until_accepted(fleet, key, timeout=600, interval=1)
