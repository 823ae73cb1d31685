"""Health: is every applied object ready, and if not, why — the last stage of the pipeline.

The apply stage calls `wait` after a staged apply (CRDs and Namespaces before what uses them)
and `--wait` calls it after the whole revision: it polls the API server until every object is
ready, one has failed for good, or time runs out, and returns the objects not ready with a
sentence each, including what their pods and Warning events say. `assess` holds the rules per
kind (after kstatus and Flux's ssa `manager_wait.go`); it is a pure function of the live object,
so the rules are tested without a cluster.
"""

from __future__ import annotations

import enum
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sync_agent import events
from sync_agent.conventions import EVENT_RT, POD_RT, SERVICE_RT
from sync_agent.kube import ApiError, Kube, ResourceType
from sync_agent.objects import ObjectRef

# Kinds whose reasons are completed with those of the pods their selector matches.
WORKLOADS = frozenset({("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"),
                       ("apps", "ReplicaSet"), ("", "ReplicationController"), ("batch", "Job")})
_GET_AT_MOST = 3  # more pending objects of one type in one namespace: one LIST, not GETs
_NAMESPACES_AT_MOST = 8  # a type pending in more namespaces: one LIST across all of them
_DETAILS = 3  # pod problems and events named per object
_DETAIL_NAMESPACES = 50  # namespaces whose pods and events are read for the final reasons
# How long a LoadBalancer Service may wait for a controller to take it on before the absence
# of any controller is concluded (MetalLB, kube-vip and kwok assign within a second; a cloud's
# service controller marks the Service with LB_FINALIZER as soon as it starts).
CONTROLLER_GRACE = 10.0
LB_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


class State(enum.Enum):
    READY = "ready"
    IN_PROGRESS = "in progress"
    FAILED = "failed"  # will not become ready without a change to the object: stop waiting
    # Waits for a controller the cluster does not have (a LoadBalancer Service where nothing
    # assigns addresses): a warning, since no wait can help and the object itself is fine.
    UNSERVED = "no controller"


@dataclass(frozen=True)
class Health:
    """The health of one object; `str()` is the line a timeout report shows."""

    ref: ObjectRef
    state: State
    reason: str  # a short human sentence; "" when ready

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    @property
    def warning(self) -> bool:
        return self.state is State.UNSERVED

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason or self.state.value}"


# --- rules: pure functions of the live object ---------------------------------------------

Verdict = tuple[State, str]


