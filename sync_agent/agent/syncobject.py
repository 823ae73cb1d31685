"""The Sync custom resource (gitops-restore.io/v1alpha1): its spec in, its status out.

The agent reads the spec every second (`read`) and writes the status after each attempt
(`write_status`); bootstrap builds the object (`body`) and patches the spec for pin, unpin,
suspend and resume (`patch_spec`). The CRD itself ships as `deploy/crd-sync.yaml`; the field
names here and there must agree (tests read both).

Conditions follow the Kubernetes convention (and Flux's use of it):
  Ready        True when the last attempt applied `status.lastAppliedRevision`; False with the
               reason of the failure otherwise (the last applied state stays in place).
  Reconciling  True while the agent is working towards the spec (first sync, retries).
  Stalled      True when retrying cannot help until the spec or the commit changes
               (a bad commit, an invalid spec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_agent.conventions import DOMAIN, managed_labels, parse_duration, utc_now
from sync_agent.errors import ConfigError, Refused
from sync_agent.kube import ApiError, Kube, ResourceType
from sync_agent.render_options import DEFAULTS, RenderOptions, parse_size

GROUP = DOMAIN
VERSION = "v1alpha1"
KIND = "Sync"
SYNC_RT = ResourceType(GROUP, VERSION, KIND, "syncs", namespaced=True)
CRD_NAME = f"syncs.{GROUP}"
COUNT_KEYS = ("create", "update", "recreate", "unchanged", "delete", "keep")

READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"


class InvalidSpec(Refused):
    """The Sync's spec cannot be used; the message names the field."""


@dataclass(frozen=True)
class SyncSpec:
    repo: str
    branch: str = "main"
    path: str = ""
    interval: float = 60.0  # seconds
    prune: bool = True
    suspend: bool = False
    revision: str = ""  # pinned commit, tag or ref; "" follows the branch
    ignore: tuple[str, ...] = ()
    default_namespace: str = "default"  # for namespaced objects that name none
    secret_name: str = ""  # deploy-key Secret beside the Sync; "" for none
    render: RenderOptions = DEFAULTS  # allowRemoteBases, maxFileSize, maxYAMLNodes
    verify_mode: str = ""  # spec.verify.mode: head or chain; "" verifies nothing
    verify_secret: str = ""  # spec.verify.secretRef.name: the trusted keys (*.asc, *.sshpub)
    decryption_secret: str = ""  # spec.decryption.secretRef: age keys for SOPS files; "" none

    @property
    def target(self) -> str:
        """What the agent applies: the pinned revision, else the branch."""
        return self.revision or self.branch


@dataclass(frozen=True)
class SyncObject:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: SyncSpec
    status: dict[str, Any] = field(default_factory=dict)

    def condition(self, kind: str) -> dict[str, Any]:
        for c in self.status.get("conditions") or []:
            if c.get("type") == kind:
                return c
        return {}


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str = ""

    @property
    def status_text(self) -> str:
        return {True: "True", False: "False", None: "Unknown"}[self.status]


def parse(body: dict[str, Any]) -> SyncObject:
    meta = body.get("metadata") or {}
    raw = body.get("spec") or {}
    where = f"Sync {meta.get('namespace', '')}/{meta.get('name', '')}"
    if not raw.get("repo"):
        raise InvalidSpec(f"{where}: spec.repo is empty; set the Git URL to sync from")
    try:
        interval = parse_duration(str(raw.get("interval") or "1m"), "spec.interval",
                                  positive=True)
        render = _render_options(raw)
    except (ConfigError, ValueError) as e:
        raise InvalidSpec(f"{where}: {e}") from None
    spec = SyncSpec(
        repo=raw["repo"], branch=raw.get("branch") or "main", path=raw.get("path") or "",
        interval=interval, prune=bool(raw.get("prune", True)),
        suspend=bool(raw.get("suspend", False)), revision=raw.get("revision") or "",
        ignore=tuple(raw.get("ignore") or ()),
        default_namespace=raw.get("defaultNamespace") or "default",
        secret_name=(raw.get("secretRef") or {}).get("name", ""), render=render,
        decryption_secret=_decryption_secret(raw, where), **_verify(raw.get("verify"), where))
    return SyncObject(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""),
                      generation=int(meta.get("generation") or 0), spec=spec,
                      status=body.get("status") or {})


