"""HTTP/1.1 to the API server through libcurl, one pooled handle per request in flight.

Why libcurl (pycurl) and not urllib3: a restore sends one request per object, from many
threads, to an API server that shares two cores with us. urllib3 spends ~350 µs of Python per
request (URL parsing, pool locks, header objects); a reused curl handle spends ~120 µs, since
the request and the response are handled in C with the GIL released. That CPU goes back to the
API server (measured in bench/, see the README's performance section).

The kubernetes client still loads the configuration; this module only reads the connection
settings it produced (server, CA, client certificate, proxy).
"""

from __future__ import annotations

import io
import queue
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import pycurl
from kubernetes import client


@dataclass(frozen=True)
class Response:
    status: int
    data: bytes


class TransportError(Exception):
    """No HTTP response: connection refused, TLS failure, timeout."""


class Transport:
    """Sends requests to one server; safe to use from many threads at once."""

    def __init__(self, configuration: client.Configuration):
        self.host = configuration.host.rstrip("/")
        self._base = _base_url(self.host, configuration.tls_server_name)
        self._tls = _tls_options(configuration)
        self._connect = _connect_options(configuration, self.host)
        self._idle: queue.SimpleQueue[pycurl.Curl] = queue.SimpleQueue()

    def request(self, method: str, target: str, body: bytes | None, headers: list[str],
                timeout: float) -> Response:
        """`target` is the path and query; headers are "Name: value" lines."""
        handle = self._take()
        buffer = io.BytesIO()
        try:
            handle.setopt(pycurl.URL, self._base + target)
            handle.setopt(pycurl.CUSTOMREQUEST, method)
            if body is None:
                handle.setopt(pycurl.HTTPGET, 1)
            else:
                handle.setopt(pycurl.POSTFIELDS, body)
            # An empty Expect: stops curl waiting for "100 Continue" before sending a body.
            handle.setopt(pycurl.HTTPHEADER, [*headers, "Expect:"])
            handle.setopt(pycurl.WRITEDATA, buffer)
            handle.setopt(pycurl.TIMEOUT_MS, int(timeout * 1000))
            handle.perform()
            status = handle.getinfo(pycurl.RESPONSE_CODE)
        except pycurl.error as e:
            handle.close()  # its connection may be half-used; never hand it out again
            raise TransportError(e.args[-1]) from e
        self._idle.put(handle)
        return Response(status, buffer.getvalue())

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()

    def _take(self) -> pycurl.Curl:
        """An idle handle (its connection still open), or a new one. `request` sets every
        option that changes between requests, so a reused handle needs no reset."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            handle = pycurl.Curl()
        for option, value in self._tls + self._connect:
            handle.setopt(option, value)
        return handle


def _base_url(host: str, server_name: str | None) -> str:
    if not server_name:
        return host
    address = urlsplit(host)
    return f"{address.scheme}://{server_name}:{address.port or 443}{address.path}"


def _tls_options(configuration: client.Configuration) -> list[tuple[int, object]]:
    options: list[tuple[int, object]] = []
    if configuration.verify_ssl:
        options.append((pycurl.CAINFO, configuration.ssl_ca_cert or certifi.where()))
    else:  # insecure-skip-tls-verify: true in the kubeconfig
        options += [(pycurl.SSL_VERIFYPEER, 0), (pycurl.SSL_VERIFYHOST, 0)]
    if configuration.cert_file:
        options.append((pycurl.SSLCERT, configuration.cert_file))
    if configuration.key_file:
        options.append((pycurl.SSLKEY, configuration.key_file))
    return options


def _connect_options(configuration: client.Configuration, host: str
                     ) -> list[tuple[int, object]]:
    options: list[tuple[int, object]] = [
        (pycurl.CONNECTTIMEOUT_MS, 10_000),
        (pycurl.NOSIGNAL, 1),
        # One request per handle at a time, so HTTP/2's multiplexing buys nothing here, and its
        # framing cost a little more of our CPU than HTTP/1.1 (5,000 dry-runs: 0.8-0.9 s vs
        # 1.0-1.2 s).
        (pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1),
    ]
    proxy = getattr(configuration, "proxy", None)
    if proxy:
        options.append((pycurl.PROXY, proxy))
        if configuration.no_proxy:
            options.append((pycurl.NOPROXY, configuration.no_proxy))
    server_name = configuration.tls_server_name
    if server_name:
        # kubeconfig tls-server-name: the URL names the server by it (so the certificate is
        # checked against it) while curl connects to the real address (curl --connect-to).
        address = urlsplit(host)
        port = address.port or 443
        options.append((pycurl.CONNECT_TO, [f"{server_name}:{port}:{address.hostname}:{port}"]))
    return options