def assess(body: dict[str, Any]) -> Verdict:
    """The state of one live object and, unless ready, why."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if meta.get("deletionTimestamp"):
        return State.IN_PROGRESS, "being deleted"
    group = body.get("apiVersion", "").rpartition("/")[0]
    key = (group, body.get("kind", ""))
    observed = status.get("observedGeneration")
    generation = meta.get("generation", 0)
    if (observed is None and key in WORKLOADS and key != ("batch", "Job")) or (
            observed is not None and observed < generation):
        seen = "none" if observed is None else observed
        return State.IN_PROGRESS, (f"waiting for the controller to observe generation "
                                   f"{generation} (observed {seen})")
    rule = _RULES.get(key, _generic)
    return rule(body.get("spec") or {}, status)


def pod_problems(pod: dict[str, Any]) -> list[str]:
    """What keeps a pod from running: waiting or crashed containers, false conditions."""
    status = pod.get("status") or {}
    found = []
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = c.get("state") or {}
        if waiting := state.get("waiting"):
            found.append(f"container {c.get('name')}: {_explain(waiting) or 'waiting'}")
        elif (done := state.get("terminated")) and done.get("exitCode", 0) != 0:
            found.append(f"container {c.get('name')}: {_explain(done) or 'terminated'} "
                         f"(exit code {done['exitCode']})")
    for c in status.get("conditions") or []:
        # Ready and ContainersReady only summarise the containers named above.
        if c.get("status") == "False" and c.get("type") not in ("Ready", "ContainersReady"):
            found.append(f"{c.get('type')} False: {_explain(c) or 'no reason given'}")
    if not found and (ready := _condition(status, "Ready")) and ready.get("status") != "True":
        found.append(f"Ready {ready.get('status')}: {_explain(ready) or 'no reason given'}")
    return found


def _deployment(spec: dict, status: dict) -> Verdict:
    want, updated = _replicas(spec), status.get("updatedReplicas", 0)
    problems = _short(updated, want, "replicas updated")
    if (old := status.get("replicas", 0) - updated) > 0:
        problems.append(f"{old} old replicas pending termination")
    problems += _short(status.get("availableReplicas", 0), want, "replicas available")
    problems += [_explain(c) for c in [_true(status, "ReplicaFailure")] if c]
    progressing = _condition(status, "Progressing") or {}
    if problems and progressing.get("reason") == "ProgressDeadlineExceeded" \
            and progressing.get("status") == "False":
        return State.FAILED, "; ".join([_explain(progressing), *problems])
    return _verdict(problems)


def _statefulset(spec: dict, status: dict) -> Verdict:
    want, updated = _replicas(spec), status.get("updatedReplicas", 0)
    problems = _short(status.get("readyReplicas", 0), want, "replicas ready")
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        partition = (strategy.get("rollingUpdate") or {}).get("partition") or 0
        if partition:  # only the ordinals at or above the partition are updated
            problems += _short(updated, want - partition, f"replicas updated (partition "
                                                          f"{partition})")
        elif status.get("currentRevision") != status.get("updateRevision"):
            problems.append(f"rolling update to revision {status.get('updateRevision')} in "
                            f"progress: {updated}/{want} replicas updated")
    return _verdict(problems)


def _daemonset(spec: dict, status: dict) -> Verdict:
    desired = status.get("desiredNumberScheduled", 0)
    return _verdict(_short(status.get("updatedNumberScheduled", 0), desired, "pods updated")
                    + _short(status.get("numberReady", 0), desired, "pods ready"))


def _replicaset(spec: dict, status: dict) -> Verdict:
    problems = _short(status.get("readyReplicas", 0), _replicas(spec), "replicas ready")
    return _verdict(problems + [_explain(c) for c in [_true(status, "ReplicaFailure")] if c])


def _job(spec: dict, status: dict) -> Verdict:
    # FailureTarget: the Job is failing and only waits for its pods to terminate.
    if failed := _true(status, "Failed") or _true(status, "FailureTarget"):
        return State.FAILED, f"job failed: {_explain(failed)}"
    if _true(status, "Complete"):
        return State.READY, ""
    if _true(status, "Suspended"):
        return State.IN_PROGRESS, "job is suspended"
    succeeded, active = status.get("succeeded", 0), status.get("active", 0)
    of = f"/{spec['completions']}" if spec.get("completions") else ""
    return State.IN_PROGRESS, f"{succeeded}{of} pods succeeded, {active} running"


def _pvc(spec: dict, status: dict) -> Verdict:
    phase = status.get("phase") or "Pending"
    if phase == "Bound":
        return State.READY, ""
    if phase == "Lost":
        return State.FAILED, "claim lost its volume (phase Lost)"
    return State.IN_PROGRESS, f"not bound to a volume yet (phase {phase})"


def _pod(spec: dict, status: dict) -> Verdict:
    phase = status.get("phase") or "Pending"
    if phase == "Succeeded" or _true(status, "Ready"):
        return State.READY, ""
    problems = pod_problems({"status": status})
    if phase == "Failed":
        return State.FAILED, "; ".join([f"pod failed: {_explain(status) or 'phase Failed'}",
                                        *problems])
    return State.IN_PROGRESS, "; ".join(problems) or f"phase {phase}"


def _service(spec: dict, status: dict) -> Verdict:
    if spec.get("type") == "LoadBalancer" and not (status.get("loadBalancer") or {}).get(
            "ingress"):
        return State.IN_PROGRESS, "waiting for a load balancer address (no ingress yet)"
    return State.READY, ""


def _crd(spec: dict, status: dict) -> Verdict:
    if (names := _condition(status, "NamesAccepted") or {}).get("status") == "False":
        return State.FAILED, f"names not accepted: {_explain(names)}"
    return _condition_verdict(status, "Established", "not established yet")


def _generic(spec: dict, status: dict) -> Verdict:
    # kstatus' convention for custom resources: Stalled=True means it gave up.
    if stalled := _true(status, "Stalled"):
        return State.FAILED, f"stalled: {_explain(stalled)}"
    if _condition(status, "Ready") is None:
        return State.READY, ""
    return _condition_verdict(status, "Ready", "not ready yet")


_RULES: dict[tuple[str, str], Callable[[dict, dict], Verdict]] = {
    ("apps", "Deployment"): _deployment, ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset, ("apps", "ReplicaSet"): _replicaset,
    ("", "ReplicationController"): _replicaset, ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): _pvc, ("", "Pod"): _pod, ("", "Service"): _service,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    ("", "Namespace"): lambda spec, status: _verdict(
        [] if status.get("phase") == "Active" else [f"phase {status.get('phase') or 'unknown'}"]),
    ("apiregistration.k8s.io", "APIService"): lambda spec, status: _condition_verdict(
        status, "Available", "not available yet"),
}


def _replicas(spec: dict) -> int:
    replicas = spec.get("replicas")
    return 1 if replicas is None else replicas


def _condition(status: dict, kind: str) -> dict | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def _true(status: dict, kind: str) -> dict | None:
    """The condition of that type if its status is True."""
    condition = _condition(status, kind)
    return condition if condition and condition.get("status") == "True" else None


def _short(have: int, want: int, what: str) -> list[str]:
    return [f"{have}/{want} {what}"] if have < want else []


def _explain(item: dict) -> str:
    """`Reason: message` of a condition, container state or pod status, as far as given."""
    return ": ".join(part for part in (item.get("reason"), item.get("message")) if part)


def _condition_verdict(status: dict, kind: str, otherwise: str) -> Verdict:
    if _true(status, kind):
        return State.READY, ""
    return State.IN_PROGRESS, _explain(_condition(status, kind) or {}) or otherwise


def _verdict(problems: list[str]) -> Verdict:
    return (State.IN_PROGRESS, "; ".join(problems)) if problems else (State.READY, "")


# --- polling --------------------------------------------------------------------------------

def wait(kube: Kube, targets: Sequence[tuple[ResourceType, ObjectRef]], timeout: float,
         interval: float = 1.0, emit: events.EventSink = events.ignore,
         phase: str = "health") -> list[Health]:
    """Poll until every target is ready, one has FAILED, or `timeout` seconds pass.

    Returns the targets not ready (empty when all are), sorted by reference; those waiting for
    a controller the cluster lacks are among them as UNSERVED (`Health.warning`), concluded
    after CONTROLLER_GRACE instead of waiting out the timeout. Emits
    PhaseStarted(phase, total), ObjectDone(phase, ref, "ready") as each turns ready,
    ObjectDone(phase, ref, "failed") for each that failed for good, ObjectDone(phase, ref,
    "warning") for each unserved, and PhaseFinished.
    """
    started = time.monotonic()
    deadline = started + timeout
    pending = {ref: rt for rt, ref in targets}
    emit(events.PhaseStarted(phase, len(pending)))
    last: dict[ObjectRef, tuple[State, str, dict | None]] = {}
    unserved: dict[ObjectRef, str] = {}
    next_check = started + CONTROLLER_GRACE
    # Rollouts on a healthy cluster finish within a second or so: poll fast at first, so the
    # recovery time measured is the cluster's, not our polling interval's.
    delay = min(0.1, interval)
    while True:
        failed = False
        for ref, body in _fetch(kube, pending).items():
            state, reason = assess(body) if body is not None else (State.IN_PROGRESS, "not found")
            if state is State.READY:
                del pending[ref]
                emit(events.ObjectDone(phase, ref, "ready"))
            else:
                last[ref] = (state, reason, body)
                failed = failed or state is State.FAILED
        remaining = deadline - time.monotonic()
        waiting = {ref: last[ref][2] for ref in pending if _awaits_address(last[ref][2])}
        if waiting and (remaining <= 0 or failed or (
                len(waiting) == len(pending) and time.monotonic() >= next_check)):
            for ref, reason in _unserved(kube, waiting).items():
                del pending[ref]
                unserved[ref] = reason
                emit(events.ObjectDone(phase, ref, "warning"))
            next_check = time.monotonic() + CONTROLLER_GRACE
        if not pending or failed or remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, interval)
    result = _with_details(kube, [(ref, *last[ref]) for ref in sorted(pending)])
    for health in result:
        if health.state is State.FAILED:
            emit(events.ObjectDone(phase, health.ref, "failed"))
    result += [Health(ref, State.UNSERVED, reason) for ref, reason in unserved.items()]
    emit(events.PhaseFinished(phase, time.monotonic() - started))
    return sorted(result, key=lambda h: h.ref)


def _awaits_address(body: dict | None) -> bool:
    return body is not None and body.get("kind") == "Service" and \
        (body.get("spec") or {}).get("type") == "LoadBalancer" and \
        not ((body.get("status") or {}).get("loadBalancer") or {}).get("ingress")


def _unserved(kube: Kube, waiting: dict[ObjectRef, dict]) -> dict[ObjectRef, str]:
    """The LoadBalancer Services among `waiting` that no controller serves: no Service of
    their class anywhere in the cluster has an address, and none took them on (a cloud's
    service controller adds LB_FINALIZER as it starts)."""
    served = {(s.get("spec") or {}).get("loadBalancerClass") for s in _list(kube, SERVICE_RT, "")
              if ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress")}
    found = {}
    for ref, body in waiting.items():
        lb_class = body["spec"].get("loadBalancerClass")
        if lb_class in served or LB_FINALIZER in (body["metadata"].get("finalizers") or []):
            continue
        if lb_class:
            found[ref] = (f"no controller serves loadBalancerClass {lb_class}: no Service of "
                          "that class in the cluster has an address; reachable inside the "
                          "cluster at its ClusterIP")
        else:
            found[ref] = ("no load-balancer controller in this cluster (a cloud provider's "
                          "service controller, MetalLB or kube-vip): no Service of type "
                          "LoadBalancer has an address; reachable inside the cluster at its "
                          "ClusterIP")
    return found


def _fetch(kube: Kube, pending: dict[ObjectRef, ResourceType]) -> dict[ObjectRef, dict | None]:
    """The live body of each pending object (None when gone), with few requests."""
    groups: dict[tuple[ResourceType, str], list[ObjectRef]] = defaultdict(list)
    for ref, rt in pending.items():
        groups[(rt, ref.namespace if rt.namespaced else "")].append(ref)
    spread = Counter(rt for rt, _ in groups)
    wide = {rt: _index(_list(kube, rt, "")) for rt, count in spread.items()
            if rt.namespaced and count > _NAMESPACES_AT_MOST}
    live: dict[ObjectRef, dict | None] = {}
    for (rt, namespace), refs in groups.items():
        if rt not in wide and len(refs) <= _GET_AT_MOST:
            live.update((ref, kube.get(rt, namespace, ref.name)) for ref in refs)
            continue
        index = wide[rt] if rt in wide else _index(_list(kube, rt, namespace))
        live.update((ref, index.get((ref.namespace if rt.namespaced else "", ref.name)))
                    for ref in refs)
    return live


def _list(kube: Kube, rt: ResourceType, namespace: str) -> list[dict]:
    try:
        items = kube.list(rt, namespace)
    except ApiError as e:
        if e.status == 404:  # the type itself is gone (its CRD deleted): so are its objects
            return []
        raise
    for item in items:  # a LIST's items carry no apiVersion and kind; `assess` needs them
        item.setdefault("apiVersion", rt.api_version)
        item.setdefault("kind", rt.kind)
    return items


def _index(items: list[dict]) -> dict[tuple[str, str], dict]:
    return {(i["metadata"].get("namespace", ""), i["metadata"]["name"]): i for i in items}


# --- reasons from pods and events, read once when the wait ends ------------------------------

def _with_details(kube: Kube, stuck: list[tuple[ObjectRef, State, str, dict | None]]
                  ) -> list[Health]:
    namespaces = sorted({ref.namespace for ref, _, _, body in stuck
                         if ref.namespace and body is not None})[:_DETAIL_NAMESPACES]
    with_workloads = {ref.namespace for ref, *_ in stuck if (ref.group, ref.kind) in WORKLOADS}
    pods = {ns: _list(kube, POD_RT, ns) for ns in namespaces if ns in with_workloads}
    warnings = {ns: _warnings(kube, ns) for ns in namespaces}
    result = []
    for ref, state, reason, body in stuck:
        parts = [reason]
        related = {(ref.kind, ref.name)}
        if body is not None and ref.namespace in pods and (ref.group, ref.kind) in WORKLOADS:
            selector = (body.get("spec") or {}).get("selector") or {}
            matched = [p for p in pods[ref.namespace]
                       if _selects(selector, p["metadata"].get("labels") or {})
                       and assess(p)[0] is not State.READY]
            parts += _pod_details(matched)
            related |= {("Pod", p["metadata"]["name"]) for p in matched}
        parts += _event_details(warnings.get(ref.namespace, []), ref, related, "; ".join(parts))
        result.append(Health(ref, state, "; ".join(p for p in parts if p)))
    return result


def _pod_details(pods: list[dict]) -> list[str]:
    """One line per distinct problem, naming the first pod that has it."""
    by_problem: dict[str, list[str]] = {}
    for pod in pods:
        problem = "; ".join(pod_problems(pod)) or f"phase {pod.get('status', {}).get('phase')}"
        by_problem.setdefault(problem, []).append(pod["metadata"]["name"])
    lines = []
    for problem, names in list(by_problem.items())[:_DETAILS]:
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        lines.append(f"pod {names[0]}{more}: {problem}")
    return lines


def _warnings(kube: Kube, namespace: str) -> list[dict]:
    """The namespace's Warning events, newest first (one page: a report, not an audit)."""
    query = {"fieldSelector": "type=Warning", "limit": 500}
    items = kube.request("GET", EVENT_RT.path(namespace), query=query).get("items", [])
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime")
                  or e["metadata"].get("creationTimestamp", ""), reverse=True)


