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
from contextlib import closing

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
    with closing(kube):
        return _serve(_Agent(kube, cfg))


def _serve(agent: _Agent) -> int:
    """Listen for probes, handle signals and run the loop until stopped."""
    cfg = agent.cfg
    try:
        http = server.serve(cfg.listen_host, cfg.listen_port, agent.healthz, agent.readyz,
                            agent.metrics)
    except OSError as e:
        log.error("cannot listen", extra={"address": f"{cfg.listen_host}:{cfg.listen_port}",
                                          "error": str(e)})
        return 1
    signal.signal(signal.SIGTERM, agent.on_signal)
    signal.signal(signal.SIGINT, agent.on_signal)
    log.info("agent started", extra={"sync": cfg.sync, "namespace": cfg.namespace,
                                     "identity": cfg.identity, "lease": cfg.lease_name,
                                     "interval": cfg.interval or "spec"})
    try:
        agent.run()
    finally:
        http.shutdown()
    log.info("agent stopped", extra={"sync": cfg.sync})
    return 0


class _Agent:
    """The reconcile loop and the Lease elector wired together, and the probes that watch them."""

    def __init__(self, kube: Kube, cfg: config_mod.AgentConfig):
        self.cfg = cfg
        self.stop = threading.Event()
        self.elector = Elector(kube, cfg.namespace, cfg.lease_name, cfg.identity,
                               cfg.lease_duration, cfg.renew_deadline, cfg.retry_period)
        self.metrics = Metrics(cfg.sync)
        self.loop = Loop(kube, cfg, self.elector, Recorder(kube, cfg.identity), self.metrics,
                         self.stop)
        # The Lease is renewed until the loop has finished or abandoned its sync, not just
        # until the signal: a leader that stopped renewing mid-sync could be overtaken while
        # writing.
        self.renewing = threading.Event()
        self.elector_thread = threading.Thread(target=self.elector.run, args=(self.renewing,),
                                               name="lease", daemon=True)

    def run(self) -> None:
        """Run the loop in this thread; afterwards release the Lease for a standby."""
        self.elector_thread.start()
        try:
            self.loop.run()
        finally:
            self.stop.set()
            self.renewing.set()
            self.elector_thread.join(timeout=self.cfg.retry_period + 5)
            self.elector.release()

    def on_signal(self, number: int, _frame) -> None:
        if self.stop.is_set():
            log.warning("second signal: exiting now", extra={"signal": number})
            self.elector.release()
            sys.exit(1)
        log.info("stopping", extra={"signal": signal.Signals(number).name})
        self.stop.set()

    def healthz(self) -> tuple[bool, str]:
        if not self.elector_thread.is_alive():
            return False, "the lease thread has stopped"
        if self.loop.syncing_since is not None:
            limit = max(_STUCK_AFTER, 3 * (self.cfg.interval or 60))
            busy = time.monotonic() - self.loop.syncing_since
            return busy < limit, f"syncing for {busy:.0f}s"
        idle = time.monotonic() - self.loop.heartbeat
        return idle < _STUCK_AFTER, f"loop ticked {idle:.0f}s ago"

    def readyz(self) -> tuple[bool, str]:
        role = "leader" if self.elector.is_leader() else "standby"
        if self.loop.problem:
            return False, self.loop.problem
        age = time.monotonic() - self.loop.last_read
        if age > max(10.0, 5 * self.cfg.spec_poll):
            return False, f"the Sync object was last read {age:.0f}s ago"
        return True, f"ok ({role}, identity {self.cfg.identity})"
