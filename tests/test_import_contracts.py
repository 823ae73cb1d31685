"""The HTTP part of the import contracts, which import-linter cannot state on its own.

pyproject.toml's contracts (run by `lint-imports`) let only sync_agent.kube and
sync_agent.transport import the API server's client (kubernetes, pycurl). import-linter sees
the standard library's `urllib` and `http` each as one package, though, and `urllib.parse` is
used everywhere; so which modules make HTTP requests of their own is checked here, on the same
import graph (grimp, import-linter's own): each is named with the peer it talks to, and none of
them is the API server.
"""

from __future__ import annotations

import re

import grimp
import pytest

# module -> the peer it talks HTTP to
HTTP_CLIENTS = {
    "sync_agent.helm.fetch": "Helm chart repositories (index.yaml, chart archives)",
    "bootstrap.deploy_key_forge": "Git forges' deploy-key APIs (GitHub, GitLab, Gitea)",
    "bootstrap.binaries": "the Go module proxy (go.mod files of the control-plane builds)",
}
_HTTP_CLIENT_IMPORT = re.compile(
    r"^\s*(?:import\s+(?:urllib\.request|http\.client)\b"
    r"|from\s+(?:urllib\.request|http\.client)\s+import\b"
    r"|from\s+(?:urllib\s+import\s+.*\brequest\b|http\s+import\s+.*\bclient\b))")
# kubernetes and pycurl are in pyproject.toml; a protected contract cannot name a package
# that nothing imports yet, so these are checked here.
_OTHER_HTTP_LIBRARIES = ("urllib3", "requests", "httpx", "aiohttp")
_API_CLIENT_MODULES = {"sync_agent.kube", "sync_agent.transport"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("bootstrap", "sync_agent", include_external_packages=True)


def http_client_importers(graph: grimp.ImportGraph) -> set[str]:
    found = set()
    for package in ("urllib", "http"):
        if package not in graph.modules:
            continue
        for importer in graph.find_modules_that_directly_import(package):
            lines = [d["line_contents"]
                     for d in graph.get_import_details(importer=importer, imported=package)]
            if any(_HTTP_CLIENT_IMPORT.match(line) for line in lines):
                found.add(importer)
    return found


def test_only_the_listed_modules_make_http_requests_with_urllib(graph):
    assert http_client_importers(graph) == set(HTTP_CLIENTS)


def test_other_http_libraries_are_imported_only_by_the_api_servers_client(graph):
    for library in _OTHER_HTTP_LIBRARIES:
        if library in graph.modules:
            importers = graph.find_modules_that_directly_import(library)
            assert importers <= _API_CLIENT_MODULES, f"{library} imported by {importers}"


def test_the_check_sees_every_spelling_of_an_http_client_import():
    spellings = ["import urllib.request", "from urllib.request import urlopen",
                 "from urllib import parse, request", "import http.client",
                 "from http import client"]
    assert all(_HTTP_CLIENT_IMPORT.match(line) for line in spellings)
    harmless = ["from urllib.parse import urlsplit", "import urllib.parse",
                "from http.server import ThreadingHTTPServer", "import urllib.error"]
    assert not any(_HTTP_CLIENT_IMPORT.match(line) for line in harmless)
