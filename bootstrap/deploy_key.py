"""Deploy keys: an SSH key pair that lets the sync agent read one Git repository, with the Git
server's host key pinned beside it, kept in a Secret in the agent's namespace.

Called by `gitops-restore deploy-key` and by `bootstrap`. The in-cluster agent does not import
this module (bootstrap imports sync_agent, never the reverse): it reads the same Secret itself
(sync_agent.agent.deploykey); its keys `identity`, `identity.pub` and `known_hosts` are the
names Flux uses. Registering the public key with GitHub or GitLab is `deploy_key_forge`'s job.

The private key stays in memory and in the Secret: it never reaches a message, and a file that
holds it is 0600 in a 0700 directory, removed after use. Host key checking is never disabled:
the host key comes from the user's known_hosts, or from a scan whose SHA256 fingerprint the
user confirmed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bootstrap import deploy_key_forge as forges
from bootstrap.errors import OperationFailed, UserError
from sync_agent import git_process, source
from sync_agent.conventions import (
    DEPLOY_KEY_LABEL,
    FINGERPRINT_ANNOTATION,
    NAMESPACE,
    NAMESPACE_RT,
    REPO_ANNOTATION,
    SECRET_RT,
    managed_labels,
)
from sync_agent.kube import ApiError, Kube

SCAN_TYPES = "ed25519,ecdsa,rsa"  # also the order in which a prompt offers them
NOTHING_CHANGED = "; nothing was changed"

# confirm(host, fingerprint, key type) -> accepted; asked only when no fingerprint was given.
Confirm = Callable[[str, str, str], bool]


@dataclass(frozen=True)
class SshTarget:
    """Where an SSH Git URL points: the host and port a known_hosts entry is for."""

    host: str
    port: int = 22

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class DeployKey:
    """A key pair and the pinned host keys, as stored in the Secret."""

    name: str
    identity: bytes = field(repr=False)  # the private key (OpenSSH or PEM format)
    public_key: str  # one line: "ssh-ed25519 AAAA… comment"
    known_hosts: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    @contextmanager
    def git_auth(self) -> Iterator[source.GitAuth]:
        """The key and known_hosts as 0600 files in a private temporary directory, for Git."""
        directory = Path(tempfile.mkdtemp(prefix="gitops-restore-key-"))  # mode 0700
        try:
            identity, known_hosts = directory / "identity", directory / "known_hosts"
            write_private(identity, self.identity)
            write_private(known_hosts, self.known_hosts.encode())
            yield source.GitAuth(identity, known_hosts)
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class DeployKeyRequest:
    repo: str  # ssh://git@host[:port]/path.git or git@host:path.git
    name: str = "default"  # the Secret is `<name>-deploy-key`, the forge key's title
    # `gitops-restore-<name>`
    known_hosts_file: Path | None = None  # pin the host key from this file, or else ...
    accept_host_key: str | None = None  # ... scan it and accept it if it has this SHA256
    private_key_file: Path | None = None  # use this key pair instead of a new ed25519 one
    rotate: bool = False  # replace an existing Secret (and the forge key of the same title)
    forge: forges.Forge | None = None  # register the public key there, read-only


@dataclass(frozen=True)
class DeployKeyResult:
    key: DeployKey
    secret: str  # namespace/name
    host_fingerprints: tuple[str, ...]
    replaced: bool  # an existing Secret held another key
    registration: forges.Registration | None = None
    stored: bool = True  # False: the Secret already held exactly this key and host keys

    def to_json(self) -> dict:
        """Everything about the key but the private key itself."""
        registered = self.registration.to_json() if self.registration else None
        return {"name": self.key.name, "secret": self.secret,
                "public_key": self.key.public_key, "fingerprint": self.key.fingerprint,
                "host_fingerprint": self.host_fingerprints[0] if self.host_fingerprints else None,
                "host_fingerprints": list(self.host_fingerprints), "replaced": self.replaced,
                "stored": self.stored, "registered": registered}


def secret_name(name: str) -> str:
    return f"{name}-deploy-key"


def key_title(name: str) -> str:
    """The comment of a generated key and the title of its forge registration."""
    return f"gitops-restore-{name}"


def fingerprint(key: str) -> str:
    """SHA256:… of a public key ("type base64 [comment]", or the base64 alone), as ssh shows."""
    blob = key.split()[1] if " " in key.strip() else key.strip()
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def write_private(path: Path, data: bytes) -> None:
    """Write a new file that only its owner can read (0600 from the first byte)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def parse_ssh_url(url: str) -> SshTarget:
    """The host and port of ssh://[user@]host[:port]/path or scp-like [user@]host:path."""
    shown = source.redact(url)
    if url.startswith(("ssh://", "git+ssh://", "ssh+git://")):
        parts = urlsplit(url)
        try:
            port = parts.port or 22
        except ValueError:
            raise UserError(f"{shown}: the port is not a number") from None
        if parts.hostname:
            return SshTarget(parts.hostname, port)
    elif "://" not in url and (match := re.fullmatch(r"(?:[^@/:]+@)?([^@/:]+):(?!//).+", url)):
        return SshTarget(match.group(1))
    raise UserError(f"{shown}: a deploy key is for an SSH remote; give ssh://git@host[:port]/"
                    "path.git or git@host:path.git")