def _event_details(warnings: list[dict], ref: ObjectRef, related: set[tuple[str, str]],
                   said: str) -> list[str]:
    lines: list[str] = []
    for event in warnings:
        involved = event.get("involvedObject") or {}
        kind, name = involved.get("kind", ""), involved.get("name", "")
        # A Deployment's ReplicaSets are named `<deployment>-<template hash>`.
        owned_rs = (ref.kind == "Deployment" and kind == "ReplicaSet"
                    and name.rpartition("-")[0] == ref.name)
        if (kind, name) not in related and not owned_rs:
            continue
        reason = event.get("reason", "")
        message = (event.get("message") or "").removeprefix("(combined from similar events): ")
        if (reason and reason in said) or message in said:
            continue
        lines.append(f"event {reason}: {message}")
        said += f"; {reason}: {message}"
        if len(lines) == _DETAILS:
            break
    return lines


def _selects(selector: dict, labels: dict[str, str]) -> bool:
    """Whether a label selector matches; a ReplicationController's selector is a plain map."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, values = expression.get("key"), expression.get("values") or []
        operator = expression.get("operator")
        if (operator == "In" and labels.get(key) not in values) or (
                operator == "NotIn" and key in labels and labels[key] in values) or (
                operator == "Exists" and key not in labels) or (
                operator == "DoesNotExist" and key in labels):
            return False
    return True
