"""Chart archives from OCI registries, through `helm pull` in the clean environment.

The chart reference is `oci://host/path/chart`; the version a tag or a semver range, which helm
resolves against the registry's tags. The archive is kept under the cache directory by the
reference's hash and the manifest digest helm reports, and the versions seen per reference
are recorded so `--offline` can resolve a range from the cache alone. Credentials reach helm
only as the registry config file of its private scratch directory (never argv, never the
user's ~/.config/helm); `--ca-file` is passed on; `insecure` sources use plain HTTP.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from sync_agent.helm import binary, process, semver
from sync_agent.helm.context import HelmSettings
from sync_agent.helm.fetch import ChartFetchError, FetchedChart, _key, cache_dir

TIMEOUT = 120
MAX_OUTPUT = 1024 * 1024  # helm pull prints a few lines; the archive goes to a file
_DIGEST = re.compile(r"Digest:\s*(sha256:[0-9a-f]{64})")


def fetch(reference: str, constraint: str, settings: HelmSettings,
          plain_http: bool = False) -> FetchedChart:
    """The archive for `reference` (oci://host/path/chart) at `constraint` ("" = latest)."""
    name = reference.rstrip("/").rsplit("/", 1)[-1]
    seen_file = cache_dir() / "oci" / f"{_key(reference)}.json"
    seen = json.loads(seen_file.read_text()) if seen_file.is_file() else {}
    if settings.offline:
        version = semver.best(constraint or "*", list(seen))
        if version is None or not (cache_dir() / "oci" / seen[version]).is_file():
            raise ChartFetchError(f"--offline: no version of {reference} matching "
                                  f"{constraint or '*'!r} is in the cache; run once without "
                                  "--offline to fill it")
        return FetchedChart(cache_dir() / "oci" / seen[version], name, version, reference)
    target_dir = cache_dir() / "oci"
    target_dir.mkdir(parents=True, exist_ok=True)
    archive, version, digest = _pull(reference, constraint, settings, plain_http, target_dir)
    target = target_dir / f"{_key(reference)}-{digest.removeprefix('sha256:')}.tgz"
    archive.replace(target)
    seen[version] = target.name
    seen_file.write_text(json.dumps(seen, indent=1, sort_keys=True))
    return FetchedChart(target, name, version, reference)


def _pull(reference: str, constraint: str, settings: HelmSettings, plain_http: bool,
          into: Path) -> tuple[Path, str, str]:
    """`helm pull`: the archive (moved into `into` under a temporary name), its version and
    the manifest digest helm reports."""
    helm = binary.helm_path()
    if helm is None:
        raise ChartFetchError("helm is not built; run `gitops-restore cluster-bin`")
    with tempfile.TemporaryDirectory(prefix="gitops-restore-oci-") as scratch:
        work = Path(scratch)
        out = work / "out"
        out.mkdir()
        args = ["pull", reference, "--destination", str(out)]
        args += ["--version", constraint] if constraint and constraint != "*" else []
        args += ["--ca-file", str(settings.ca_file)] if settings.ca_file else []
        args += ["--plain-http"] if plain_http else []
        env = process.environment(work)
        _write_registry_config(Path(env["HELM_REGISTRY_CONFIG"]), reference, settings)
        try:
            done = process.run(helm, args, work, TIMEOUT, MAX_OUTPUT)
        except subprocess.TimeoutExpired:
            raise ChartFetchError(f"helm pull did not finish in {TIMEOUT}s") from None
        if done.returncode != 0:
            raise ChartFetchError(done.stderr.strip().removeprefix("Error: ")[-1500:])
        archives = list(out.glob("*.tgz"))
        digest = _DIGEST.search(done.stdout + done.stderr)
        if len(archives) != 1 or digest is None:
            raise ChartFetchError("helm pull gave no chart archive with a digest")
        name = reference.rstrip("/").rsplit("/", 1)[-1]
        version = archives[0].name.removesuffix(".tgz").removeprefix(f"{name}-")
        kept = into / f".pull-{_key(reference)}-{digest.group(1)[7:19]}.tgz"
        shutil.move(archives[0], kept)
        return kept, version, digest.group(1)


def _write_registry_config(path: Path, reference: str, settings: HelmSettings) -> None:
    if settings.password is None:
        return
    host = urlsplit(reference.replace("oci://", "https://", 1)).netloc
    token = base64.b64encode(f"{settings.username or ''}:{settings.password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    path.chmod(0o600)
