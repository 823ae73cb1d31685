"""A clean environment for helm: no credentials, no user configuration, nothing kept.

helm reads its repositories, registry logins, plugins and kubeconfig from the user's home and
the environment; a chart rendered from an untrusted repository must see none of them. Every
run gets its own HOME and HELM_* directories under a scratch directory, PATH limited to the
system directories, KUBECONFIG pointing nowhere and no proxy or token variables.
(The engine may later share one child-environment helper; this is helm's minimal one.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def helm_env(scratch: Path) -> dict[str, str]:
    dirs = {name: scratch / name for name in ("home", "cache", "config", "data", "plugins")}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": SYSTEM_PATH,
        "HOME": str(dirs["home"]),
        "LANG": "C.UTF-8",
        "HELM_CACHE_HOME": str(dirs["cache"]),
        "HELM_CONFIG_HOME": str(dirs["config"]),
        "HELM_DATA_HOME": str(dirs["data"]),
        "HELM_PLUGINS": str(dirs["plugins"]),
        "HELM_REGISTRY_CONFIG": str(dirs["config"] / "registry.json"),
        "HELM_REPOSITORY_CONFIG": str(dirs["config"] / "repositories.yaml"),
        "HELM_REPOSITORY_CACHE": str(dirs["cache"] / "repository"),
        "KUBECONFIG": "/dev/null",
        # helm lives ~0.1 s, mostly initialising: no collection until 1 GiB saves a third of
        # its CPU, and the soft limit still bounds what a hostile chart can make it hold.
        "GOGC": "off",
        "GOMEMLIMIT": "1GiB",
    }


def run(helm: Path, args: list[str], scratch: Path, timeout: float
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], env=helm_env(scratch), cwd=scratch,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
