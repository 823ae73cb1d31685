"""What one sync attempt came to: an Outcome, and the Sync status that records it.

Pure functions (no I/O but one local Git lookup), called by `loop` after each attempt:
`succeeded(report)` / `failed(error, spec)` classify, `status(...)` builds the status patch.

Stalled or retrying comes from the kind of error (sync_agent/errors.py): refused input is
Stalled (the same commit and spec are refused again), every other kind ProgressingWithRetry.
The loop tries again with backoff either way, so a new commit or spec is picked up.

Failure reasons (status condition reason, Event reason, `errors_total{reason}`):
  GitOperationFailed         the repository could not be fetched (server down, auth, network)
  HostKeyVerificationFailed  the server's host key is not the pinned one: refused
  DeployKeyError             the deploy-key Secret is missing or incomplete
  ValidationFailed           the commit does not render or validate (nothing was changed);
                             Stalled until a new commit or spec
  ApplyFailed / PruneFailed  the API server refused a write (what was applied stays owned)
  InventoryError             the inventory cannot be read or written
  APIServerError             any other API server error (unreachable, 5xx, forbidden)
  InvalidSpec                the Sync's spec cannot be used; Stalled until it changes
  SignatureVerificationFailed  spec.verify refused the commit (unsigned, unknown key, bad
                             signature): nothing applied; Stalled until a new commit
  VerifyKeysError            the Secret of trusted keys is missing or holds no usable key
  InternalError              a bug: the message and the agent's log say where
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sync_agent import conventions, engine, errors, signatures, source
from sync_agent.agent import deploykey, syncobject, verifykeys
from sync_agent.agent.syncobject import READY, RECONCILING, STALLED, Condition
from sync_agent.apply import ApplyError
from sync_agent.errors import RenderError, SourceError, SyncError
from sync_agent.git_process import GitTimeout
from sync_agent.inventory import InventoryError
from sync_agent.kube import ApiError

log = logging.getLogger(__name__)
_HOST_KEY_SIGNS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
                   "No ED25519 host key is known", "host key for", "Host key for")
_MESSAGE_LIMIT = 4000
REFUSED = "SignatureVerificationFailed"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    reason: str
    message: str
    revision: str = ""  # the commit applied, or attempted when known
    counts: dict[str, int] = field(default_factory=dict)
    changed: bool = False
    stalled: bool = False  # retrying the same input cannot help

    @property
    def refused(self) -> bool:
        """A commit refused by spec.verify (counted apart in the metrics)."""
        return self.reason == REFUSED


def succeeded(report: engine.Report) -> Outcome:
    counts = report.changes.count()
    rev = report.revision
    words = ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "no objects"
    if report.errors:  # applied, but some prunes failed: retried next time
        return Outcome(False, "PruneFailed", _trim("; ".join(report.errors)), rev.sha, counts,
                       report.changes.changed)
    return Outcome(True, "Succeeded", f"Applied revision {rev.ref}@sha1:{rev.sha}: {words}",
                   rev.sha, counts, report.changes.changed)


def failed(error: Exception, spec: syncobject.SyncSpec) -> Outcome:
    reason = _reason(error)
    if reason == "InternalError":
        log.error("unexpected error during sync", exc_info=error)
    problems = getattr(error, "problems", None)
    message = "; ".join(problems) if problems else str(error) or type(error).__name__
    unknown = isinstance(error, SourceError | GitTimeout | deploykey.DeployKeyError)
    revision = "" if unknown else _known_revision(spec)
    return Outcome(False, reason, _trim(message), revision,
                   stalled=errors.kind(error) is errors.Refused)


def _reason(error: Exception) -> str:
    match error:
        case deploykey.DeployKeyError():
            return "DeployKeyError"
        case verifykeys.VerifyKeysError():
            return "VerifyKeysError"
        case signatures.SignatureError():
            return REFUSED
        case SourceError() if any(sign in str(error) for sign in _HOST_KEY_SIGNS):
            return "HostKeyVerificationFailed"
        case SourceError() | GitTimeout():
            return "GitOperationFailed"
        case ApplyError():
            return "ApplyFailed"
        case RenderError():  # ValidationError too
            return "ValidationFailed"
        case InventoryError():
            return "InventoryError"
        case ApiError():
            return "APIServerError"
        case syncobject.InvalidSpec():
            return "InvalidSpec"
        case SyncError():
            return "SyncFailed"
    return "InternalError"


def _known_revision(spec: syncobject.SyncSpec) -> str:
    """The commit the target names in the local mirror (already fetched), if any."""
    return source.local_sha(spec.repo, spec.target)


def _trim(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT - 15] + " ... (cut)"


def status(outcome: Outcome, obj: syncobject.SyncObject, previous: dict[str, Any],
           failures: int, seconds: float, identity: str, retry_in: float) -> dict[str, Any]:
    """The status patch after an attempt (merge patch: None removes a field)."""
    stamp = conventions.utc_now()
    patch: dict[str, Any] = {"observedGeneration": obj.generation, "lastSyncTime": stamp,
                             "lastSyncSeconds": round(seconds, 3), "agent": identity,
                             "consecutiveFailures": failures}
    if outcome.revision:
        patch["lastAttemptedRevision"] = outcome.revision
    if outcome.ok:
        patch.update(lastAppliedRevision=outcome.revision, lastAppliedRef=obj.spec.target,
                     lastAppliedTime=stamp, lastError=None,
                     counts={k: outcome.counts.get(k, 0) for k in syncobject.COUNT_KEYS})
        conditions = [Condition(READY, True, outcome.reason, outcome.message),
                      Condition(RECONCILING, False, outcome.reason, ""),
                      Condition(STALLED, False, outcome.reason, "")]
    else:
        patch["lastError"] = outcome.message
        if outcome.counts:  # a partial success (PruneFailed): what was done still counts
            patch["counts"] = {k: outcome.counts.get(k, 0) for k in syncobject.COUNT_KEYS}
            patch.update(lastAppliedRevision=outcome.revision, lastAppliedRef=obj.spec.target,
                         lastAppliedTime=stamp)
        kept = previous.get("lastAppliedRevision")
        still = f"; the cluster keeps revision {kept}" if kept else ""
        retry = f"retrying in {retry_in:.0f}s (attempt {failures})"
        conditions = [Condition(READY, False, outcome.reason, outcome.message),
                      Condition(RECONCILING, not outcome.stalled,
                                "Stalled" if outcome.stalled else "ProgressingWithRetry",
                                "" if outcome.stalled else retry + still),
                      Condition(STALLED, outcome.stalled, outcome.reason if outcome.stalled
                                else "Retrying", (outcome.message if outcome.stalled else ""))]
    patch["conditions"] = syncobject.merge_conditions(previous.get("conditions") or [],
                                                      conditions, obj.generation)
    return patch


def suspended_status(obj: syncobject.SyncObject) -> dict[str, Any]:
    conditions = [Condition(RECONCILING, False, "Suspended",
                            "spec.suspend is true: nothing is applied until it is resumed")]
    return {"observedGeneration": obj.generation,
            "conditions": syncobject.merge_conditions(obj.status.get("conditions") or [],
                                                      conditions, obj.generation)}
