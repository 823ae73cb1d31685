"""Fetching charts from a real chart repository over HTTPS (no cluster): version ranges,
the cache by URL and digest, --offline, credentials and certificate checks."""

from __future__ import annotations

import pytest

from sync_agent.helm import fetch
from sync_agent.helm.context import HelmSettings
from tests.helmrepo import ChartRepoServer, make_chart


@pytest.fixture
def private_cache(clone_cache):
    """Where charts are cached inside the test's private cache (conftest's clone_cache)."""
    return clone_cache / "helm"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("charts")
    with ChartRepoServer(base) as repo:
        for version in ("1.0.0", "1.1.0", "2.0.0-rc.1"):
            repo.publish(make_chart(base / "src", "web", version))
        yield repo


def settings(server: ChartRepoServer, **overrides) -> HelmSettings:
    values = dict(ca_file=server.ca_file, username=server.username, password=server.token)
    return HelmSettings(**{**values, **overrides})


def test_a_range_picks_the_highest_release_and_caches_it_by_digest(server, private_cache):
    got = fetch.fetch(server.url, "web", "1.x", settings(server))
    assert got.version == "1.1.0" and got.url == f"{server.url}/web-1.1.0.tgz"
    assert got.archive.parent == private_cache / "charts" and got.archive.stat().st_size > 0
    asked = len(server.requests)
    again = fetch.fetch(server.url, "web", "1.x", settings(server))
    assert again.archive == got.archive
    assert [path for path, _ in server.requests[asked:]] == ["/charts/index.yaml"]


def test_offline_needs_nothing_but_the_cache(server, private_cache):
    fetch.fetch(server.url, "web", "~1.0", settings(server))
    asked = len(server.requests)
    got = fetch.fetch(server.url, "web", "~1.0", HelmSettings(offline=True))
    assert got.version == "1.0.0" and len(server.requests) == asked
    with pytest.raises(fetch.ChartFetchError, match="--offline: .*web-1.1.0.tgz is not in the"):
        fetch.fetch(server.url, "web", "1.1.0", HelmSettings(offline=True))


def test_wrong_credentials_and_an_untrusted_certificate_are_refused(server, private_cache):
    with pytest.raises(fetch.ChartFetchError, match="index.yaml: HTTP 401"):
        fetch.fetch(server.url, "web", "*", settings(server, password="wrong"))
    with pytest.raises(fetch.ChartFetchError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch.fetch(server.url, "web", "*", settings(server, ca_file=None))


def test_a_tampered_archive_fails_its_digest(server, private_cache, tmp_path):
    got = fetch.fetch(server.url, "web", "1.0.0", settings(server))
    archive = server.site / "charts" / "web-1.0.0.tgz"
    original = archive.read_bytes()
    try:
        got.archive.unlink()
        archive.write_bytes(original + b"tampered")
        with pytest.raises(fetch.ChartFetchError, match="does not match the index's digest"):
            fetch.fetch(server.url, "web", "1.0.0", settings(server))
    finally:
        archive.write_bytes(original)


def test_prereleases_only_when_asked_and_unknown_charts_named(server, private_cache):
    assert fetch.fetch(server.url, "web", "*", settings(server)).version == "1.1.0"
    assert fetch.fetch(server.url, "web", ">=2.0.0-0", settings(server)).version == "2.0.0-rc.1"
    with pytest.raises(fetch.ChartFetchError, match="lists no chart 'api'"):
        fetch.fetch(server.url, "api", "*", settings(server))
