"""A forge API that redirects never gets the token sent to another host or over plain http.

Real local HTTP(S) servers: `api` plays the forge and answers with redirects, `elsewhere`
records whatever reaches it. Registration (bootstrap.deploy_key_forge) follows a redirect only
for a read on the same scheme, host and port (a renamed repository); anything else stops with
an error that says the token was not sent.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bootstrap.deploy_key_forge import Forge, ForgeKeys
from bootstrap.errors import UserError
from tests.httpsgit import make_ca

TOKEN = "ghp_redirect-test-token-0123456789"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGSq6kUdQn4v8y4QYfWdJ9kq6oGzX1tq0oXkVt9I6Jxr"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Server:
    """Answers each path from `routes` (status, headers, JSON body); 404 otherwise."""

    tls: ssl.SSLContext | None = None
    routes: dict[tuple[str, str], tuple[int, dict[str, str], object]] = field(
        default_factory=dict)
    seen: list[Recorded] = field(default_factory=list)

    def start(self) -> Server:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.seen.append(Recorded(self.command, self.path, headers))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, extra, body = server.routes.get(
                    (self.command, self.path), (404, {}, {"message": "Not Found"}))
                raw = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **extra}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_POST = do_DELETE = do_GET

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls:
            self.http.socket = self.tls.wrap_socket(self.http.socket, server_side=True)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def api() -> Iterator[Server]:
    server = Server().start()
    yield server
    server.close()


@pytest.fixture
def elsewhere() -> Iterator[Server]:
    server = Server().start()
    yield server
    server.close()


@pytest.fixture
def tls_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """The forge over HTTPS, its certificate signed by a CA the client is told to trust."""
    ca = make_ca(tmp_path / "ca")
    chain, key = ca.issue_server_cert(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert_file))
    server = Server(tls=context).start()
    yield server
    server.close()


LIST = ("GET", "/repos/acme/fleet/keys?per_page=100")


def github(api: Server) -> ForgeKeys:
    return ForgeKeys(Forge("github", "acme/fleet", TOKEN, api_url=api.url))


def test_a_redirect_to_another_host_is_not_followed_and_the_token_stays(
        api: Server, elsewhere: Server) -> None:
    api.routes[LIST] = (301, {"Location": f"{elsewhere.url}/repos/acme/fleet/keys"}, {})
    with pytest.raises(UserError) as caught:
        github(api).check("gitops-restore-fleet", KEY, rotate=False)
    message = str(caught.value)
    assert "redirected (HTTP 301)" in message and "the token was not sent" in message
    assert TOKEN not in message
    assert elsewhere.seen == []
    assert [r.headers["authorization"] for r in api.seen] == [f"Bearer {TOKEN}"]


def test_a_redirect_from_https_to_plain_http_is_not_followed(
        tls_api: Server, elsewhere: Server) -> None:
    tls_api.routes[LIST] = (302, {"Location": f"{elsewhere.url}/repos/acme/fleet/keys"}, {})
    with pytest.raises(UserError, match="redirected .* to http://127.0.0.1"):
        github(tls_api).check("gitops-restore-fleet", KEY, rotate=False)
    assert len(tls_api.seen) == 1  # the HTTPS request itself went through
    assert elsewhere.seen == []


def test_a_next_page_on_another_host_is_not_fetched(api: Server, elsewhere: Server) -> None:
    link = f'<{elsewhere.url}/repos/acme/fleet/keys?page=2>; rel="next"'
    api.routes[LIST] = (200, {"Link": link}, [])
    with pytest.raises(UserError, match="another host or scheme"):
        github(api).check("gitops-restore-fleet", KEY, rotate=False)
    assert elsewhere.seen == []


def test_a_write_that_is_redirected_is_not_resent(api: Server) -> None:
    # urllib would turn a redirected POST into a GET without its body: refused instead.
    api.routes[("POST", "/repos/acme/fleet/keys")] = (
        301, {"Location": f"{api.url}/repos/acme/renamed/keys"}, {})
    with pytest.raises(UserError, match="POST /repos/acme/fleet/keys: the API redirected"):
        github(api).add("gitops-restore-fleet", KEY)
    assert [(r.method, r.path) for r in api.seen] == [("POST", "/repos/acme/fleet/keys")]


def test_a_read_redirected_on_the_same_host_is_followed(api: Server) -> None:
    # GitHub answers a renamed repository with a 301 to its new path.
    entry = {"id": 7, "title": "gitops-restore-fleet", "key": KEY}
    api.routes[LIST] = (301, {"Location": "/repos/acme/renamed/keys?per_page=100"}, {})
    api.routes[("GET", "/repos/acme/renamed/keys?per_page=100")] = (200, {}, [entry])
    assert github(api).check("gitops-restore-fleet", KEY, rotate=False) == (7, [])
    assert [r.path for r in api.seen] == [LIST[1], "/repos/acme/renamed/keys?per_page=100"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in api.seen)
