"""The Git credentials of a Sync, from its Secret to what git reads, for the time of one sync.

For SSH, the Secret (`<name>-deploy-key` beside the Sync, written by `gitops-restore
deploy-key` / `bootstrap`) holds `identity` (the private key), `identity.pub` and
`known_hosts` (the pinned host keys). `materialize` writes identity and known_hosts to 0600
files in a 0700 temporary directory, yields the `source.GitAuth` that points ssh at them
(source.ssh_command adds StrictHostKeyChecking=yes and IdentitiesOnly), and removes them
afterwards. For HTTPS (Flux's convention) it holds `username` and `password` (the token) and
optionally `ca.crt`; the token then reaches git only through the askpass helper (git_https),
never the Sync object, a URL or a file. The Secret is read again on every sync, so a rotated
key, token or host key takes effect without a restart. Key material never reaches a log line,
an Event, the status or an exception message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sync_agent import source
from sync_agent.agent import secretref
from sync_agent.errors import Unavailable
from sync_agent.kube import Kube

IDENTITY, PUBLIC, KNOWN_HOSTS = "identity", "identity.pub", "known_hosts"
USERNAME, PASSWORD, CA = "username", "password", "ca.crt"  # HTTPS, as Flux's Secrets


class DeployKeyError(Unavailable):
    """The deploy-key Secret is missing or incomplete; the message says which and how to fix."""


def secret_name(sync: str) -> str:
    """The default deploy-key Secret of a Sync."""
    return f"{sync}-deploy-key"


@contextmanager
def materialize(kube: Kube, namespace: str, name: str) -> Iterator[source.GitAuth]:
    """GitAuth for the Secret `namespace/name`, valid inside the `with` block."""
    data = _read(kube, namespace, name)
    directory = Path(tempfile.mkdtemp(prefix="gitops-restore-key-"))  # mkdtemp: mode 0700
    try:
        if USERNAME in data or PASSWORD in data:
            ca = _write(directory / "ca.crt", data[CA]) if data.get(CA) else None
            username, password = (data.get(k, b"").decode("utf-8", "replace").strip()
                                  for k in (USERNAME, PASSWORD))
            yield source.GitAuth(ca_file=ca, username=username or None, password=password)
            return
        identity = _write(directory / "identity", data[IDENTITY])
        known = _write(directory / "known_hosts", data[KNOWN_HOSTS])
        yield source.GitAuth(ssh_key=identity, known_hosts=known)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _read(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    data = secretref.read(kube, namespace, name, DeployKeyError, "the deploy key",
                          "create it with `gitops-restore deploy-key` or point "
                          "spec.secretRef.name at the Secret holding the key")
    https = USERNAME in data or PASSWORD in data
    missing = [k for k in (IDENTITY, KNOWN_HOSTS) if not data.get(k)]
    if missing and not https:
        raise DeployKeyError(f"Secret {namespace}/{name}: key {' and '.join(missing)} is missing "
                             f"or empty; the Secret needs '{IDENTITY}' (private key) and "
                             f"'{KNOWN_HOSTS}' (the Git server's pinned host keys) for SSH, or "
                             f"'{USERNAME}' and '{PASSWORD}' (the token) for HTTPS")
    wanted = (USERNAME, PASSWORD, CA) if https else (IDENTITY, KNOWN_HOSTS)
    return {k: data[k] for k in wanted if k in data}


def _write(path: Path, content: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content if content.endswith(b"\n") else content + b"\n")
    return path
