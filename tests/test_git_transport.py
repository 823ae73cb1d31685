"""How git reaches a remote: credentials only through askpass and key files, ssh blind to the
user's own ssh configuration, and a Git server that accepts the connection and then says
nothing fails the run instead of hanging it.

Real servers throughout: sshd (tests/sshgit.py), git http-backend behind TLS
(tests/httpsgit.py), and a loopback TCP server that accepts connections and never answers.
What git and ssh were started with is read from wrappers put first on PATH, which record
their command lines (what `ps` shows) before running the real programs.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bootstrap import rollback_handoff
from sync_agent import git_process, source
from sync_agent.git_process import GitTimeout
from tests import cli, httpsgit, sshgit
from tests import manifests as m
from tests.httpsgit import HttpsGitServer
from tests.sshgit import SshGit, make_key_pair
from tests.testdata.gitrepos import commit, git

ssh_git, ssh_git_server = sshgit.ssh_git, sshgit.ssh_git_server
https_git_server = httpsgit.https_git_server
PROJECT = Path(__file__).resolve().parent.parent


# -- what the programs were started with ------------------------------------------------------

def every_byte_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


# -- tokens over HTTPS --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "shown"), [
    ("https://deploy:s3cr3t@git.example/fleet.git", "https://deploy:***@git.example/fleet.git"),
    ("https://s3cr3t@github.com/acme/fleet.git", "https://***@github.com/acme/fleet.git"),
    ("https://oauth2:s3cr3t@gitlab.com/acme/fleet", "https://oauth2:***@gitlab.com/acme/fleet"),
    ("http://x-access-token:s3cr3t@10.0.0.1:8080/f", "http://x-access-token:***@10.0.0.1:8080/f"),
    ("ssh://git:s3cr3t@host:2222/fleet.git", "ssh://git:***@host:2222/fleet.git"),
    ("https://git.example/api?private_token=s3cr3t&page=2",
     "https://git.example/api?private_token=***&page=2"),
    ("https://git.example/f.git?access_token=s3cr3t", "https://git.example/f.git?access_token=***"),
    ("fatal: unable to access 'https://s3cr3t@git.example/f.git/': 403",
     "fatal: unable to access 'https://***@git.example/f.git/': 403"),
    ("Authorization: Bearer s3cr3t", "Authorization: Bearer ***"),
    ("PRIVATE-TOKEN: s3cr3t", "PRIVATE-TOKEN: ***"),
    # not secrets: an ssh account, an @ in a path, a plain URL
    ("ssh://git@host:2222/fleet.git", "ssh://git@host:2222/fleet.git"),
    ("git@github.com:acme/fleet.git", "git@github.com:acme/fleet.git"),
    ("https://git.example/charts/app@1.2.0", "https://git.example/charts/app@1.2.0"),
])
def test_every_credential_spelling_is_redacted(text: str, shown: str) -> None:
    assert source.redact(text) == shown
    assert source.redact(shown) == shown


def test_a_token_alone_in_the_url_reaches_git_only_through_askpass(
        work_tree: Path, clone_cache: Path, command_lines: Path) -> None:
    token = f"ghp_{secrets.token_hex(12)}"
    with HttpsGitServer(username=token, token="") as server:  # GitHub's https://TOKEN@host
        server.create_repo("app", from_repo=work_tree)
        url = f"https://{token}@127.0.0.1:{server.port}/app.git"
        repo = source.open_repository(url, source.GitAuth(ca_file=server.ca_file))
        revision = source.resolve(repo, url)
        assert revision.sha == git(work_tree, "rev-parse", "HEAD")
        assert ("POST", token, 200) in {(a.method, a.user, a.status) for a in server.accesses}
    assert revision.repo == f"https://***@127.0.0.1:{server.port}/app.git"
    started = command_lines.read_text()
    assert "clone --bare" in started  # the log saw git's command lines
    assert token not in started
    assert token.encode() not in every_byte_under(clone_cache)
    config = (source.cache_path(url) / "config").read_text()
    assert f"url = https://127.0.0.1:{server.port}/app.git" in config


def test_rollback_revert_over_https_pushes_with_the_token_off_the_command_line(
        https_git_server: HttpsGitServer, work_tree: Path, clone_cache: Path,
        command_lines: Path) -> None:
    first = git(work_tree, "rev-parse", "HEAD")
    commit(work_tree, {"app/settings.yaml": m.configmap("settings", color="green")}, "v2")
    https_git_server.create_repo("app", from_repo=work_tree)
    token = https_git_server.token
    url = https_git_server.url("app", password=token)
    done = rollback_handoff.revert_to(url, "main", "app", first,
                                      source.GitAuth(ca_file=https_git_server.ca_file))
    bare = https_git_server.repo_path("app")
    assert git(bare, "rev-parse", "refs/heads/main") == done.sha  # pushed over HTTPS
    assert "color: 'blue'" in git(bare, "show", f"{done.sha}:app/settings.yaml")
    started = command_lines.read_text()
    assert " push " in started and " fetch " in started
    assert token not in started


# -- ssh and the user's own configuration -----------------------------------------------------

INNER = """
import json, sys
from pathlib import Path
from sync_agent import source
from sync_agent.errors import SourceError
url, key, known_hosts = sys.argv[1:4]
try:
    repo = source.open_repository(url, source.GitAuth(Path(key), Path(known_hosts)))
    print(json.dumps({"sha": source.resolve(repo, url).sha}))
