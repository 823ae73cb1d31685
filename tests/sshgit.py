"""A real Git server over SSH on loopback, for tests: OpenSSH's sshd, a `git` account whose
login shell is git-shell, bare repositories in a temporary directory.

    with SshGitServer() as server:
        server.add_key(key.public)
        url = server.create_repo("app", from_repo=work_tree)  # ssh://git@127.0.0.1:PORT/…/app.git
        known_hosts.write_text(server.known_hosts_line() + "\n")

or the fixtures `ssh_git_server` (a started server) and `ssh_git` (server, an authorized client
key, a known_hosts file pinning the server, and the matching GitAuth). A test module makes them
its own with `ssh_git, ssh_git_server = sshgit.ssh_git, sshgit.ssh_git_server`.

Why a real `git` system account: the URL `ssh://git@host/...` is what every forge uses, and
git-shell as the login shell is exactly how a self-hosted Git server limits a deploy key to
git-upload-pack / git-receive-pack. Logging in as root with a forced command would need a
`root@` URL and would test a setup nobody runs. The account is created once (idempotently,
with the password field `*`, because sshd without PAM refuses locked `!` accounts); we run as
root, which useradd needs. Because sshd reads authorized_keys and git-shell reads the
repositories *as that user*, everything lives in a world-traversable directory under the
system temp dir (pytest's own tmp_path is 0700 root), the repositories are created with
`--shared=0666` so that both a local push by the test (root) and a push over SSH (git) can
write, and `StrictModes no` because /tmp itself is world-writable. Host key checking on the
client side stays on: tests pin the server with `known_hosts_line()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sync_agent import source
from tests.testdata.gitrepos import push_everything

SSHD = "/usr/sbin/sshd"
GIT_SHELL = shutil.which("git-shell") or "/usr/bin/git-shell"
GIT_USER = "git"
HOST = "127.0.0.1"
PRIVSEP_DIR = Path("/run/sshd")  # sshd's privilege-separation chroot (Debian's path)
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class KeyPair:
    """An SSH key pair on disk: the private key file (0600) and the public key line."""

    private: Path
    public: str

    @property
    def private_text(self) -> str:
        return self.private.read_text()


def make_key_pair(directory: Path, name: str = "id_ed25519", comment: str = "test") -> KeyPair:
    """A new passphrase-less ed25519 key pair, made by ssh-keygen."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    for stale in (path, path.with_name(name + ".pub")):
        stale.unlink(missing_ok=True)
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)
    return KeyPair(path, path.with_name(name + ".pub").read_text().strip())


def ensure_git_user() -> pwd.struct_passwd:
    """The `git` account with git-shell as its login shell; created if missing."""
    for _ in range(5):
        account = _account(GIT_USER)
        if account is None:
            # 9: created meanwhile by a parallel test process; 1/10: passwd file locked by it.
            done = subprocess.run(
                ["useradd", "--system", "--create-home", "--home-dir", f"/home/{GIT_USER}",
                 "--shell", GIT_SHELL, "--password", "*", "--comment",
                 "Git over SSH for gitops-restore tests", GIT_USER],
                capture_output=True, text=True)
            if done.returncode not in (0, 1, 9, 10):
                raise RuntimeError(f"useradd {GIT_USER} failed: {done.stderr.strip()} "
                                   "(the SSH Git server needs root to create its account)")
            time.sleep(0.2)
            continue
        if Path(account.pw_shell).name != "git-shell":
            raise RuntimeError(f"user {GIT_USER!r} exists with shell {account.pw_shell}; the "
                               f"SSH Git server needs it to be {GIT_SHELL}")
        return account
    raise RuntimeError(f"cannot create the {GIT_USER!r} account (useradd kept failing)")


