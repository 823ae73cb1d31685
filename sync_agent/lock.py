"""One writer per sync: every command that writes a sync, and its agent, hold the same Lease.

The lock is the agent's leader-election Lease, `agent-<sync>` in gitops-restore-system
(coordination.k8s.io/v1), so one record says who writes a sync. Two annotations extend
client-go's record:

  gitops-restore.io/busy    "true" while the holder writes; "false" while an agent leads idle
  gitops-restore.io/holder  who holds it, for people ("gitops-restore restore by alice@host
                            pid 42", "agent agent-fleet-7d9c")

The rules:
- An agent that leads holds the Lease all the time (client-go's election, `agent/lease.py`),
  but marks it busy only while it syncs. Before each sync it re-confirms its claim with a
  write (busy) carrying the resourceVersion it read, so it never starts on a Lease that was
  taken meanwhile.
- A command (restore, rollback, bootstrap, drill: `engine.restore` takes it for them) takes
  the Lease when it is free, expired, or held by an idle agent, by a write carrying the
  resourceVersion it read: of two racing writers only one succeeds. It never takes it from a
  busy holder: it waits up to --lock-timeout, then fails (exit 2) naming the holder and since
  when. A preempted agent sees the new holder at its next renewal and stands by; when the
  command releases the Lease, the agent takes it back and syncs at once.
- Expiry is measured as client-go does: on the waiter's own monotonic clock, from the moment
  it last saw the record change, so clocks need not agree.
- Every holder renews its claim; one that could not renew within its renew deadline
  (shorter than the lease duration) considers the lock lost and stops at its next check
  (before every apply stage, prune and inventory write), before anyone else can take over.
"""

from __future__ import annotations

import copy
import getpass
import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sync_agent import events
from sync_agent.conventions import (
    LEASE_BUSY,
    LEASE_HOLDER,
    LEASE_RT,
    NAMESPACE,
    NAMESPACE_RT,
    managed_labels,
)
from sync_agent.errors import Conflict, Unavailable
from sync_agent.kube import ApiError, Kube

LEASE_SECONDS = 15.0  # a command's claim; a dead command blocks others this long at most
RENEW_DEADLINE = 10.0  # a command that could not renew for this long stops writing
RETRY_PERIOD = 2.0  # how often a command renews
POLL = 1.0  # how often a waiting command looks again


class LockTimeout(Unavailable):
    """Another writer held the sync's lock for all of --lock-timeout; nothing was changed."""


class LockLost(Conflict):
    """The lock could not be renewed or was taken over: this run stopped writing."""


class Guard(Protocol):
    """What the engine asks before each write: raise LockLost unless the lock is still held."""

    def check(self, doing: str) -> None: ...


def lease_name(sync: str) -> str:
    """The Lease (and the agent's Deployment) of sync `sync`."""
    return f"agent-{sync}"


def micro_now() -> str:
    """MicroTime, as the API server stores acquireTime and renewTime."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Holder:
    """Who holds a Lease, as its record says."""

    identity: str
    note: str
    busy: bool
    since: str  # acquireTime

    @classmethod
    def of(cls, lease: dict) -> Holder:
        spec = lease.get("spec") or {}
        notes = lease.get("metadata", {}).get("annotations") or {}
        return cls(spec.get("holderIdentity") or "", notes.get(LEASE_HOLDER, ""),
                   notes.get(LEASE_BUSY, "true") != "false", str(spec.get("acquireTime") or "?"))

    def __str__(self) -> str:
        who = f"{self.note} ({self.identity})" if self.note else self.identity
        return f"{who}, {'writing' if self.busy else 'idle'}, since {self.since[:19]}Z"


class Observer:
    """When a Lease's record last changed, on our own monotonic clock."""

    def __init__(self) -> None:
        self.record: tuple = ()
        self.since = 0.0

    def see(self, lease: dict | None) -> None:
        spec = (lease or {}).get("spec") or {}
        record = (spec.get("holderIdentity") or "", spec.get("renewTime"),
                  spec.get("leaseDurationSeconds"))
        if record != self.record:
            self.record, self.since = record, time.monotonic()

    def expired(self, lease: dict, default: float) -> bool:
        duration = (lease.get("spec") or {}).get("leaseDurationSeconds") or default
        return time.monotonic() >= self.since + duration