def generate_key(name: str) -> DeployKey:
    """A new ed25519 key pair, in memory (no file ever holds the new private key)."""
    private = ed25519.Ed25519PrivateKey.generate()
    identity = private.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.OpenSSH,
                                     serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
    return DeployKey(name, identity, f"{public} {key_title(name)}", "")


def load_key_file(name: str, path: Path) -> DeployKey:
    """An existing, unencrypted key pair: FILE, and FILE.pub if present (else derived)."""
    try:
        identity = path.read_bytes()
    except OSError as e:
        raise UserError(f"--private-key-file {path}: cannot read it: {e.strerror}") from None
    try:
        if b"OPENSSH PRIVATE KEY" in identity:
            private = serialization.load_ssh_private_key(identity, password=None)
        else:
            private = serialization.load_pem_private_key(identity, password=None)
        public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH).decode()
    except (ValueError, TypeError, AttributeError, UnsupportedAlgorithm):
        # The library's message is dropped on purpose: nothing about the key's bytes may leak.
        raise UserError(f"--private-key-file {path}: not an unencrypted SSH private key "
                        "(ed25519, ECDSA or RSA; remove a passphrase with ssh-keygen -p)"
                        ) from None
    comment = key_title(name)
    pub_file = path.with_name(path.name + ".pub")
    if pub_file.is_file():
        fields = pub_file.read_text().split()
        if fields[:2] != public.split()[:2]:
            raise UserError(f"{pub_file}: this public key does not belong to {path}")
        comment = " ".join(fields[2:]) or comment
    return DeployKey(name, identity if identity.endswith(b"\n") else identity + b"\n",
                     f"{public} {comment}", "")


def pin_host_key(repo: str, known_hosts_file: Path | None = None,
                 accept_host_key: str | None = None, confirm: Confirm | None = None) -> str:
    """known_hosts text pinning the server of `repo`: its entries in `known_hosts_file`, or
    the scanned key whose fingerprint is `accept_host_key` (or that `confirm` accepted)."""
    target = parse_ssh_url(repo)
    where = target.known_hosts_name
    if known_hosts_file is not None:
        if not known_hosts_file.is_file():
            raise UserError(f"--known-hosts {known_hosts_file}: no such file")
        found = _run(["ssh-keygen", "-F", where, "-f", str(known_hosts_file)])
        lines = [line for line in found.splitlines() if line and not line.startswith("#")]
        if not lines:
            raise UserError(f"--known-hosts {known_hosts_file}: no entry for {where} (for a "
                            "port other than 22 the entry must read [host]:port)")
        return "\n".join(lines) + "\n"
    scanned = scan_host_keys(target)
    if accept_host_key:
        wanted = "SHA256:" + accept_host_key.strip().removeprefix("SHA256:").rstrip("=")
        lines = [line for line in scanned if fingerprint(" ".join(line.split()[1:])) == wanted]
        if not lines:
            raise UserError(f"{where}: the server's host key is {_offered(scanned)}, not "
                            f"{wanted}: refusing it{NOTHING_CHANGED}. Check with the server's "
                            "operator which key is right")
        return "\n".join(lines) + "\n"
    line = scanned[0]
    kind, shown = line.split()[1], fingerprint(" ".join(line.split()[1:]))
    if confirm is not None and confirm(where, shown, kind):
        return line + "\n"
    raise UserError(f"{where} presents host key {shown} ({kind}); check that fingerprint with "
                    f"the server's operator, then pass --accept-host-key {shown} (or "
                    f"--known-hosts FILE){NOTHING_CHANGED}")


