"""The agent's Prometheus metrics, in a registry of their own (no process-global state).

prometheus_client (the Prometheus project's own Python client) does the exposition format,
label escaping and counter semantics; hand-written text would have to get all three right.

  gitops_restore_last_sync_timestamp_seconds{sync}    end of the last successful sync
  gitops_restore_last_attempt_timestamp_seconds{sync} end of the last attempt, failed or not
  gitops_restore_sync_duration_seconds{sync}          histogram of attempt durations
  gitops_restore_objects_total{sync,action}           objects handled, by action
  gitops_restore_sync_errors_total{sync,reason}       failed attempts, by reason
  gitops_restore_signature_refusals_total{sync}       attempts refused by spec.verify
  gitops_restore_revision_info{sync,revision,ref,repo} the applied revision (value 1)
  gitops_restore_leader{sync}                         1 while this process is the leader
  gitops_restore_suspended{sync}                      1 while spec.suspend is set
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass
class Metrics:
    sync: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.last_sync = Gauge("gitops_restore_last_sync_timestamp_seconds",
                               "Unix time the last successful sync finished.", ["sync"],
                               registry=r)
        self.last_attempt = Gauge("gitops_restore_last_attempt_timestamp_seconds",
                                  "Unix time the last sync attempt finished.", ["sync"],
                                  registry=r)
        self.duration = Histogram("gitops_restore_sync_duration_seconds",
                                  "Duration of sync attempts.", ["sync"], buckets=_BUCKETS,
                                  registry=r)
        self.objects = Counter("gitops_restore_objects", "Objects handled by action.",
                               ["sync", "action"], registry=r)
        self.errors = Counter("gitops_restore_sync_errors", "Failed sync attempts by reason.",
                              ["sync", "reason"], registry=r)
        self.refusals = Counter("gitops_restore_signature_refusals",
                                "Sync attempts refused by spec.verify: the commit was "
                                "unsigned, signed by an untrusted key or badly signed.",
                                ["sync"], registry=r)
        self.revision = Info("gitops_restore_revision", "The revision last applied.",
                             ["sync"], registry=r)
        self.leader = Gauge("gitops_restore_leader", "1 while this process leads.", ["sync"],
                            registry=r)
        self.suspended = Gauge("gitops_restore_suspended", "1 while spec.suspend is true.",
                               ["sync"], registry=r)
        self.refusals.labels(self.sync)  # exported as 0 before the first refusal
        self.leader.labels(self.sync).set(0)
        self.suspended.labels(self.sync).set(0)

    def succeeded(self, seconds: float, finished: float, counts: dict[str, int],
                  revision: str, ref: str, repo: str) -> None:
        self.duration.labels(self.sync).observe(seconds)
        self.last_attempt.labels(self.sync).set(finished)
        self.last_sync.labels(self.sync).set(finished)
        for action, count in counts.items():
            self.objects.labels(self.sync, action).inc(count)
        self.revision.labels(self.sync).info({"revision": revision, "ref": ref, "repo": repo})

    def failed(self, seconds: float, finished: float, reason: str,
               refused: bool = False) -> None:
        self.duration.labels(self.sync).observe(seconds)
        self.last_attempt.labels(self.sync).set(finished)
        self.errors.labels(self.sync, reason).inc()
        if refused:
            self.refusals.labels(self.sync).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