def read(kube: Kube, namespace: str, name: str, timeout: float) -> dict | None:
    """The Lease, with a short timeout: a hung request must not outlive a claim."""
    try:
        return kube.request("GET", LEASE_RT.path(namespace, name), timeout=timeout, attempts=1)
    except ApiError as e:
        if e.status == 404:
            return None
        raise


def claim(lease: dict | None, namespace: str, name: str, identity: str, note: str,
          busy: bool, duration: float) -> dict:
    """The Lease as `identity` takes or renews it; it keeps the resourceVersion read, so the
    write fails (409) if anyone wrote in between."""
    stamp = micro_now()
    seconds = max(1, math.ceil(duration))
    body = copy.deepcopy(lease) if lease else {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": managed_labels()}}
    spec = body.get("spec") or {}
    mine = spec.get("holderIdentity") == identity
    body["spec"] = {
        **spec, "holderIdentity": identity, "leaseDurationSeconds": seconds, "renewTime": stamp,
        "acquireTime": spec.get("acquireTime") if mine else stamp,
        "leaseTransitions": (spec.get("leaseTransitions") or 0) + (0 if mine or not lease else 1)}
    notes = body["metadata"].setdefault("annotations", {})
    notes.update({LEASE_BUSY: "true" if busy else "false", LEASE_HOLDER: note})
    return body


def released(lease: dict) -> dict:
    """The Lease given up: no holder, so the next candidate takes it at once."""
    body = copy.deepcopy(lease)
    stamp = micro_now()
    body["spec"] = {**body.get("spec", {}), "holderIdentity": "", "leaseDurationSeconds": 1,
                    "renewTime": stamp, "acquireTime": stamp}
    body["metadata"].setdefault("annotations", {}).update({LEASE_BUSY: "false", LEASE_HOLDER: ""})
    return body


def write(kube: Kube, namespace: str, current: dict | None, body: dict,
          timeout: float) -> dict | None:
    """Create or replace the Lease; None when another writer came first (409)."""
    try:
        if current is None:
            return kube.request("POST", LEASE_RT.path(namespace), body, timeout=timeout,
                                attempts=1)
        return kube.request("PUT", LEASE_RT.path(namespace, body["metadata"]["name"]), body,
                            timeout=timeout, attempts=1)
    except ApiError as e:
        if e.status == 409:
            return None
        raise


def command_identity() -> tuple[str, str]:
    """(holderIdentity, note) of this process: who and what, for the one who has to wait."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    words = [Path(sys.argv[0]).name, *[a for a in sys.argv[1:2] if not a.startswith("-")]]
    return f"{user}@{socket.gethostname()} pid {os.getpid()}", " ".join(words)


class SyncLock:
    """The lock held by a command while it writes one sync, renewed in a daemon thread."""

    def __init__(self, kube: Kube, sync: str, identity: str = "", note: str = "",
                 namespace: str = NAMESPACE):
        default_identity, default_note = command_identity()
        self.kube, self.sync, self.namespace = kube, sync, namespace
        self.name = lease_name(sync)
        self.identity, self.note = identity or default_identity, note or default_note
        self._lease: dict | None = None  # as last stored by us
        self._renewed = -math.inf
        self._lost = ""  # why, once lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def acquire(self, timeout: float, emit: events.EventSink = events.ignore) -> None:
        """Take the lock, waiting up to `timeout` seconds for a busy holder to finish."""
        deadline = time.monotonic() + timeout
        observer, told = Observer(), ""
        while True:
            lease = read(self.kube, self.namespace, self.name, RENEW_DEADLINE / 2)
            if lease is None:
                self._ensure_namespace()
            observer.see(lease)
            holder = Holder.of(lease) if lease else None
            if holder is None or not holder.identity or not holder.busy \
                    or holder.identity == self.identity or observer.expired(lease, LEASE_SECONDS):
                if self._take(lease):
                    return
                continue  # someone wrote in between: look again at once
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"sync {self.sync!r}: locked by {holder} ({self.where}); waited "
                    f"{_duration(timeout)} (--lock-timeout). Run again when that writer has "
                    f"finished, or give a longer --lock-timeout; a writer that died releases "
                    f"the lock {LEASE_SECONDS:.0f}s after its last renewal. Nothing was changed.")
            if told != holder.identity:
                told = holder.identity
                emit(events.Message(f"sync {self.sync}: waiting up to {_duration(timeout)} "
                                    f"for the lock held by {holder}"))
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))

    def _ensure_namespace(self) -> None:
        """A fresh cluster has no gitops-restore-system yet: the first writer makes it."""
        if self.kube.get(NAMESPACE_RT, "", self.namespace) is None:
            self.kube.apply(NAMESPACE_RT, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": self.namespace, "labels": managed_labels()}})

    def _take(self, lease: dict | None) -> bool:
        body = claim(lease, self.namespace, self.name, self.identity, self.note, True,
                     LEASE_SECONDS)
        stored = write(self.kube, self.namespace, lease, body, RENEW_DEADLINE / 2)
        if stored is None:
            return False
        with self._mutex:
            self._lease, self._renewed, self._lost = stored, time.monotonic(), ""
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"lock-{self.sync}",
                                        daemon=True)
        self._thread.start()
        return True

    def _renew_loop(self) -> None:
        while not self._stop.wait(RETRY_PERIOD):
            try:
                self._renew()
            except ApiError:
                pass  # `check` fails once the renew deadline passes without a renewal
            if self._lost:
                return

    def _renew(self) -> None:
        started = time.monotonic()
        with self._mutex:
            current = self._lease
        stored = write(self.kube, self.namespace, current,
                       claim(current, self.namespace, self.name, self.identity, self.note,
                             True, LEASE_SECONDS), RENEW_DEADLINE / 2)
        if stored is None:  # written by someone else since our last write
            fresh = read(self.kube, self.namespace, self.name, RENEW_DEADLINE / 2)
            holder = Holder.of(fresh) if fresh else None
            if holder is None or holder.identity != self.identity:
                with self._mutex:
                    self._lost = f"it was taken over by {holder}" if holder else "it was deleted"
                return
            with self._mutex:
                self._lease = fresh
            return
        with self._mutex:
            self._lease, self._renewed = stored, started

    def check(self, doing: str) -> None:
        with self._mutex:
            lost = self._lost
            if not lost and time.monotonic() - self._renewed >= RENEW_DEADLINE:
                lost = f"it could not be renewed for {RENEW_DEADLINE:.0f}s"
        if lost:
            raise LockLost(f"sync {self.sync!r}: lost the lock ({self.where}): {lost}; stopped "
                           f"before {doing}. What was applied is owned by the inventory; run "
                           "again to converge.")

    def release(self) -> None:
        """Stop renewing and give the lock up, if still ours (errors only delay the next
        writer by one lease duration)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(RENEW_DEADLINE)
        try:
            lease = read(self.kube, self.namespace, self.name, RENEW_DEADLINE / 2)
            if lease and Holder.of(lease).identity == self.identity:
                write(self.kube, self.namespace, lease, released(lease), RENEW_DEADLINE / 2)
        except ApiError:
            pass


def acquire(kube: Kube, sync: str, timeout: float,
            emit: events.EventSink = events.ignore) -> SyncLock:
    held = SyncLock(kube, sync)
    held.acquire(timeout, emit)
    return held


def checked(emit: events.EventSink, guard: Guard) -> events.EventSink:
    """`emit`, checking the lock before every phase that writes objects."""

    def sink(event: events.Event) -> None:
        if isinstance(event, events.PhaseStarted) and event.phase.startswith(("apply", "prune")):
            guard.check(f"phase {event.phase}")
        emit(event)

    return sink


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"