except SourceError as e:
    print(json.dumps({"error": str(e)}))
"""


def open_with_home(home: Path, url: str, ssh: SshGit, known_hosts: Path) -> dict:
    """open_repository in a process whose home directory (ssh reads ~ from the password
    database, not $HOME) is `home`: a private mount namespace binds it over root's home,
    keeping only the Python installation that may live there."""
    root_home = Path(os.path.expanduser("~root"))
    binds = ""
    python = Path(os.path.realpath(sys.executable))
    if python.is_relative_to(root_home):
        top = root_home / python.relative_to(root_home).parts[0]
        (home / top.name).mkdir(exist_ok=True)
        binds = f'mount --bind "{top}" "$1/{top.name}" && '
    shell = binds + 'mount --rbind "$1" "$2" && shift 2 && exec "$@"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, "sh", str(home),
         str(root_home), sys.executable, "-c", INNER, url, str(ssh.auth.ssh_key),
         str(known_hosts)],
        capture_output=True, text=True, timeout=120, cwd=PROJECT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ssh_reads_neither_the_users_config_nor_their_known_hosts(
        ssh_git: SshGit, work_tree: Path, clone_cache: Path, tmp_path: Path) -> None:
    url = ssh_git.server.create_repo("app", from_repo=work_tree)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    marker = tmp_path / "user-config-was-read"
    # A config that would change everything: its ProxyCommand leaves a mark and fails, host
    # keys would not be checked, the agent would be forwarded and a shared connection reused.
    (home / ".ssh" / "config").write_text(
        "Host *\n"
        f"  ProxyCommand sh -c 'touch {marker}; exit 1'\n"
        "  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile ~/.ssh/known_hosts\n"
        "  ForwardAgent yes\n"
        "  ControlMaster auto\n"
        f"  ControlPath {tmp_path}/control-%C\n")
    (home / ".ssh" / "config").chmod(0o600)
    (home / ".ssh" / "known_hosts").write_text(ssh_git.server.known_hosts_line() + "\n")
    opened = open_with_home(home, url, ssh_git, ssh_git.known_hosts)
    assert opened == {"sha": git(work_tree, "rev-parse", "HEAD")}
    assert not marker.exists()
    # The pinned file alone decides: the user's known_hosts holds the right key, the pinned
    # one another key, and the connection is refused.
    stranger = make_key_pair(tmp_path / "stranger")
    pinned = tmp_path / "pinned_known_hosts"
    port = ssh_git.server.port
    pinned.write_text(f"[127.0.0.1]:{port} {' '.join(stranger.public.split()[:2])}\n")
    shutil.rmtree(clone_cache)
    refused = open_with_home(home, url, ssh_git, pinned)
    assert "Host key verification failed" in refused["error"]
    assert not marker.exists()


def test_the_ssh_command_forwards_nothing_and_offers_only_the_given_key(tmp_path: Path) -> None:
    words = source.ssh_command(source.GitAuth(tmp_path / "key", tmp_path / "hosts")).split()
    for option in ("IdentitiesOnly=yes", "IdentityAgent=none", "ForwardAgent=no",
                   "ClearAllForwardings=yes", "ControlPath=none", "GlobalKnownHostsFile=/dev/null",
                   "StrictHostKeyChecking=yes", "ServerAliveInterval=15"):
        assert option in words
    assert words[1:3] == ["-F", "/dev/null"]


# -- a server that accepts the connection and then says nothing -------------------------------

class SilentServer:
    """Accepts TCP connections on loopback, reads nothing, answers nothing, until closed."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args and "pytest" not in args:
            found.append(args)
    return found


@pytest.mark.parametrize("scheme", ["ssh", "https"])
def test_a_server_that_never_answers_fails_the_run_and_frees_the_clone_cache(
        scheme: str, silent_server: SilentServer, clone_cache: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(git_process.TIMEOUT_ENV, "3")
    key = make_key_pair(tmp_path / "key")
    hosts = tmp_path / "known_hosts"
    hosts.write_text("")
    port = silent_server.port
    url = (f"ssh://git@127.0.0.1:{port}/fleet.git" if scheme == "ssh"
           else f"https://deploy:tok3n@127.0.0.1:{port}/fleet.git")
    with pytest.raises(GitTimeout) as caught:
        source.open_repository(url, source.GitAuth(key.private, hosts))
    assert silent_server.accepted  # the server did take the connection
    message = str(caught.value)
    assert message.startswith(f"{source.redact(url)}: cannot clone: ")
    assert "no answer from the Git server" in message
    assert git_process.TIMEOUT_ENV in message and "tok3n" not in message
    lock = source.cache_path(url).with_suffix(".lock")
    with open(lock, "w") as handle:  # a second writer gets the lock at once
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not source.cache_path(url).exists()
    assert processes_mentioning(str(port)) == []  # git, ssh, git-remote-https all ended
    result = cli.run("history", "--repo", url, "--ssh-key", str(key.private), "--known-hosts",
                     str(hosts), env={git_process.TIMEOUT_ENV: "3"}, timeout=120,
                     check_code=1)  # a failure to retry, not bad input
    assert "no answer from the Git server" in result.stderr
    assert "tok3n" not in result.stdout + result.stderr