def scan_host_keys(target: SshTarget) -> list[str]:
    """The server's host keys as known_hosts lines, ed25519 first."""
    args = ["ssh-keyscan", "-T", "10", "-p", str(target.port), "-t", SCAN_TYPES, target.host]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        done = subprocess.CompletedProcess(args, 1, "", "")
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    if not lines:
        raise UserError(f"{target.known_hosts_name}: no SSH host key could be read (is the "
                        f"server reachable on port {target.port}?){NOTHING_CHANGED}")
    order = [f"ssh-{t}" if t != "ecdsa" else "ecdsa" for t in SCAN_TYPES.split(",")]
    return sorted(lines, key=lambda line: next(
        (i for i, t in enumerate(order) if line.split()[1].startswith(t)), len(order)))


def host_fingerprints(known_hosts: str) -> tuple[str, ...]:
    keys = [line.split() for line in known_hosts.splitlines() if line.strip()]
    keys = [k[1:] if k[0].startswith("@") else k for k in keys]
    return tuple(fingerprint(" ".join(k[1:3])) for k in keys if len(k) >= 3)


def create_deploy_key(kube: Kube, request: DeployKeyRequest, confirm: Confirm | None = None,
                      log: Callable[[str], None] = lambda line: None) -> DeployKeyResult:
    """Make (or take) a key pair, pin the host key, register the key with the forge if asked,
    and store all in the Secret. Everything that can be refused is checked before the first
    change; with `rotate`, the new key is registered before the old one is removed."""
    secret = secret_name(request.name)
    parse_ssh_url(request.repo)
    keys = forges.ForgeKeys(request.forge) if request.forge else None
    existing = _read_secret(kube, secret)
    if existing is not None and not request.rotate and request.private_key_file is None:
        raise UserError(f"Secret {NAMESPACE}/{secret} already holds deploy key "
                        f"{existing.fingerprint}; pass --rotate to replace it{NOTHING_CHANGED}")
    known_hosts = pin_host_key(request.repo, request.known_hosts_file,
                               request.accept_host_key, confirm)
    key = (load_key_file(request.name, request.private_key_file) if request.private_key_file
           else generate_key(request.name))
    key = DeployKey(key.name, key.identity, key.public_key, known_hosts)
    same = existing is not None and (existing.identity, existing.known_hosts) == (
        key.identity, key.known_hosts)
    if existing is not None and not same and not request.rotate:
        raise UserError(f"Secret {NAMESPACE}/{secret} already holds deploy key "
                        f"{existing.fingerprint} (or other host keys); pass --rotate to "
                        f"replace it{NOTHING_CHANGED}")
    registration, stale = None, []
    if keys is not None:
        registration, stale = forges.register(keys, key_title(request.name), key.public_key,
                                              request.rotate, log)
    if not same:  # the same key and host keys again: the Secret already says it all
        try:
            _store(kube, key, request.repo)
        except OperationFailed as e:
            if keys is None or registration is None or not registration.created:
                raise
            raise OperationFailed(f"{e}. The new key (id {registration.key_id}) is already "
                                  f"registered on {keys.forge.label}; rerun with --rotate"
                                  ) from None
        log(f"stored in Secret {NAMESPACE}/{secret}")
    if keys is not None and registration is not None:
        registration = forges.remove_old(keys, registration, stale, log)
    return DeployKeyResult(key, f"{NAMESPACE}/{secret}", host_fingerprints(known_hosts),
                           replaced=existing is not None and not same, registration=registration,
                           stored=not same)


def load_deploy_key(kube: Kube, name: str) -> DeployKey:
    """The deploy key stored under `name`; a clear error when there is none."""
    key = _read_secret(kube, secret_name(name))
    if key is None:
        raise UserError(f"Secret {NAMESPACE}/{secret_name(name)} does not exist: create "
                        "the deploy key with `gitops-restore deploy-key create --deploy-key "
                        f"{name} --repo URL`")
    return key


