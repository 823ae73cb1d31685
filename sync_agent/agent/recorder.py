"""Kubernetes Events about a Sync object (core v1 Events, as `kubectl describe` shows them).

The loop records one Event per outcome that matters (a revision applied, a failure and its
reason). An Event repeating the previous one of the same reason and message is counted on
that Event instead of creating another, as client-go's event correlator does, so a Git server
that stays down for an hour makes one Event with a growing count, not hundreds.
Recording never raises: an Event is a courtesy, the status is the record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sync_agent.agent import syncobject
from sync_agent.conventions import EVENT_RT, utc_now
from sync_agent.kube import ApiError, Kube

COMPONENT = "gitops-restore-agent"
NORMAL, WARNING = "Normal", "Warning"
_MESSAGE_LIMIT = 1024

log = logging.getLogger(__name__)


@dataclass
class Recorder:
    kube: Kube
    identity: str
    _last: dict[tuple[str, str, str, str], tuple[str, int]] = field(default_factory=dict)

    def record(self, obj: syncobject.SyncObject, kind: str, reason: str, message: str) -> None:
        message = message[:_MESSAGE_LIMIT]
        key = (obj.uid, kind, reason, message)
        stamp = utc_now()
        try:
            if key in self._last and self._bump(obj, key, stamp):
                return
            created = self.kube.request("POST", EVENT_RT.path(obj.namespace), {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{obj.name}.", "namespace": obj.namespace},
                "involvedObject": {"apiVersion": f"{syncobject.GROUP}/{syncobject.VERSION}",
                                   "kind": syncobject.KIND, "name": obj.name,
                                   "namespace": obj.namespace, "uid": obj.uid},
                "type": kind, "reason": reason, "message": message,
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT, "reportingInstance": self.identity[:128],
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1})
            self._last = {k: v for k, v in self._last.items() if k[:3] != key[:3]}
            self._last[key] = (created["metadata"]["name"], 1)
        except ApiError as e:
            log.warning("cannot record event", extra={"reason": reason, "error": str(e)})

    def _bump(self, obj: syncobject.SyncObject, key: tuple[str, str, str, str],
              stamp: str) -> bool:
        name, count = self._last[key]
        try:
            self.kube.request("PATCH", EVENT_RT.path(obj.namespace, name),
                              {"count": count + 1, "lastTimestamp": stamp},
                              content_type="application/merge-patch+json")
        except ApiError as e:
            if e.status == 404:  # expired (the API server keeps Events for an hour)
                del self._last[key]
                return False
            raise
        self._last[key] = (name, count + 1)
        return True