class SshGitServer:
    """OpenSSH's sshd on a free loopback port serving bare repositories to the `git` user.

    Start and stop it with `with`, or start()/stop()/close(). It is also stopped when the object
    is collected or the interpreter exits, and sshd gets SIGTERM if the test process dies
    (PR_SET_PDEATHSIG: start it from a thread that outlives it, such as pytest's main thread),
    so a failing or killed test leaves no sshd behind.

    `base_dir` is where the server's directory is made; the `git` user must be able to traverse
    it, which pytest's tmp_path (under a 0700 directory) is not: the default is the system temp
    dir, and an unsuitable `base_dir` is refused with a clear error.
    """

    def __init__(self, base_dir: Path | None = None):
        for tool in (SSHD, GIT_SHELL):
            if not os.access(tool, os.X_OK):
                raise RuntimeError(f"{tool} is missing: install openssh-server and git")
        self.account = ensure_git_user()
        self.root = Path(tempfile.mkdtemp(prefix="sshgit-", dir=base_dir))
        self.root.chmod(0o755)
        _check_reachable_by(self.root, self.account)
        self.repos = self.root / "repos"
        self.repos.mkdir(mode=0o755)
        self.authorized_keys = self.root / "authorized_keys"
        self._write_keys([])
        self.port = 0
        self._process: subprocess.Popen | None = None
        self._generate_host_key()
        self._finalizer = weakref.finalize(self, _cleanup, self.root, [None])

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SshGitServer:
        """Start sshd (on the same port as before after a stop) and wait until it answers."""
        if self._process:
            return self
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        for _ in range(10):
            port = self.port or _free_port()
            self._write_config(port)
            log = open(self.root / "sshd.log", "ab")  # noqa: SIM115 - sshd keeps it open
            process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       start_new_session=True, preexec_fn=_die_with_parent)
            log.close()
            if _wait_for_banner(port, process):
                self.port, self._process = port, process
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _cleanup, self.root, [process])
                return self
            _terminate(process)
            time.sleep(0.2)  # the port was taken (or is not free yet after a restart)
        raise RuntimeError(f"sshd did not start; its log:\n{self.log_text()}")

    def stop(self) -> None:
        """Stop sshd and the sessions it forked (the files stay until close())."""
        if self._process:
            _terminate(self._process)
            self._process = None

    def close(self) -> None:
        """Stop and delete everything: host keys, repositories, logs."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> SshGitServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def rotate_host_key(self) -> None:
        """Restart on the same port with a new host key: known_hosts pinning the old one fails."""
        self.stop()
        self._generate_host_key()
        self.start()

    # -- access ------------------------------------------------------------------------------

    def add_key(self, public_key: str) -> None:
        """Authorize a public key ("ssh-ed25519 AAAA… comment") for the git user."""
        keys = self._keys()
        if public_key.strip() not in keys:
            self._write_keys([*keys, public_key.strip()])

    def remove_key(self, public_key: str) -> None:
        wanted = public_key.split()[:2]
        self._write_keys([k for k in self._keys() if k.split()[:2] != wanted])

    def known_hosts_line(self) -> str:
        """The known_hosts entry pinning this server's current host key."""
        kind, blob = (self.root / "host_ed25519.pub").read_text().split()[:2]
        return f"[{HOST}]:{self.port} {kind} {blob}"

    def write_known_hosts(self, path: Path) -> Path:
        path.write_text(self.known_hosts_line() + "\n")
        path.chmod(0o600)
        return path

    def host_key_fingerprint(self) -> str:
        """SHA256:… of the host key, as ssh-keygen -l shows it."""
        out = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.root / "host_ed25519")])
        return out.split()[1]

    # -- repositories ------------------------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        return self.repos / (name if name.endswith(".git") else f"{name}.git")

    def url(self, name: str) -> str:
        return f"ssh://{GIT_USER}@{HOST}:{self.port}{self.repo_path(name)}"

    def create_repo(self, name: str, from_repo: Path | None = None,
                    branch: str = "main") -> str:
        """A bare repository (writable by the test and over SSH), filled from `from_repo`'s
        branches and tags if given, with HEAD on `from_repo`'s current branch; returns its URL."""
        path = self.repo_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "-q", "--bare", "--shared=0666", "-b", branch, str(path)])
        if from_repo is not None:
            self.update_repo(name, from_repo)
        return self.url(name)

    def update_repo(self, name: str, from_repo: Path) -> None:
        """Force-push every branch and tag of `from_repo` (a push straight to the disk)."""
        push_everything(from_repo, self.repo_path(name))

    def log_text(self) -> str:
        log = self.root / "sshd.log"
        return log.read_text(errors="replace") if log.exists() else ""

    # -- internals ---------------------------------------------------------------------------

    def _keys(self) -> list[str]:
        lines = self.authorized_keys.read_text().splitlines()
        return [line.removeprefix("restrict ") for line in lines if line.strip()]

    def _write_keys(self, keys: list[str]) -> None:
        # `restrict`: no pty, no forwarding; git-shell (the login shell) limits the commands.
        tmp = self.authorized_keys.with_suffix(".tmp")
        tmp.write_text("".join(f"restrict {key}\n" for key in keys))
        tmp.chmod(0o644)
        tmp.replace(self.authorized_keys)

    def _generate_host_key(self) -> None:
        key = self.root / "host_ed25519"
        make_key_pair(self.root, key.name, comment="sshgit-host")

    def _write_config(self, port: int) -> None:
        (self.root / "sshd_config").write_text(f"""\
Port {port}
ListenAddress {HOST}
HostKey {self.root / "host_ed25519"}
PidFile none
AuthorizedKeysFile {self.authorized_keys}
StrictModes no
AllowUsers {GIT_USER}
PermitRootLogin no
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
LogLevel VERBOSE
# Newer Git refuses repositories owned by another user; ours are root's, served to `git`.
SetEnv GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0=*
""")


@dataclass(frozen=True)
class SshGit:
    """A started server with one authorized client key and a known_hosts pinning the server."""

    server: SshGitServer
    key: KeyPair
    known_hosts: Path

    @property
    def auth(self) -> source.GitAuth:
        return source.GitAuth(self.key.private, self.known_hosts)


@pytest.fixture
def ssh_git_server() -> Iterator[SshGitServer]:
    with SshGitServer() as server:
        yield server


@pytest.fixture
def ssh_git(ssh_git_server: SshGitServer, tmp_path: Path) -> SshGit:
    key = make_key_pair(tmp_path / "client-key", comment="sshgit-client")
    ssh_git_server.add_key(key.public)
    known_hosts = ssh_git_server.write_known_hosts(tmp_path / "known_hosts")
    return SshGit(ssh_git_server, key, known_hosts)


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _check_reachable_by(path: Path, account: pwd.struct_passwd) -> None:
    for directory in [path, *path.parents]:
        info = directory.stat()
        if info.st_uid != account.pw_uid and not info.st_mode & 0o001:
            raise RuntimeError(f"{directory} is not searchable by user {GIT_USER!r}; give "
                               "SshGitServer a base_dir every user can traverse (default /tmp)")


def _die_with_parent() -> None:
    """In the forked child: SIGTERM when the test process dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_for_banner(port: int, process: subprocess.Popen, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as conn:
            conn.settimeout(2)
            if conn.recv(64).startswith(b"SSH-2.0-"):
                return True
        time.sleep(0.05)
    return False


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _terminate(process: subprocess.Popen) -> None:
    """End sshd and the per-connection sshd processes it forked (they start own sessions)."""
    if process.poll() is None:
        sessions = _children(process.pid)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _cleanup(root: Path, processes: list[subprocess.Popen | None]) -> None:
    for process in processes:
        if process is not None:
            _terminate(process)
    shutil.rmtree(root, ignore_errors=True)
