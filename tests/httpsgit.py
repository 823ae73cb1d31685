"""A real Git server over HTTPS on loopback, for tests: git's own `git http-backend` (the CGI
program behind every self-hosted Git web server) run by a small threaded HTTPS server from the
standard library, with a throwaway CA, a certificate for 127.0.0.1 signed by it, and HTTP basic
auth (username and token) required on every request.

    with HttpsGitServer() as server:
        url = server.create_repo("app", from_repo=work_tree)  # https://127.0.0.1:PORT/app.git
        repo = source.open_repository(url, server.auth())     # CA file, username and token

or the fixture `https_git_server` (a started server). A test module makes it its own with
`https_git_server = httpsgit.https_git_server`.

Why git http-backend rather than a server written in Python: the smart HTTP protocol (v0 and
v2, gzip-encoded and chunked requests, receive-pack for authenticated users) is then exactly
git's, as behind nginx or Apache. The server only does TLS, basic auth and CGI. It runs in
threads of the test process, so it cannot outlive it; the CGI processes end with each request.
`accesses` records every request (user, method, path, status) and every refused TLS handshake,
so a test can tell what the server saw: a client that rejects the certificate sends nothing.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sync_agent import source
from tests.testdata.gitrepos import push_everything

HOST = "127.0.0.1"
HTTP_BACKEND = Path(subprocess.run(["git", "--exec-path"], capture_output=True, text=True)
                    .stdout.strip()) / "git-http-backend"


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA: its certificate as a PEM file (what a client is told to trust) and its key."""

    cert_file: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue_server_cert(self, directory: Path, host: str = HOST) -> tuple[Path, Path]:
        """A certificate for `host` (an IP address or DNS name) signed by this CA: the chain
        file (certificate, then the CA's) and the key file."""
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alt_name: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alt_name = x509.DNSName(host)
        cert = (_builder(_name(host), self.cert.subject, key)
                .add_extension(x509.SubjectAlternativeName([alt_name]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.key.public_key()), critical=False)
                .sign(self.key, hashes.SHA256()))
        chain = directory / "server.pem"
        chain.write_bytes(_pem(cert) + _pem(self.cert))
        key_file = directory / "server-key.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        return chain, key_file


def make_ca(directory: Path, name: str = "httpsgit test CA") -> CertificateAuthority:
    """A new self-signed CA, valid for a day, its certificate written to directory/ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False)
    cert = (_builder(_name(name), _name(name), key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .sign(key, hashes.SHA256()))
    cert_file = directory / "ca.pem"
    cert_file.write_bytes(_pem(cert))
    return CertificateAuthority(cert_file, cert, key)


@dataclass(frozen=True)
class Access:
    """One thing the server saw: an HTTP request (status 401 when refused) or, with method
    "TLS", a handshake the client broke off."""

    method: str
    path: str
    user: str | None
    status: int


class HttpsGitServer:
    """git http-backend over HTTPS with basic auth on a free loopback port.

    Start and stop it with `with`, or start()/stop()/close(); it is also closed when the object
    is collected. `username` and `token` are the only credentials it accepts; `ca.cert_file`
    is the CA a client must trust. Repositories live in a temporary directory under `base_dir`.
    """

    def __init__(self, base_dir: Path | None = None, username: str = "deploy",
                 token: str | None = None):
        if not os.access(HTTP_BACKEND, os.X_OK):
            raise RuntimeError(f"{HTTP_BACKEND} is missing: install git")
        self.root = Path(tempfile.mkdtemp(prefix="httpsgit-", dir=base_dir))
        self.repos = self.root / "repos"
        self.repos.mkdir()
        self.ca = make_ca(self.root / "ca")
        self._cert_chain = self.ca.issue_server_cert(self.root)
        # token "" with the token as `username`: a server taking https://TOKEN@host (GitHub)
        self._site = _Site(self.root, self.repos, username,
                           f"tok-{secrets.token_hex(16)}" if token is None else token)
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._running: list[ThreadingHTTPServer] = []
        self._finalizer = weakref.finalize(self, _cleanup, self.root, self._running)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> HttpsGitServer:
        """Listen (on the same port as before after a stop) and serve from a thread."""
        if self._server:
            return self
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*self._cert_chain)
        server = _Server((HOST, self.port), _GitRequestHandler, self._site)
        # The handshake happens in the request's thread (see _GitRequestHandler.handle), so a
        # client that refuses the certificate never stalls the accept loop.
        server.socket = tls.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name=f"httpsgit-{self.port}",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        self._server = server
        self._running.append(server)
        return self

    def stop(self) -> None:
        """Stop listening (the files stay until close())."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._running.clear()
            self._server = self._thread = None

    def close(self) -> None:
        """Stop and delete everything: CA, certificate, repositories."""
        self.stop()
        self._finalizer()

    def __enter__(self) -> HttpsGitServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- access ------------------------------------------------------------------------------

    @property
    def username(self) -> str:
        return self._site.username

    @property
    def token(self) -> str:
        return self._site.token

    @property
    def accesses(self) -> list[Access]:
        return self._site.accesses

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_file

    def auth(self, password: str | None = None) -> source.GitAuth:
        """GitAuth trusting this server's CA with its username and token (or `password`)."""
        return source.GitAuth(ca_file=self.ca_file, username=self.username,
                              password=self.token if password is None else password)

    def refused(self) -> list[Access]:
        """Requests refused for missing or wrong credentials, and broken-off TLS handshakes."""
        return [a for a in self.accesses if a.status == 401 or a.method == "TLS"]

    # -- repositories ------------------------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        return self.repos / (name if name.endswith(".git") else f"{name}.git")

    def url(self, name: str, password: str | None = None) -> str:
        """The repository's URL; with `password`, carrying the username and it in its user
        part (https://deploy:TOKEN@127.0.0.1:PORT/name.git)."""
        user = f"{quote(self.username, safe='')}:{quote(password, safe='')}@" if password else ""
        return f"https://{user}{HOST}:{self.port}/{self.repo_path(name).relative_to(self.repos)}"

    def create_repo(self, name: str, from_repo: Path | None = None,
                    branch: str = "main") -> str:
        """A bare repository, filled from `from_repo`'s branches and tags if given, with HEAD
        on `from_repo`'s current branch; returns its URL (without credentials)."""
        path = self.repo_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "-q", "--bare", "-b", branch, str(path)])
        if from_repo is not None:
            self.update_repo(name, from_repo)
        return self.url(name)

    def update_repo(self, name: str, from_repo: Path) -> None:
        """Force-push every branch and tag of `from_repo` (a push straight to the disk)."""
        push_everything(from_repo, self.repo_path(name))


