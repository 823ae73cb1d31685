"""Leader election through a coordination.k8s.io/v1 Lease, so two agents never apply at once.

The algorithm is client-go's `leaderelection`: a candidate takes the Lease when nobody holds
it or the holder has not renewed it for `leaseDurationSeconds`, measured on the candidate's
own monotonic clock from the moment it last saw the record change (so clocks need not agree);
the leader renews every retry period; every write carries the resourceVersion it read, so of
two candidates racing only one succeeds. A leader that has not renewed for the renew deadline
(shorter than the lease duration) considers itself no longer leader and stops applying at the
next safe point, before anyone else can take over. `release` (on SIGTERM) clears the holder,
so a standby takes over at once instead of after the lease duration.

The same Lease is the sync's one-writer lock (`sync_agent.lock`): the leader marks it busy
only while it syncs (`begin_sync`/`end_sync`), and a command that writes the sync may take it
from an idle leader; the leader then sees another holder at its next renewal and stands by at
once (no grace period: the other writer is already writing).

`Elector.run` is the body of a background thread; the loop asks `is_leader()`, and the engine
calls `check()` before each write.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field

from sync_agent import lock
from sync_agent.kube import ApiError, Kube

__all__ = ["Elector"]

log = logging.getLogger(__name__)


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
    _observer: lock.Observer = field(default_factory=lock.Observer)
    _leader: bool = False
    _busy: bool = False  # a sync is running: renewals keep the Lease marked busy
    _lost: str = ""  # why leadership ended, for LockLost
    _term: int = 0  # counts the times we took the Lease: a sync belongs to the term it began in
    _sync_term: int = -1
    _lock: threading.Lock = field(default_factory=threading.Lock)  # guards the fields above
    _writes: threading.Lock = field(default_factory=threading.Lock)  # one Lease write at once

    @property
    def note(self) -> str:
        return f"agent {self.identity}"

    def is_leader(self) -> bool:
        with self._lock:
            return self._leader and time.monotonic() - self._renewed < self.renew_deadline

    def check(self, doing: str) -> None:
        """The engine's guard: raise LockLost unless this agent still leads, in the term the
        sync began in (a leader that lost the Lease and took it back must not carry on with
        a plan made before someone else wrote)."""
        with self._lock:
            same_term = self._term == self._sync_term
        if not (self.is_leader() and same_term):
            with self._lock:
                why = self._lost or f"it could not be renewed for {self.renew_deadline:g}s"
            raise lock.LockLost(f"sync lock Lease {self.namespace}/{self.name}: agent "
                                f"{self.identity} no longer leads ({why}); stopped before "
                                f"{doing}")

    def run(self, stop: threading.Event) -> None:
        """Try to acquire, then keep renewing, until `stop` is set."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                won = self.try_acquire_or_renew()
            except ApiError as e:
                log.warning("lease request failed", extra={"lease": self.name, "error": str(e)})
                won = None  # unknown: keep leading until the renew deadline
            with self._lock:
                was = self._leader
                if won:
                    self._renewed = started
                    self._leader = True
                elif won is False and self._leader:
                    self._leader = False  # another holder has it now
                elif self._leader and time.monotonic() - self._renewed >= self.renew_deadline:
                    self._leader, self._lost = False, "no renewal within the renew deadline"
                now = self._leader
            if now != was:
                log.info("became leader" if now else "lost leadership",
                         extra={"lease": self.name, "identity": self.identity})
            stop.wait(self.retry_period)

    def try_acquire_or_renew(self) -> bool | None:
        """True: we hold the Lease; False: another writer does; None: a write raced ours."""
        with self._writes:
            lease = lock.read(self.kube, self.namespace, self.name, self._timeout)
            self._observer.see(lease)
            if lease is not None:
                holder = lock.Holder.of(lease)
                if holder.identity and holder.identity != self.identity \
                        and not self._observer.expired(lease, self.lease_duration):
                    with self._lock:
                        if self._leader:
                            self._lost = f"the lock was taken by {holder}"
                    return False  # held by another writer whose claim has not run out
            return self._write(lease, self._busy)

    def begin_sync(self) -> bool:
        """Mark the Lease busy before a sync, confirming our claim with a conditional write;
        False (sync nothing) if another writer took it meanwhile or the write failed."""
        if not self.is_leader():
            return False
        with self._writes:
            try:
                lease = lock.read(self.kube, self.namespace, self.name, self._timeout)
                if lease is None or lock.Holder.of(lease).identity != self.identity:
                    self._step_down(f"the lock was taken by {lock.Holder.of(lease or {})}")
                    return False
                started = time.monotonic()
                if not self._write(lease, True):  # written by someone else: look again
                    return False
            except ApiError as e:
                log.warning("cannot mark the lease busy", extra={"lease": self.name,
                                                                  "error": str(e)})
                return False
        with self._lock:
            self._busy, self._renewed, self._sync_term = True, started, self._term
        return True

    def end_sync(self) -> None:
        """Mark the Lease idle again, so a command may take it without waiting."""
        with self._lock:
            self._busy = False
        if not self.is_leader():
            return
        with self._writes:
            try:
                lease = lock.read(self.kube, self.namespace, self.name, self._timeout)
                if lease is not None and lock.Holder.of(lease).identity == self.identity:
                    self._write(lease, False)
            except ApiError as e:  # the next renewal writes it
                log.warning("cannot mark the lease idle", extra={"lease": self.name,
                                                                  "error": str(e)})

    def release(self) -> None:
        """Give the Lease up if we hold it, so a standby takes over without waiting."""
        with self._lock:
            self._leader, self._lost = False, "released"
        try:
            lease = lock.read(self.kube, self.namespace, self.name, self._timeout)
            if lease is None or lock.Holder.of(lease).identity != self.identity:
                return
            lock.write(self.kube, self.namespace, lease, lock.released(lease), self._timeout)
            log.info("released the lease", extra={"lease": self.name})
        except ApiError as e:
            log.warning("cannot release the lease", extra={"lease": self.name,
                                                           "error": str(e)})

    @property
    def _timeout(self) -> float:
        return max(1.0, self.renew_deadline / 2)

    def _step_down(self, why: str) -> None:
        with self._lock:
            if self._leader:
                self._leader, self._lost = False, why
        log.info("lost leadership", extra={"lease": self.name, "identity": self.identity,
                                           "why": why})

    def _write(self, lease: dict | None, busy: bool) -> bool | None:
        body = lock.claim(lease, self.namespace, self.name, self.identity, self.note, busy,
                          self.lease_duration)
        stored = lock.write(self.kube, self.namespace, lease, body, self._timeout)
        if stored is None:  # another candidate wrote first
            return None
        self._observer.see(stored)
        if lease is None or lock.Holder.of(lease).identity != self.identity:
            with self._lock:  # taken anew: someone else may have written in between
                self._term += 1
        return lock.Holder.of(stored).identity == self.identity