def _decryption_secret(raw: dict[str, Any], where: str) -> str:
    decryption = raw.get("decryption") or {}
    if not decryption:
        return ""
    if decryption.get("provider", "sops") != "sops":
        raise InvalidSpec(f"{where}: spec.decryption.provider {decryption['provider']!r}: "
                          "only 'sops' is supported")
    name = (decryption.get("secretRef") or {}).get("name", "")
    if not name:
        raise InvalidSpec(f"{where}: spec.decryption.secretRef.name is empty; name the Secret "
                          "holding the age key")
    return name


def _render_options(raw: dict[str, Any]) -> RenderOptions:
    size = raw.get("maxFileSize")
    nodes = raw.get("maxYAMLNodes")
    if nodes is not None and (not isinstance(nodes, int) or nodes < 1):
        raise ValueError(f"spec.maxYAMLNodes {nodes!r}: give a positive number")
    return RenderOptions(
        allow_remote_bases=bool(raw.get("allowRemoteBases", False)),
        max_file_bytes=parse_size(str(size)) if size else DEFAULTS.max_file_bytes,
        max_yaml_nodes=nodes or DEFAULTS.max_yaml_nodes)


def _verify(raw: Any, where: str) -> dict[str, str]:
    if not raw:
        return {}
    mode, secret = raw.get("mode") or "", (raw.get("secretRef") or {}).get("name") or ""
    if mode not in ("head", "chain"):
        raise InvalidSpec(f"{where}: spec.verify.mode {mode!r}: use head or chain")
    if not secret:
        raise InvalidSpec(f"{where}: spec.verify.secretRef.name is empty; name the Secret "
                          "holding the trusted public keys (*.asc, *.sshpub)")
    return {"verify_mode": mode, "verify_secret": secret}


def read(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The Sync object as stored, or None when there is none."""
    return kube.get(SYNC_RT, namespace, name)


def body(name: str, namespace: str, repo: str, branch: str = "main", path: str = "",
         interval: str = "1m", prune: bool = True, ignore: tuple[str, ...] = (),
         default_namespace: str = "default", secret_name: str = "",
         verify: tuple[str, str] | None = None,
         decryption_secret: str = "") -> dict[str, Any]:
    """A Sync object as `agent install` applies it (pin and suspend are left to patches)."""
    spec: dict[str, Any] = {"repo": repo, "branch": branch, "path": path,
                            "interval": interval, "prune": prune, "ignore": list(ignore),
                            "defaultNamespace": default_namespace}
    if secret_name:
        spec["secretRef"] = {"name": secret_name}
    if verify:  # (mode, Secret name)
        spec["verify"] = {"mode": verify[0], "secretRef": {"name": verify[1]}}
    if decryption_secret:
        spec["decryption"] = {"provider": "sops", "secretRef": {"name": decryption_secret}}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND,
            "metadata": {"name": name, "namespace": namespace,
                         "labels": managed_labels()},
            "spec": spec}


def patch_spec(kube: Kube, namespace: str, name: str, changes: dict[str, Any]) -> dict:
    """Merge-patch the spec (None deletes a field); returns the stored object."""
    try:
        return kube.request("PATCH", SYNC_RT.path(namespace, name), {"spec": changes},
                            content_type="application/merge-patch+json")
    except ApiError as e:
        if e.status == 404:
            raise InvalidSpec(f"Sync {namespace}/{name}: not found; install the agent first "
                              "(gitops-restore agent install --help)") from None
        raise


def merge_conditions(existing: list[dict[str, Any]], new: list[Condition],
                     generation: int) -> list[dict[str, Any]]:
    """The conditions list with `new` set; lastTransitionTime moves only when status does."""
    by_type = {c.get("type"): c for c in existing or []}
    stamp = utc_now()
    for c in new:
        old = by_type.get(c.type, {})
        changed = old.get("status") != c.status_text
        by_type[c.type] = {
            "type": c.type, "status": c.status_text, "reason": c.reason,
            "message": c.message[:32768], "observedGeneration": generation,
            "lastTransitionTime": stamp if changed else old.get("lastTransitionTime", stamp)}
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], 9), c["type"]))


def write_status(kube: Kube, obj: SyncObject, status: dict[str, Any]) -> None:
    """Merge-patch the status subresource (a list such as conditions is replaced whole)."""
    kube.request("PATCH", SYNC_RT.path(obj.namespace, obj.name) + "/status",
                 {"status": status}, content_type="application/merge-patch+json")
