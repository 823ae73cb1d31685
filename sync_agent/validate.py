"""Validate a rendered revision against the cluster before anything is written.

Called by the engine after render and before plan: resolves every object's kind to a served
API (or to a CRD declared in the same revision), defaults namespaces as kubectl does, finds
duplicates, unknown kinds, removed API versions and missing namespaces, and returns the
objects ready to send with every problem found. `plan` adds the problems of its server-side
dry-run, also before the first write, and raises one ValidationError listing them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sync_agent import digests
from sync_agent import discovery as discovery_mod
from sync_agent.changes import Desired
from sync_agent.conventions import NAMESPACE_RT, SYNC_LABEL
from sync_agent.discovery import Discovery
from sync_agent.objects import ObjectRef, Origin, Resource, ResourceType

# The origin of a Namespace that --create-namespaces adds: used by the revision, declared by none.
CREATED_NAMESPACE = Origin("--create-namespaces", 0)


@dataclass(frozen=True)
class ValidateOptions:
    sync_name: str
    default_namespace: str = "default"
    create_namespaces: bool = False
    # Namespaces this sync created (they carry its label): with create_namespaces they stay
    # declared on every later run, so prune never takes them and verify expects them.
    owned_namespaces: frozenset[str] = frozenset()
    # Keys the digests of secret objects (`digests.cluster_key`); without it they get none.
    digest_key: bytes = field(default=b"", repr=False)


def prepare(resources: Sequence[Resource], found: Discovery, existing_namespaces: set[str],
            options: ValidateOptions) -> tuple[list[Desired], list[str]]:
    """The objects to send, and the problems found; the caller dry-runs the objects and
    reports every problem at once."""
    problems: list[str] = []
    declared_crds = _declared_crd_types(resources)
    desired: list[Desired] = []
    seen: dict[ObjectRef, Origin] = {}
    for resource in resources:
        rt, deferred = _resource_type(resource, found, declared_crds, problems)
        if rt is None:
            continue
        # Copy only what we change (metadata); the rest is shared with the rendered object,
        # which nothing modifies. A deep copy of 10,000 objects costs half a second.
        body = dict(resource.body)
        meta = body["metadata"] = dict(body["metadata"])
        meta["labels"] = dict(meta.get("labels") or {})
        if rt.namespaced:
            meta["namespace"] = meta.get("namespace") or options.default_namespace
        else:
            meta.pop("namespace", None)
        meta["labels"][SYNC_LABEL] = options.sync_name
        ref = ObjectRef(rt.group, rt.kind, meta.get("namespace", ""), meta["name"])
        if ref in seen:
            problems.append(f"{resource.origin}: {ref} is also declared in {seen[ref]}; "
                            "declare each object once (or leave one file out with --ignore)")
            continue
        seen[ref] = resource.origin
        secret = resource.decrypted or (rt.group, rt.kind) == ("", "Secret")
        desired.append(Desired(ref=ref, rt=rt, body=body, origin=resource.origin,
                               digest=digests.of_body(body, secret, options.digest_key),
                               deferred=deferred, decrypted=resource.decrypted))

    declared_namespaces = {d.ref.name for d in desired if d.ref.kind == "Namespace"}
    undeclared = {d.ref.namespace for d in desired if d.ref.namespace} - declared_namespaces
    missing = sorted(undeclared - existing_namespaces)
    if options.create_namespaces:
        for name in sorted((undeclared & options.owned_namespaces) | set(missing)):
            body = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {SYNC_LABEL: options.sync_name}}}
            desired.append(Desired(ref=ObjectRef("", "Namespace", "", name), rt=NAMESPACE_RT,
                                   body=body, origin=CREATED_NAMESPACE,
                                   digest=digests.plain(body)))
        missing = []
    for name in missing:
        users = [d for d in desired if d.ref.namespace == name]
        problems.append(f"{users[0].origin}: {users[0].ref} is in namespace {name!r}, which "
                        f"neither exists nor is declared in the revision ({len(users)} object(s) "
                        "use it); declare the Namespace or pass --create-namespaces")
    return desired, problems


def _declared_crd_types(resources: Sequence[Resource]) -> dict[tuple[str, str, str], ResourceType]:
    declared = {}
    for resource in resources:
        if resource.kind == "CustomResourceDefinition" and resource.group == "apiextensions.k8s.io":
            for rt in discovery_mod.from_crd(resource.body):
                declared[(rt.group, rt.version, rt.kind)] = rt
    return declared


def _resource_type(resource: Resource, found: Discovery,
                   declared_crds: dict[tuple[str, str, str], ResourceType],
                   problems: list[str]) -> tuple[ResourceType | None, bool]:
    gvk = (resource.group, resource.version, resource.kind)
    rt = found.lookup(*gvk)
    if rt is not None:
        return rt, False
    if gvk in declared_crds:
        return declared_crds[gvk], True
    what = f"{resource.origin}: {resource.kind} {_name_of(resource)} uses {resource.api_version}"
    elsewhere = _served_elsewhere(found, resource.kind)
    if found.served_versions(resource.group, resource.kind) or elsewhere:
        instead = ", ".join(elsewhere) or "?"
        problems.append(f"{what}, which this cluster no longer serves (removed API version); "
                        f"the cluster serves {resource.kind} as {instead}: update apiVersion")
    else:
        problems.append(f"{what}: this cluster does not serve that kind and no "
                        "CustomResourceDefinition in the revision defines it; install the CRD "
                        "first or leave the file out with --ignore")
    return None, False


def _served_elsewhere(found: Discovery, kind: str) -> list[str]:
    served = []
    for (group, version, candidate) in found.by_gvk:
        if candidate == kind:
            served.append(f"{group}/{version}" if group else version)
    return served


def _name_of(resource: Resource) -> str:
    return f"{resource.namespace}/{resource.name}" if resource.namespace else resource.name
