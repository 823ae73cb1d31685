"""`python -m sync_agent`: wire the agent together, run it, stop it cleanly.

Threads: the reconcile loop runs in the main thread; the Lease elector and the HTTP server
run in daemon threads. SIGTERM or SIGINT sets the stop event: the loop finishes (or, before
its first write, abandons) the current sync while the Lease is still renewed, then the Lease
is released so a standby (or a waiting command) takes over at once, and the process exits 0.
A second signal exits at once (the engine's write-ahead inventory keeps even that safe).
Exit codes: 0 stopped cleanly, 2 bad options, 1 otherwise.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence

from sync_agent.agent import config as config_mod
from sync_agent.agent import logs, server
from sync_agent.agent.lease import Elector
from sync_agent.agent.loop import Loop
from sync_agent.agent.metrics import Metrics
from sync_agent.agent.recorder import Recorder
from sync_agent.errors import SyncError
from sync_agent.kube import Kube

log = logging.getLogger("sync_agent.agent")
_STUCK_AFTER = 600.0  # a loop that has not ticked (outside a sync) for this long is hung


def run(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = config_mod.from_args(argv)
    except config_mod.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2  # bad options (see above)
    logs.configure(cfg.log_level)
    try:
        kube = Kube.from_kubeconfig(cfg.kubeconfig, cfg.context)
    except SyncError as e:
        log.error("cannot configure the Kubernetes client", extra={"error": str(e)})
        return 1

    stop = threading.Event()
    elector = Elector(kube, cfg.namespace, cfg.lease_name, cfg.identity, cfg.lease_duration,
                      cfg.renew_deadline, cfg.retry_period)
    metrics = Metrics(cfg.sync)
    loop = Loop(kube, cfg, elector, Recorder(kube, cfg.identity), metrics, stop)
    # The Lease is renewed until the loop has finished or abandoned its sync, not just until
    # the signal: a leader that stopped renewing mid-sync could be overtaken while writing.
    renewing = threading.Event()
    elector_thread = threading.Thread(target=elector.run, args=(renewing,), name="lease",
                                      daemon=True)

    def healthz() -> tuple[bool, str]:
        if not elector_thread.is_alive():
            return False, "the lease thread has stopped"
        if loop.syncing_since is not None:
            limit = max(_STUCK_AFTER, 3 * (cfg.interval or 60))
            busy = time.monotonic() - loop.syncing_since
            return busy < limit, f"syncing for {busy:.0f}s"
        idle = time.monotonic() - loop.heartbeat
        return idle < _STUCK_AFTER, f"loop ticked {idle:.0f}s ago"

    def readyz() -> tuple[bool, str]:
        role = "leader" if elector.is_leader() else "standby"
        if loop.problem:
            return False, loop.problem
        age = time.monotonic() - loop.last_read
        if age > max(10.0, 5 * cfg.spec_poll):
            return False, f"the Sync object was last read {age:.0f}s ago"
        return True, f"ok ({role}, identity {cfg.identity})"

    try:
        http = server.serve(cfg.listen_host, cfg.listen_port, healthz, readyz, metrics)
    except OSError as e:
        log.error("cannot listen", extra={"address": f"{cfg.listen_host}:{cfg.listen_port}",
                                          "error": str(e)})
        return 1

    def on_signal(number: int, _frame) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now", extra={"signal": number})
            elector.release()
            sys.exit(1)
        log.info("stopping", extra={"signal": signal.Signals(number).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("agent started", extra={"sync": cfg.sync, "namespace": cfg.namespace,
                                     "identity": cfg.identity, "lease": cfg.lease_name,
                                     "interval": cfg.interval or "spec"})
    elector_thread.start()
    try:
        loop.run()
    finally:
        stop.set()
        renewing.set()
        elector_thread.join(timeout=cfg.retry_period + 5)
        elector.release()
        http.shutdown()
        kube.close()
    log.info("agent stopped", extra={"sync": cfg.sync})
    return 0
