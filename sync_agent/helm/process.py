"""How helm and helm-renderer run: `child_process`'s clean environment and bounded run, plus
helm's own dirs.

On top of the allow-listed environment and empty HOME every renderer's program gets, helm
reads its repositories, registry logins, plugins and caches from HELM_* directories: each run
gets private ones under its scratch directory, so a chart from an untrusted repository sees
none of the operator's helm setup, and nothing a run writes is kept.
"""

from __future__ import annotations

from pathlib import Path

from sync_agent import child_process


def environment(scratch: Path) -> dict[str, str]:
    dirs = {name: scratch / name for name in ("home", "cache", "config", "data", "plugins")}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
    return {
        **child_process.environment(dirs["home"]),
        "HELM_CACHE_HOME": str(dirs["cache"]),
        "HELM_CONFIG_HOME": str(dirs["config"]),
        "HELM_DATA_HOME": str(dirs["data"]),
        "HELM_PLUGINS": str(dirs["plugins"]),
        "HELM_REGISTRY_CONFIG": str(dirs["config"] / "registry.json"),
        "HELM_REPOSITORY_CONFIG": str(dirs["config"] / "repositories.yaml"),
        "HELM_REPOSITORY_CACHE": str(dirs["cache"] / "repository"),
        "KUBECONFIG": "/dev/null",
        # helm lives ~0.1 s, mostly initialising: no collection until 1 GiB saves a third of
        # its CPU, and the soft limit still bounds what a hostile chart can make it hold. The
        # renderer lives about as long for 20 releases and gains less (20 `helm create`
        # releases: 0.067 s of CPU, 0.076 s with Go's default collector; 46 MB at most).
        "GOGC": "off",
        "GOMEMLIMIT": "1GiB",
    }


def run(helm: Path, args: list[str], scratch: Path, timeout: float, max_stdout: int,
        stdin: bytes = b"") -> child_process.Finished:
    """helm, or the renderer linking its packages. Raises subprocess.TimeoutExpired, as
    `child_process.run`."""
    return child_process.run([str(helm), *args], cwd=scratch, env=environment(scratch),
                             timeout=timeout, max_stdout=max_stdout, stdin=stdin)