@dataclass
class _Site:
    """What the request handlers need (not the HttpsGitServer itself, so that it can be
    collected, and closed, while its serving thread runs)."""

    root: Path
    repos: Path
    username: str
    token: str
    accesses: list[Access] = field(default_factory=list)

    def user_of(self, authorization: str | None) -> str | None:
        """The username if the Authorization header carries this server's credentials."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = f"{self.username}:{self.token}".encode()
        return user if hmac.compare_digest(f"{user}:{password}".encode(), expected) else None

    def cgi_env(self, handler: _GitRequestHandler, user: str, length: int) -> dict[str, str]:
        path, _, query = handler.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),  # no user configuration on the server side
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_PROJECT_ROOT": str(self.repos),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": handler.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_USER": user,  # http-backend allows receive-pack to authenticated users
            "REMOTE_ADDR": handler.client_address[0],
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in handler.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = handler.headers[header]
        return env


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, site: _Site):
        self.site = site
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        pass  # a client hanging up mid-request is its business; tests check `accesses`


class _GitRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as git's libcurl expects
    timeout = 30
    server: _Server

    def handle(self) -> None:
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            self.server.site.accesses.append(Access("TLS", "", None, 0))
            return
        super().handle()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args) -> None:
        pass  # `accesses` is the log

    def _serve(self) -> None:
        site = self.server.site
        user = site.user_of(self.headers.get("Authorization"))
        if user is None:
            site.accesses.append(Access(self.command, self.path, None, 401))
            self.close_connection = True  # the request body, if any, is left unread
            self._respond(401, [("WWW-Authenticate", 'Basic realm="git"'),
                                ("Content-Type", "text/plain")], b"authentication required\n")
            return
        body = self._request_body()
        done = subprocess.run([str(HTTP_BACKEND)], input=body, capture_output=True,
                              env=site.cgi_env(self, user, len(body)))
        status, headers, payload = _parse_cgi_output(done.stdout)
        if done.returncode != 0 and status == 200:
            status, headers, payload = 500, [("Content-Type", "text/plain")], done.stderr
        site.accesses.append(Access(self.command, self.path, user, status))
        self._respond(status, headers, payload)

    def _request_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunks()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunks(self) -> bytes:
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline().strip():
            pass  # trailers, up to the empty line
        return b"".join(chunks)

    def _respond(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _parse_cgi_output(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """A CGI response: its Status header (200 if none), the other headers, the body."""
    head, separator, payload = output.partition(b"\r\n\r\n")
    if not separator:
        head, _, payload = output.partition(b"\n\n")
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name and name.lower() not in ("content-length", "transfer-encoding"):
            headers.append((name, value.strip()))
    return status, headers, payload


@pytest.fixture
def https_git_server() -> Iterator[HttpsGitServer]:
    with HttpsGitServer() as server:
        yield server


def port_is_closed(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), 2):
        return False
    return True


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: x509.Name, issuer: x509.Name,
             key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False))


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _run(args: list[str]) -> str:
    done = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _cleanup(root: Path, running: list[ThreadingHTTPServer]) -> None:
    for server in running:
        server.shutdown()
        server.server_close()
    shutil.rmtree(root, ignore_errors=True)
