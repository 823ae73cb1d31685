"""Apply order as data: which stage a kind belongs to, and a deterministic order inside it.

Learned from Flux's staged apply, Argo CD's kind order and Velero's restore priorities:
definitions first (CRDs, Namespaces: wait until Established/Active), then cluster-wide policy
and classes, then the namespaced configuration workloads read, then workloads, then everything
else (custom resources), and admission webhooks last so they cannot block the restore itself.
Prune walks the stages in reverse. Helm pre-install/pre-upgrade hooks (helm/hooks.py) form
their own stage right after the definitions, before any object of their release.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sync_agent.objects import ObjectRef


@dataclass(frozen=True)
class Stage:
    name: str
    kinds: frozenset[str]  # "Kind" or "Kind.group"; empty = decided by a predicate below
    wait_ready: bool = False  # wait for every object of the stage to be ready before the next


DEFINITIONS = Stage("definitions", frozenset({
    "CustomResourceDefinition.apiextensions.k8s.io", "Namespace"}), wait_ready=True)
PRE_HOOKS = Stage("helm-pre-hooks", frozenset())  # chosen by the caller, not by kind
CLUSTER = Stage("cluster", frozenset({
    "ClusterRole.rbac.authorization.k8s.io", "ClusterRoleBinding.rbac.authorization.k8s.io",
    "PriorityClass.scheduling.k8s.io", "StorageClass.storage.k8s.io",
    "PersistentVolume", "APIService.apiregistration.k8s.io"}))
CONFIG = Stage("config", frozenset({
    "ServiceAccount", "Role.rbac.authorization.k8s.io", "RoleBinding.rbac.authorization.k8s.io",
    "ConfigMap", "Secret", "PersistentVolumeClaim", "Service", "LimitRange", "ResourceQuota",
    "NetworkPolicy.networking.k8s.io", "PodDisruptionBudget.policy"}))
WORKLOADS = Stage("workloads", frozenset({
    "Deployment.apps", "StatefulSet.apps", "DaemonSet.apps", "ReplicaSet.apps",
    "ReplicationController", "Job.batch", "CronJob.batch", "Pod",
    "HorizontalPodAutoscaler.autoscaling"}))
OTHER = Stage("other", frozenset())
WEBHOOKS = Stage("webhooks", frozenset({
    "MutatingWebhookConfiguration.admissionregistration.k8s.io",
    "ValidatingWebhookConfiguration.admissionregistration.k8s.io",
    "ValidatingAdmissionPolicy.admissionregistration.k8s.io",
    "ValidatingAdmissionPolicyBinding.admissionregistration.k8s.io"}))

STAGES: tuple[Stage, ...] = (DEFINITIONS, PRE_HOOKS, CLUSTER, CONFIG, WORKLOADS, OTHER, WEBHOOKS)


def stage_of(ref: ObjectRef) -> Stage:
    for stage in STAGES:
        if ref.group_kind in stage.kinds:
            return stage
    # Any cluster-wide *Class kind (IngressClass, RuntimeClass, GatewayClass, ...) is policy.
    if not ref.namespace and ref.kind.endswith("Class"):
        return CLUSTER
    return OTHER


def group_by_stage(refs: Iterable[ObjectRef], pre_hooks: frozenset[ObjectRef] = frozenset()
                   ) -> list[tuple[Stage, list[ObjectRef]]]:
    """Stages in apply order, each with its objects sorted by kind, namespace and name."""
    buckets: dict[str, list[ObjectRef]] = {stage.name: [] for stage in STAGES}
    for ref in refs:
        stage = PRE_HOOKS if ref in pre_hooks and stage_of(ref) is not DEFINITIONS \
            else stage_of(ref)
        buckets[stage.name].append(ref)
    return [(stage, sorted(buckets[stage.name], key=_sort_key))
            for stage in STAGES if buckets[stage.name]]


def _sort_key(ref: ObjectRef) -> tuple[str, str, str, str]:
    return (ref.kind, ref.group, ref.namespace, ref.name)
