"""Chart archives from HTTP(S) chart repositories, cached by URL and digest.

A repository's `index.yaml` lists each chart's versions with archive URLs and sha256 digests;
the version is chosen by a semver constraint, as helm and Flux do. Archives are stored under
the cache directory by the hash of their URL and their digest, and checked against the digest;
the index is kept too, so `--offline` can resolve and render from the cache alone. Credentials
(HelmSettings) go only to the repository's own host, as a Basic Authorization header, and
never into a message or the cache's file names.
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from sync_agent import source
from sync_agent.helm import semver
from sync_agent.helm.context import HelmSettings
from sync_agent.paths import cache_root
from sync_agent.yaml_loader import YAMLSyntaxError, load_documents

TIMEOUT = 60  # seconds per request
ATTEMPTS = 3  # connection errors only
MAX_ARCHIVE = 64 * 1024 * 1024  # bytes; a chart archive larger than this is refused
MAX_INDEX = 64 * 1024 * 1024


class ChartFetchError(Exception):
    """A chart cannot be had; the message says why (the caller adds release and chart)."""


@dataclass(frozen=True)
class FetchedChart:
    archive: Path
    name: str
    version: str
    url: str  # the archive's URL, credentials removed


def cache_dir() -> Path:
    return cache_root() / "helm"


def fetch(repo_url: str, chart: str, constraint: str, settings: HelmSettings) -> FetchedChart:
    """The archive of `chart` at the highest version in `repo_url` matching `constraint`."""
    index = _index(repo_url, settings)
    entries = index.get("entries", {}).get(chart) if isinstance(index, dict) else None
    if not entries:
        raise ChartFetchError(f"the repository's index.yaml lists no chart '{chart}'")
    versions = [str(e.get("version")) for e in entries if isinstance(e, dict)]
    try:
        chosen = semver.best(constraint or "*", versions)
    except ValueError as e:
        raise ChartFetchError(f"version {constraint!r}: {e}") from None
    if chosen is None:
        raise ChartFetchError(f"no version matches {constraint!r} (the index has "
                              f"{', '.join(sorted(set(versions))) or 'none'})")
    entry = next(e for e in entries if str(e.get("version")) == chosen)
    urls = entry.get("urls") or []
    if not urls:
        raise ChartFetchError(f"the index lists no URL for {chart} {chosen}")
    url = urljoin(repo_url.rstrip("/") + "/", str(urls[0]))
    digest = str(entry.get("digest") or "")
    return FetchedChart(_archive(url, digest, repo_url, settings), chart, chosen,
                        source.redact(url))


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _index(repo_url: str, settings: HelmSettings) -> dict:
    cached = cache_dir() / "index" / f"{_key(repo_url)}.yaml"
    if settings.offline:
        if not cached.is_file():
            raise ChartFetchError("--offline: the repository's index is not in the cache "
                                  f"({cached}); run once without --offline to fill it")
        data = cached.read_bytes()
    else:
        data = _get(repo_url.rstrip("/") + "/index.yaml", repo_url, settings, MAX_INDEX)
        _write_atomically(cached, data)
    try:
        documents = load_documents(data.decode("utf-8", errors="replace"))
    except YAMLSyntaxError as e:
        raise ChartFetchError(f"index.yaml is not valid YAML: {e.problem}") from None
    return documents[0].data if documents and isinstance(documents[0].data, dict) else {}


def _archive(url: str, digest: str, repo_url: str, settings: HelmSettings) -> Path:
    cached = cache_dir() / "charts" / f"{_key(url)}-{digest or 'nodigest'}.tgz"
    if cached.is_file() and (not digest or _sha256(cached.read_bytes()) == digest):
        return cached
    if settings.offline:
        raise ChartFetchError(f"--offline: {source.redact(url)} is not in the cache; run once "
                              "without --offline to fill it")
    data = _get(url, repo_url, settings, MAX_ARCHIVE)
    if digest and _sha256(data) != digest:
        raise ChartFetchError(f"{source.redact(url)}: sha256 {_sha256(data)[:16]}… does not "
                              f"match the index's digest {digest[:16]}…")
    _write_atomically(cached, data)
    return cached


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _get(url: str, repo_url: str, settings: HelmSettings, limit: int) -> bytes:
    if not url.lower().startswith(("https://", "http://")):
        raise ChartFetchError(f"{source.redact(url)}: only http(s) chart repositories are "
                              "fetched this way")
    request = urllib.request.Request(_without_userinfo(url))
    authorization = _authorization(url, repo_url, settings)
    if authorization:
        request.add_header("Authorization", authorization)
    context = ssl.create_default_context()
    if settings.ca_file:
        context.load_verify_locations(cafile=str(settings.ca_file))
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
                data = response.read(limit + 1)
            break
        except urllib.error.HTTPError as e:
            raise ChartFetchError(f"{source.redact(url)}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            # A connection cut mid-transfer is common enough that a one-shot restore
            # retries it; a refusal (HTTP status) is an answer and is not retried.
            if attempt == ATTEMPTS:
                reason = getattr(e, "reason", e)
                raise ChartFetchError(f"{source.redact(url)}: cannot be fetched "
                                      f"({ATTEMPTS} tries): {reason}") from None
            time.sleep(0.5 * attempt)
    if len(data) > limit:
        raise ChartFetchError(f"{source.redact(url)}: larger than {limit // 2**20} MiB")
    return data


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")
                          ).geturl() if parts.hostname else url


def _authorization(url: str, repo_url: str, settings: HelmSettings) -> str | None:
    if urlsplit(url).netloc.rpartition("@")[2] != urlsplit(repo_url).netloc.rpartition("@")[2]:
        return None  # credentials for the repository's host only
    username, password = _credentials(repo_url, settings)
    if password is None:
        return None
    token = base64.b64encode(f"{username or ''}:{password}".encode()).decode()
    return f"Basic {token}"


def _credentials(repo_url: str, settings: HelmSettings) -> tuple[str | None, str | None]:
    parts = urlsplit(repo_url)
    if parts.password is not None:
        return parts.username, parts.password
    return settings.username, settings.password


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as out:
        out.write(data)
    os.replace(out.name, path)
