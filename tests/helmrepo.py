"""A real Helm chart repository over HTTPS on loopback, and charts made by the real helm.

Charts are made with `helm create` and changed as a test needs, packaged with `helm package`
and indexed with `helm repo index`, exactly as a chart publisher does; the server is the
standard library's static file server behind TLS (a throwaway CA from `httpsgit.make_ca`) and
HTTP basic auth, which is all a chart repository is. `requests` records what was asked for.

    with ChartRepoServer(tmp_path) as repo:
        repo.publish(make_chart(tmp_path / "src", "web", "1.0.0"))
        repo.url  # https://127.0.0.1:PORT/charts
"""

from __future__ import annotations

import base64
import hmac
import secrets
import shutil
import ssl
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sync_agent.helm import binary, process
from tests.httpsgit import HOST, make_ca


def helm() -> Path:
    path = binary.helm_path()
    assert path is not None, ("helm is not built: run `gitops-restore cluster-bin` "
                              f"(it builds {binary.HELM_MODULE}@{binary.HELM_VERSION})")
    return path


def run_helm(*args: str, cwd: Path) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        env = process.environment(Path(scratch))
        done = subprocess.run([str(helm()), *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
    return done.stdout


def make_chart(directory: Path, name: str, version: str, files: dict[str, str] | None = None
               ) -> Path:
    """`helm create NAME` in `directory`, at `version`, with `files` (relative to the chart)
    added, replaced or, when None, removed."""
    directory.mkdir(parents=True, exist_ok=True)
    chart = directory / name
    if chart.exists():
        shutil.rmtree(chart)
    run_helm("create", name, cwd=directory)
    text = (chart / "Chart.yaml").read_text()
    (chart / "Chart.yaml").write_text(text.replace("version: 0.1.0", f"version: {version}"))
    for rel, content in (files or {}).items():
        target = chart / rel
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    return chart


def package(chart: Path, destination: Path) -> Path:
    """`helm package`: the chart archive <name>-<version>.tgz in `destination`."""
    destination.mkdir(parents=True, exist_ok=True)
    out = run_helm("package", str(chart), "--destination", str(destination), cwd=destination)
    return Path(out.strip().rsplit(": ", 1)[-1])


class ChartRepoServer:
    """Static HTTPS server for a chart repository directory, with basic auth."""

    def __init__(self, base: Path, username: str = "charts"):
        self.root = Path(tempfile.mkdtemp(prefix="helmrepo-", dir=base))
        self.site = self.root / "site"
        (self.site / "charts").mkdir(parents=True)
        self.ca = make_ca(self.root / "ca", "helmrepo test CA")
        self._chain = self.ca.issue_server_cert(self.root)
        self.username, self.token = username, f"tok-{secrets.token_hex(12)}"
        self.requests: list[tuple[str, int]] = []  # (path, status)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self._server.server_address[1]}/charts"

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_file

    def publish(self, chart: Path) -> None:
        """`helm package` the chart into the repository and re-index it."""
        run_helm("package", str(chart), "--destination", str(self.site / "charts"),
                 cwd=self.root)
        run_helm("repo", "index", str(self.site / "charts"), "--url", self.url, cwd=self.root)

    def start(self) -> ChartRepoServer:
        handler = partial(_Handler, self, directory=str(self.site))
        server = ThreadingHTTPServer((HOST, 0), handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*self._chain)
        # The handshake happens in each request's thread, not in accept() (as tests/httpsgit.py).
        server.socket = tls.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                         daemon=True).start()
        self._server = server
        return self

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ChartRepoServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def authorized(self, header: str | None) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return hmac.compare_digest((header or "").encode(), expected.encode())


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, repo: ChartRepoServer, *args, **kwargs):
        self.repo = repo
        super().__init__(*args, **kwargs)

    def handle(self) -> None:
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            return  # a client that hung up during the handshake
        super().handle()

    def do_GET(self) -> None:
        if not self.repo.authorized(self.headers.get("Authorization")):
            self.repo.requests.append((self.path, 401))
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="charts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.repo.requests.append((self.path, 200))
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        pass