def wait_until_accepted(url: str, key: DeployKey, timeout: float = 600, interval: float = 5,
                        log: Callable[[str], None] = lambda line: None) -> None:
    """Try `git ls-remote` over SSH with the key until the server accepts it.

    A changed host key fails at once; a refused key is retried until `timeout` (seconds).
    """
    deadline = time.monotonic() + timeout
    with key.git_auth() as auth:
        env = {"GIT_SSH_COMMAND": source.ssh_command(auth), "GIT_TERMINAL_PROMPT": "0"}
        while True:
            done = git_process.run(["ls-remote", "--", url, "HEAD"], env, source.redact(url),
                                   "read HEAD of")
            if done.returncode == 0:
                return
            reason = ssh_failure(done.stderr)
            if "host key" in reason.lower() or "HOST IDENTIFICATION" in done.stderr:
                raise UserError(f"{source.redact(url)}: {reason}; the server's host key does "
                                "not match the pinned known_hosts (check with its operator)")
            if time.monotonic() + interval > deadline:
                raise OperationFailed(f"{source.redact(url)}: deploy key {key.fingerprint} was "
                                      f"not accepted within {timeout:.0f}s ({reason}); add it "
                                      "to the repository as a read-only deploy key")
            log(f"waiting for the server to accept deploy key {key.fingerprint} ({reason})")
            time.sleep(interval)


def ssh_failure(stderr: str) -> str:
    """The line of Git/ssh error output that says why, e.g. Permission denied (publickey)."""
    return source.git_failure(stderr) or "no error output"


def _read_secret(kube: Kube, secret: str) -> DeployKey | None:
    try:
        stored = kube.get(SECRET_RT, NAMESPACE, secret)
    except ApiError as e:
        raise OperationFailed(f"Secret {NAMESPACE}/{secret}: cannot read it: HTTP "
                              f"{e.status} {e.reason}") from None
    if stored is None:
        return None
    data = stored.get("data") or {}
    if not {"identity", "identity.pub", "known_hosts"} <= data.keys():
        raise UserError(f"Secret {NAMESPACE}/{secret} exists but lacks identity, "
                        "identity.pub or known_hosts: not a deploy key")
    text = {k: base64.b64decode(v) for k, v in data.items()}
    name = secret.removesuffix("-deploy-key")
    return DeployKey(name, text["identity"], text["identity.pub"].decode().strip(),
                     text["known_hosts"].decode())


def _store(kube: Kube, key: DeployKey, repo: str) -> None:
    secret = secret_name(key.name)
    encoded = {"identity": key.identity, "identity.pub": (key.public_key + "\n").encode(),
               "known_hosts": key.known_hosts.encode()}
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret, "namespace": NAMESPACE,
                         "labels": managed_labels({DEPLOY_KEY_LABEL: key.name}),
                         "annotations": {REPO_ANNOTATION: source.redact(repo),
                                         FINGERPRINT_ANNOTATION: key.fingerprint}},
            "data": {k: base64.b64encode(v).decode() for k, v in encoded.items()}}
    store_secret(kube, body, "the deploy key")


def store_secret(kube: Kube, body: dict, what: str) -> None:
    """Apply a Secret of the agent's namespace, making the namespace first if it is missing."""
    try:
        if kube.get(NAMESPACE_RT, "", NAMESPACE) is None:
            kube.apply(NAMESPACE_RT, {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": NAMESPACE, "labels": managed_labels()}})
        kube.apply(SECRET_RT, body)
    except ApiError as e:
        # The server's message may quote the request; only status and reason are safe to show.
        raise OperationFailed(f"Secret {NAMESPACE}/{body['metadata']['name']}: cannot "
                              f"store {what}: HTTP {e.status} {e.reason or 'error'}") from None


def _offered(scanned: list[str]) -> str:
    return ", ".join(f"{fingerprint(' '.join(line.split()[1:]))} ({line.split()[1]})"
                     for line in scanned)


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode not in (0, 1):  # ssh-keygen -F: 1 means "not found"
        raise UserError(f"{args[0]} failed: {done.stderr.strip()}")
    return done.stdout
