"""The reconcile loop: read the Sync every second, sync when due, record what happened.

Called by `main` in the main thread. Each tick (`spec_poll`, 1 s) it reads the Sync object;
it syncs when this process leads (`lease`) and the spec is not suspended, and either the
interval has passed, the spec changed (a new generation: pin, unpin, resume, new path...),
or it just became leader. A sync is one `engine.restore` of the spec's target (the pinned
revision, else the branch head) with prune by inventory: the engine validates the whole
revision before the first write, so a bad commit changes nothing, and re-applies owned objects
edited or deleted by hand, so running it every interval is drift correction.

A failed attempt leaves the cluster as it was and is retried after 1, 2, 4 ... seconds, never
later than the interval; `attempts` classifies it (reason, whether retrying can help) and the
status, an Event and the metrics say why.

Stopping (SIGTERM): a sync that has not written anything yet is abandoned at its next phase;
one that has started applying is finished (the engine's write-ahead inventory would make a
kill safe too, but finishing leaves a complete record); the Lease is renewed until then
(`main`). A leader that loses its Lease stops at the next phase of any kind, and the engine
asks it (`Elector.check`) before every apply stage, prune and inventory write, since another
agent or a command may now be writing.

The Lease is also the sync's one-writer lock (`sync_agent.lock`): a sync runs between
`begin_sync` (the Lease marked busy, so no command takes it) and `end_sync` (idle again: a
`restore` may take it, and this agent stands by until it is released).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field, replace

from sync_agent import engine, events, lock, source
from sync_agent.agent import attempts, decryption, deploykey, syncobject, verifykeys
from sync_agent.agent.config import AgentConfig
from sync_agent.agent.lease import Elector
from sync_agent.agent.metrics import Metrics
from sync_agent.agent.recorder import NORMAL, WARNING, Recorder
from sync_agent.kube import ApiError, Kube

log = logging.getLogger(__name__)
_BEFORE_WRITES = ("signatures", "render", "validate")  # phases a shutdown may interrupt
_BACKOFF_BASE = 1.0


class Aborted(Exception):
    """Raised through the engine from its event sink to stop a sync at a phase boundary."""


@dataclass
class Loop:
    kube: Kube
    config: AgentConfig
    elector: Elector
    recorder: Recorder
    metrics: Metrics
    stop: threading.Event
    heartbeat: float = field(default_factory=time.monotonic)
    last_read: float = -1e9  # monotonic time the Sync object was last read
    problem: str = "the Sync object has not been read yet"  # why not ready, if so
    syncing_since: float | None = None
    _due: float = 0.0
    _generation: int = -1  # the generation the last attempt served
    _failures: int = 0
    _was_leader: bool = False
    _suspended_seen: int = -1
    _in_writes: bool = False

    def run(self) -> None:
        while not self.stop.is_set():
            self.heartbeat = time.monotonic()
            obj = self._read()
            leader = self.elector.is_leader()
            self.metrics.leader.labels(self.config.sync).set(1 if leader else 0)
            if leader != self._was_leader:
                self._was_leader = leader
                self._due = 0.0  # a new leader syncs at once
                if not leader:
                    log.info("standby: another agent holds the lease",
                             extra={"sync": self.config.sync})
            if obj is not None and leader:
                self._tick(obj)
            self.stop.wait(self.config.spec_poll)

    # --- one tick ----------------------------------------------------------------------------

    def _read(self) -> syncobject.SyncObject | None:
        name = f"{self.config.namespace}/{self.config.sync}"
        try:
            stored = syncobject.read(self.kube, self.config.namespace, self.config.sync)
            obj = syncobject.parse(stored) if stored else None
        except syncobject.InvalidSpec as e:
            self._set_problem(str(e))
            self.last_read = time.monotonic()
            return None
        except ApiError as e:
            self._set_problem(f"Sync {name}: cannot read it: {e}")
            return None
        self.last_read = time.monotonic()
        self._set_problem("" if obj else f"Sync {name} not found")
        return obj

    def _set_problem(self, problem: str) -> None:
        if problem != self.problem and problem:
            log.warning(problem, extra={"sync": self.config.sync})
        self.problem = problem

    def _tick(self, obj: syncobject.SyncObject) -> None:
        spec = obj.spec
        self.metrics.suspended.labels(obj.name).set(1 if spec.suspend else 0)
        if spec.suspend:
            if self._suspended_seen != obj.generation:
                self._suspended_seen = obj.generation
                self._generation = obj.generation
                self._write_suspended(obj)
            return
        self._suspended_seen = -1
        changed = obj.generation != self._generation
        if changed:
            self._failures = 0
        if changed or time.monotonic() >= self._due:
            self._sync(obj)

    # --- one sync ----------------------------------------------------------------------------

    def _sync(self, obj: syncobject.SyncObject) -> None:
        spec = obj.spec
        if not self.elector.begin_sync():
            return  # a command took the lock, or the Lease could not be written: next tick
        self._generation = obj.generation
        self._in_writes = False
        started = time.monotonic()
        self.syncing_since = started
        log.info("sync started", extra={"sync": obj.name, "target": spec.target,
                                         "generation": obj.generation})
        try:
            outcome = self._attempt(obj)
        except (Aborted, lock.LockLost) as e:
            log.info("sync abandoned", extra={"sync": obj.name, "why": str(e)})
            self._due = 0.0
            return
        finally:
            self.syncing_since = None
            self.elector.end_sync()
        seconds = time.monotonic() - started
        if outcome.ok:
            self._failures = 0
            self._due = time.monotonic() + self._interval(spec)
        else:
            self._failures += 1
            self._due = time.monotonic() + self._backoff(spec)
        if not self.elector.is_leader():
            return  # someone else may be writing the status now
        self._record(obj, outcome, seconds)

    def _attempt(self, obj: syncobject.SyncObject) -> attempts.Outcome:
        spec = obj.spec
        try:
            if spec.secret_name and source.is_remote(spec.repo) \
                    and not spec.repo.startswith("file://"):
                with deploykey.materialize(self.kube, obj.namespace, spec.secret_name) as auth:
                    report = self._restore(obj, auth)
            else:
                report = self._restore(obj, None)
        except (Aborted, lock.LockLost):
            raise
        except Exception as e:  # noqa: BLE001 (every failure is classified and reported)
            return attempts.failed(e, spec)
        return attempts.succeeded(report)

    def _restore(self, obj: syncobject.SyncObject,
                 auth: source.GitAuth | None) -> engine.Report:
        spec = obj.spec
        render = spec.render
        if spec.decryption_secret:
            keys = decryption.age_keys(self.kube, obj.namespace, spec.decryption_secret)
            render = replace(render, sops_keys=keys)
        source_spec = engine.SourceSpec(repo=spec.repo, ref=spec.target, path=spec.path,
                                        ignore=spec.ignore, auth=auth, render=render,
                                        verify=verifykeys.policy(self.kube, obj.namespace, spec))
        # The Sync object says which repository and path its sync follows: a changed spec (or
        # `agent resume` after a rollback that followed a moved directory) is the sync moving.
        options = engine.SyncOptions(sync_name=obj.name, namespace=spec.default_namespace,
                                     prune=spec.prune, workers=self.config.workers,
                                     take_over=True)
        return engine.restore(self.kube, source_spec, options, self._emit, guard=self.elector)

    def _emit(self, event: events.Event) -> None:
        if not isinstance(event, events.PhaseStarted):
            return
        if not event.phase.startswith(_BEFORE_WRITES):
            self._in_writes = True
        self.elector.check(f"phase {event.phase}")  # LockLost: another writer may be writing
        if self.stop.is_set() and not self._in_writes:
            raise Aborted(f"shutting down before phase {event.phase}")

    # --- results -----------------------------------------------------------------------------

    def _interval(self, spec: syncobject.SyncSpec) -> float:
        return self.config.interval or spec.interval

    def _backoff(self, spec: syncobject.SyncSpec) -> float:
        delay = _BACKOFF_BASE * 2 ** (self._failures - 1)
        return min(self._interval(spec), delay * random.uniform(0.9, 1.1))

    def _record(self, obj: syncobject.SyncObject, outcome: attempts.Outcome,
                seconds: float) -> None:
        finished = time.time()
        previous = obj.status
        status = attempts.status(outcome, obj, previous, self._failures, seconds,
                                 self.config.identity, max(0.0, self._due - time.monotonic()))
        if outcome.ok:
            self.metrics.succeeded(seconds, finished, outcome.counts, outcome.revision,
                                   obj.spec.target, source.redact(obj.spec.repo))
            log.info("sync applied", extra={"sync": obj.name, "revision": outcome.revision,
                                            "ref": obj.spec.target, **outcome.counts,
                                            "seconds": round(seconds, 3)})
            news = (outcome.changed or previous.get("lastAppliedRevision") != outcome.revision
                    or obj.condition(syncobject.READY).get("status") != "True")
            if news:
                self.recorder.record(obj, NORMAL, outcome.reason, outcome.message)
        else:
            self.metrics.failed(seconds, finished, outcome.reason, outcome.refused)
            log.warning("sync failed", extra={"sync": obj.name, "reason": outcome.reason,
                                              "error": outcome.message,
                                              "retry_in": round(self._due - time.monotonic(), 1)})
            self.recorder.record(obj, WARNING, outcome.reason, outcome.message)
        try:
            syncobject.write_status(self.kube, obj, status)
        except ApiError as e:
            log.warning("cannot write the Sync status", extra={"sync": obj.name,
                                                               "error": str(e)})

    def _write_suspended(self, obj: syncobject.SyncObject) -> None:
        log.info("suspended: not syncing until spec.suspend is false", extra={"sync": obj.name})
        self.recorder.record(obj, NORMAL, "Suspended", "spec.suspend is true: the agent "
                             "applies nothing until it is resumed")
        try:
            syncobject.write_status(self.kube, obj, attempts.suspended_status(obj))
        except ApiError as e:
            log.warning("cannot write the Sync status", extra={"sync": obj.name,
                                                               "error": str(e)})
