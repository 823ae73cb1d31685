"""The agent's command line: options in, a frozen AgentConfig out (checked, with defaults).

Called by `main` only. Everything that describes *what* to sync (repository, branch, path,
prune, pin, suspend) lives in the Sync object, not here: these options say how to reach the
API server, which Sync to serve, and how the daemon itself behaves.
"""

from __future__ import annotations

import argparse
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sync_agent import lock
from sync_agent.conventions import NAMESPACE, parse_duration
from sync_agent.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:9795"


@dataclass(frozen=True)
class AgentConfig:
    sync: str  # name of the Sync object, which is also the inventory's sync name
    namespace: str = NAMESPACE  # where the Sync, its Secret and the Lease live
    kubeconfig: str | None = None  # None: in-cluster ServiceAccount, else kubectl's rules
    context: str | None = None
    interval: float | None = None  # overrides spec.interval when set (tests, debugging)
    listen_host: str = "127.0.0.1"  # /healthz /readyz /metrics; loopback unless told
    listen_port: int = 9795
    identity: str = ""  # who holds the Lease: the Pod's name in a cluster
    lease_duration: float = 15.0  # how long a leader's claim lasts without renewal
    renew_deadline: float = 10.0  # a leader that could not renew for this long stops applying
    retry_period: float = 2.0  # how often candidates try, and the leader renews
    spec_poll: float = 1.0  # how often the Sync object is read for spec changes
    workers: int = 8
    log_level: str = "info"

    @property
    def lease_name(self) -> str:
        return lease_name(self.sync)


def lease_name(sync: str) -> str:
    """The Lease (and the Deployment) of the agent serving Sync `sync`: the sync's lock."""
    return lock.lease_name(sync)


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {text!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host or "0.0.0.0", int(port)


def default_identity() -> str:
    """The Pod's name in a cluster (set from the downward API), else host, pid and a nonce."""
    pod = os.environ.get("POD_NAME")
    if pod:
        return pod
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sync_agent",
        description="Keep a cluster converged on a Sync object (gitops-restore.io/v1alpha1).",
        epilog="Example: python -m sync_agent --sync fleet-apps --kubeconfig ~/.kube/config "
               "--interval 30s --listen 127.0.0.1:9795")
    env = os.environ.get
    p.add_argument("--sync", default=env("SYNC_NAME"), help="Sync object to serve "
                   "(env SYNC_NAME)")
    p.add_argument("--namespace", default=env("POD_NAMESPACE") or NAMESPACE,
                   help=f"namespace of the Sync, its Secret and Lease (default {NAMESPACE})")
    p.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster "
                   "ServiceAccount, else KUBECONFIG, else ~/.kube/config)")
    p.add_argument("--context", default=None, help="kubeconfig context")
    p.add_argument("--interval", default=None, help="override spec.interval, e.g. 2s")
    p.add_argument("--listen", default=env("AGENT_LISTEN") or DEFAULT_LISTEN,
                   help=f"HOST:PORT for /healthz /readyz /metrics (default {DEFAULT_LISTEN})")
    p.add_argument("--identity", default=None, help="Lease holder identity (default: POD_NAME "
                   "or host-pid)")
    p.add_argument("--lease-duration", default="15s")
    p.add_argument("--renew-deadline", default="10s")
    p.add_argument("--retry-period", default="2s")
    p.add_argument("--workers", type=int, default=8, help="concurrent API requests")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def from_args(argv: Sequence[str] | None = None) -> AgentConfig:
    args = parser().parse_args(argv)
    if not args.sync:
        raise ConfigError("--sync NAME (or SYNC_NAME) is required: the Sync object to serve")
    host, port = _listen(args.listen)
    lease = parse_duration(args.lease_duration, "--lease-duration", positive=True)
    renew = parse_duration(args.renew_deadline, "--renew-deadline", positive=True)
    retry = parse_duration(args.retry_period, "--retry-period", positive=True)
    if not retry < renew < lease:
        raise ConfigError("--retry-period < --renew-deadline < --lease-duration must hold "
                          f"(got {retry:g}s, {renew:g}s, {lease:g}s)")
    return AgentConfig(
        sync=args.sync, namespace=args.namespace, kubeconfig=args.kubeconfig,
        context=args.context,
        interval=parse_duration(args.interval, "--interval", positive=True)
        if args.interval else None,
        listen_host=host, listen_port=port, identity=args.identity or default_identity(),
        lease_duration=lease, renew_deadline=renew, retry_period=retry,
        workers=max(1, args.workers), log_level=args.log_level)
