"""Leader election through a coordination.k8s.io/v1 Lease, so two agents never apply at once.

The algorithm is client-go's `leaderelection`: a candidate takes the Lease when nobody holds
it or the holder has not renewed it for `leaseDurationSeconds`, measured on the candidate's
own monotonic clock from the moment it last saw the record change (so clocks need not agree);
the leader renews every retry period; every write carries the resourceVersion it read, so of
two candidates racing only one succeeds. A leader that has not renewed for the renew deadline
(shorter than the lease duration) considers itself no longer leader and stops applying at the
next safe point, before anyone else can take over. `release` (on SIGTERM) clears the holder,
so a standby takes over at once instead of after the lease duration.

`Elector.run` is the body of a background thread; the loop asks `is_leader()`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync_agent.kube import ApiError, Kube, ResourceType

LEASE_RT = ResourceType("coordination.k8s.io", "v1", "Lease", "leases", namespaced=True)

log = logging.getLogger(__name__)


def micro_now() -> str:
    """MicroTime, as the API server stores acquireTime and renewTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Elector:
    kube: Kube
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    _renewed: float = field(default=-math.inf)  # monotonic time of our last successful write
    _observed: tuple[Any, ...] = ()  # the last record we saw ...
    _observed_at: float = 0.0  # ... and when we first saw it (monotonic)
    _leader: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_leader(self) -> bool:
        with self._lock:
            return self._leader and time.monotonic() - self._renewed < self.renew_deadline

    def run(self, stop: threading.Event) -> None:
        """Try to acquire, then keep renewing, until `stop` is set."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                won = self.try_acquire_or_renew()
            except ApiError as e:
                log.warning("lease request failed", extra={"lease": self.name, "error": str(e)})
                won = False
            with self._lock:
                was = self._leader
                if won:
                    self._renewed = started
                    self._leader = True
                elif self._leader and time.monotonic() - self._renewed >= self.renew_deadline:
                    self._leader = False
                now = self._leader
            if now != was:
                log.info("became leader" if now else "lost leadership",
                         extra={"lease": self.name, "identity": self.identity})
            stop.wait(self.retry_period)

    def _get(self) -> dict | None:
        """The Lease, with a short timeout: a hung request must not outlive our claim."""
        try:
            return self.kube.request("GET", LEASE_RT.path(self.namespace, self.name),
                                     timeout=max(1.0, self.renew_deadline / 2), attempts=1)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def try_acquire_or_renew(self) -> bool:
        lease = self._get()
        stamp = micro_now()
        seconds = max(1, math.ceil(self.lease_duration))
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "gitops-restore"}},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": seconds,
                             "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}}
            return self._write("POST", LEASE_RT.path(self.namespace), body)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = spec.get("leaseDurationSeconds") or seconds
        if holder and holder != self.identity \
                and time.monotonic() < self._observed_at + duration:
            return False  # held by another candidate whose claim has not run out
        mine = holder == self.identity
        lease["spec"] = {
            **spec, "holderIdentity": self.identity, "leaseDurationSeconds": seconds,
            "renewTime": stamp,
            "acquireTime": spec.get("acquireTime") if mine else stamp,
            "leaseTransitions": (spec.get("leaseTransitions") or 0) + (0 if mine else 1)}
        return self._write("PUT", LEASE_RT.path(self.namespace, self.name), lease)

    def release(self) -> None:
        """Give the Lease up if we hold it, so a standby takes over without waiting."""
        with self._lock:
            self._leader = False
        try:
            lease = self._get()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            stamp = micro_now()
            lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": stamp, "acquireTime": stamp}
            self._write("PUT", LEASE_RT.path(self.namespace, self.name), lease)
            log.info("released the lease", extra={"lease": self.name})
        except ApiError as e:
            log.warning("cannot release the lease", extra={"lease": self.name,
                                                           "error": str(e)})

    def _write(self, method: str, path: str, body: dict) -> bool:
        try:
            stored = self.kube.request(method, path, body, attempts=1,
                                       timeout=max(1.0, self.renew_deadline / 2))
        except ApiError as e:
            if e.status == 409:  # another candidate wrote first
                return False
            raise
        spec = stored.get("spec") or {}
        self._observed = (spec.get("holderIdentity") or "", spec.get("renewTime"),
                          spec.get("leaseDurationSeconds"))
        self._observed_at = time.monotonic()
        return spec.get("holderIdentity") == self.identity
