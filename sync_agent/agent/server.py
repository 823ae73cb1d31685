"""/healthz, /readyz and /metrics over HTTP, in a daemon thread of the agent.

  /healthz  200 while the reconcile loop and the lease thread are alive and the loop has
            ticked recently (a hung loop fails liveness, so the kubelet restarts the Pod);
  /readyz   200 once the agent has read its Sync object from the API server recently, as
            leader or standby (the body says which); 503 with the reason otherwise;
  /metrics  Prometheus text format (see `metrics`).

It listens on loopback unless told otherwise (`--listen`); in a Pod the Deployment passes
`--listen 0.0.0.0:9795` because kubelet probes come from outside the Pod's loopback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sync_agent.agent import metrics

# A probe answers (healthy, one line saying why).
Probe = Callable[[], tuple[bool, str]]

log = logging.getLogger(__name__)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(host: str, port: int, healthz: Probe, readyz: Probe,
          registry: metrics.Metrics) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; `shutdown()` the returned server to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, registry.exposition(), metrics.CONTENT_TYPE)
            elif path in ("/healthz", "/livez", "/readyz"):
                ok, text = (readyz if path == "/readyz" else healthz)()
                self._send(200 if ok else 503, (text + "\n").encode(), "text/plain")
            else:
                self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:  # probes every few seconds: not worth a line
            pass

    server = _Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("serving probes and metrics",
             extra={"address": f"http://{host}:{server.server_address[1]}"})
    return server
