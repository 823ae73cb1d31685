"""Install the sync agent, find where it runs, and steer it through its Sync object.

Called by `cli/agent.py` (agent install/status/suspend/resume/pin/unpin), by
`cluster_bootstrap` and by `rollback_handoff` (which pins the agent). The manifests are the
files in `deploy/`; this module only fills in names, image and replicas, and applies them with
server-side apply under its own field manager, so a later `agent pin` (a merge patch by
another manager) survives a re-install.

Where the agent runs:
- on a real cluster (kind, existing): the Deployment `agent-<sync>` in gitops-restore-system;
- on the `local` provider, whose pods are simulated by kwok and run nothing, the same
  Deployment is applied with replicas 0 (so the installed objects are the same everywhere
  and nobody mistakes a simulated Pod for a running agent), and the agent runs as a detached
  local process (`sync_agent.agent.localproc`) with its pidfile and log in the cluster's
  state directory; `destroy` stops it.
"""

from __future__ import annotations

import base64
import copy
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from bootstrap import clusters
from bootstrap.errors import OperationFailed, UserError
from bootstrap.resources import resource
from sync_agent import git_https, signatures, source
from sync_agent.agent import config as agent_config
from sync_agent.agent import decryption, deploykey, localproc, syncobject, verifykeys
from sync_agent.conventions import (
    AGENT_ANNOTATION,
    INSTALL_FIELD_MANAGER,
    LEASE_RT,
    NAMESPACE,
    NAMESPACE_RT,
    SECRET_RT,
    managed_labels,
)
from sync_agent.kube import ApiError, Kube, ResourceType

DEPLOY = resource("deploy")
DEFAULT_IMAGE = "ghcr.io/gitops-restore/agent:0.1.0"
LOCAL_NOTE = ("local provider: pods are simulated and run nothing, so the agent runs as a "
              "local process and this Deployment is kept at 0 replicas")
CRD_RT = ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
                      "customresourcedefinitions", namespaced=False)
DEPLOYMENT_RT = ResourceType("apps", "v1", "Deployment", "deployments", namespaced=True)
_TYPES = {(rt.api_version, rt.kind): rt for rt in (
    CRD_RT, DEPLOYMENT_RT, syncobject.SYNC_RT, SECRET_RT, NAMESPACE_RT,
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", namespaced=True),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding",
                 "clusterrolebindings", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True))}


@dataclass(frozen=True)
class Target:
    """The cluster to act on: a connection, and for a provisioned cluster its record.

    A context manager that closes its connection: `with agent.target(...) as t:`."""

    kube: Kube
    kubeconfig: str | None
    context: str | None
    record: clusters.ClusterRecord | None = None

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kube.close()

    @property
    def local(self) -> bool:
        return self.record is not None and self.record.provider == "local"

    @property
    def state_dir(self) -> Path | None:
        return clusters.cluster_dir(self.record.name) if self.record else None


@dataclass(frozen=True)
class InstallRequest:
    sync: str
    repo: str
    branch: str = "main"
    path: str = ""
    interval: str = "1m"
    prune: bool = True
    ignore: tuple[str, ...] = ()
    default_namespace: str = "default"
    deploy_key: str = ""  # deploy-key name (Secret <name>-deploy-key); "" when none is needed
    ca_file: Path | None = None  # HTTPS: the CA of the Git server, kept in the credentials Secret
    decryption_secret: str = ""  # Secret with the age key for SOPS files; "" when none
    image: str = DEFAULT_IMAGE
    verify: signatures.Policy | None = None  # spec.verify, its keys in a Secret of their own


@dataclass(frozen=True)
class Placement:
    """Where the agent of one Sync runs, as seen now (never assumed from a record alone)."""

    running: bool
    where: str  # "local-process", "deployment" or "none"
    detail: str  # one sentence for people
    local: localproc.LocalAgent | None = None
    deployment: str = ""  # namespace/name when it runs (or should run) in the cluster
    replicas: int = 0
    ready: int = 0

    def to_json(self) -> dict:
        return {"running": self.running, "where": self.where, "detail": self.detail,
                "local": self.local.to_json() if self.local else None,
                "deployment": {"name": self.deployment, "replicas": self.replicas,
                               "ready": self.ready} if self.deployment else None}


def target(kubeconfig: str | None, context: str | None, cluster: str | None) -> Target:
    """Connect by `--cluster` or kubectl's rules; a kubeconfig of a provisioned cluster is
    recognised, so `--kubeconfig` of a local cluster also finds its local agent."""
    record = clusters.load(cluster) if cluster else _record_of(kubeconfig)
    if cluster and record:
        kubeconfig, context = record.kubeconfig, context or record.context or None
    return Target(Kube.from_kubeconfig(kubeconfig, context), kubeconfig, context, record)


def _record_of(kubeconfig: str | None) -> clusters.ClusterRecord | None:
    if not kubeconfig:
        return None
    wanted = Path(kubeconfig).expanduser().resolve()
    for record in clusters.list_all():
        if Path(record.kubeconfig).resolve() == wanted:
            return record
    return None


# --- install ---------------------------------------------------------------------------------

def manifests(request: InstallRequest, replicas: int) -> list[dict[str, Any]]:
    """Namespace, CRD, ServiceAccount, RBAC and the Deployment, filled in (Sync excluded)."""
    docs: list[dict[str, Any]] = []
    for name in ("namespace.yaml", "crd-sync.yaml", "rbac.yaml"):
        docs += [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    return [*docs, deployment(request, replicas)]


def deployment(request: InstallRequest, replicas: int) -> dict[str, Any]:
    body = copy.deepcopy(yaml.safe_load((DEPLOY / "deployment.yaml").read_text()))
    name = agent_config.lease_name(request.sync)
    body["metadata"]["name"] = name
    for labels in (body["metadata"]["labels"], body["spec"]["selector"]["matchLabels"],
                   body["spec"]["template"]["metadata"]["labels"]):
        labels["app.kubernetes.io/instance"] = request.sync
    body["spec"]["replicas"] = replicas
    if replicas == 0:
        body["metadata"].setdefault("annotations", {})[AGENT_ANNOTATION] = LOCAL_NOTE
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["image"] = request.image
    for env in container["env"]:
        if env["name"] == "SYNC_NAME":
            env["value"] = request.sync
    return body


def sync_object(request: InstallRequest) -> dict[str, Any]:
    """The Sync: its repo without credentials (they go to `credentials_secret`)."""
    if request.deploy_key:
        secret = deploykey.secret_name(request.deploy_key)
    else:
        secret = credentials_secret_name(request.sync) if _needs_secret(request) else ""
    return syncobject.body(request.sync, NAMESPACE,
                           git_https.without_credentials(request.repo), request.branch,
                           request.path, request.interval, request.prune, request.ignore,
                           request.default_namespace, secret,
                           (request.verify.mode, verifykeys.secret_name(request.sync))
                           if request.verify else None,
                           request.decryption_secret)


def credentials_secret_name(sync: str) -> str:
    return f"{sync}-git-credentials"


def _needs_secret(request: InstallRequest) -> bool:
    return git_https.without_credentials(request.repo) != request.repo or bool(request.ca_file)


def store_credentials(kube: Kube, request: InstallRequest) -> tuple[str, bool] | None:
    """The username and token of an https://USER:TOKEN@ (or TOKEN@) repo URL, in a Secret
    beside the Sync (keys `username` and `password`, as the agent reads them, and `ca.crt`
    with a CA file), so the Sync object, readable by more people than Secrets are, holds the
    URL without them."""
    if not _needs_secret(request):
        return None
    username, password = git_https.credentials(request.repo, None, None)
    name = credentials_secret_name(request.sync)
    data = {deploykey.USERNAME: username or "", deploykey.PASSWORD: password or ""}
    if request.ca_file:
        try:
            data[deploykey.CA] = Path(request.ca_file).read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--ca-file {request.ca_file}: cannot read it ({e})") from None
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": managed_labels()},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    try:
        before = kube.get(SECRET_RT, NAMESPACE, name)
        kube.apply(SECRET_RT, body)
    except ApiError as e:  # the server's message may quote the request: status and reason only
        raise OperationFailed(f"Secret {NAMESPACE}/{name}: cannot store the Git credentials: "
                              f"HTTP {e.status} {e.reason or 'error'}") from None
    return f"Secret/{NAMESPACE}/{name}", (before or {}).get("data") != body["data"]


def install(t: Target, request: InstallRequest, start: bool = True) -> list[tuple[str, bool]]:
    """Apply everything, Sync last; start the agent unless `start` is False (bootstrap starts
    it after its own first restore). Returns (object, changed) per object."""
    if t.local:
        replicas = 0
    elif start:
        replicas = 1
    else:  # a re-run must not scale a running agent down and up again
        current = t.kube.get(DEPLOYMENT_RT, NAMESPACE, agent_config.lease_name(request.sync))
        replicas = int((current or {}).get("spec", {}).get("replicas") or 0)
    results = []
    for doc in manifests(request, replicas):
        results.append(apply(t.kube, doc))
        if doc["kind"] == "CustomResourceDefinition":
            _wait_established(t.kube, doc["metadata"]["name"])
    stored = store_credentials(t.kube, request)
    results += [stored] if stored else []
    if request.verify:  # the keys before the Sync that names them
        results.append(apply(t.kube, verifykeys.secret_body(request.sync, NAMESPACE,
                                                            request.verify.keys)))
    results.append(apply(t.kube, sync_object(_keep_decryption(t.kube, request))))
    return results


def _keep_decryption(kube: Kube, request: InstallRequest) -> InstallRequest:
    """A re-run without --sops-age-key keeps decrypting with the key stored earlier: the
    apply would otherwise drop spec.decryption and the next encrypted commit would fail."""
    stored = decryption.secret_name(request.sync)
    if request.decryption_secret or kube.get(SECRET_RT, NAMESPACE, stored) is None:
        return request
    return replace(request, decryption_secret=stored)


def start_agent(t: Target, request: InstallRequest) -> tuple[Placement, bool]:
    """Make the agent run; (where it runs, whether this call started it)."""
    if t.local:
        assert t.state_dir is not None and t.record is not None
        running = localproc.running(t.state_dir, request.sync)
        if running:
            return placement(t, request.sync), False
        localproc.start(t.state_dir, request.sync, t.record.kubeconfig,
                        t.record.context or None, f"127.0.0.1:{_free_port()}")
        return placement(t, request.sync), True
    _, changed = apply(t.kube, deployment(request, 1))
    return placement(t, request.sync), changed


def apply(kube: Kube, doc: dict[str, Any]) -> tuple[str, bool]:
    rt = _TYPES[(doc["apiVersion"], doc["kind"])]
    meta = doc["metadata"]
    namespace = meta.get("namespace", "") if rt.namespaced else ""
    label = f"{doc['kind']}/{namespace + '/' if namespace else ''}{meta['name']}"
    try:
        before = kube.get(rt, namespace, meta["name"])
        stored = kube.request("PATCH", rt.path(namespace, meta["name"]), doc,
                              query={"fieldManager": INSTALL_FIELD_MANAGER, "force": "true"},
                              content_type="application/apply-patch+yaml")
    except ApiError as e:
        raise OperationFailed(f"{label}: cannot apply it: {e}") from e
    return label, before is None or _settled(before) != _settled(stored)


def _settled(body: dict[str, Any]) -> dict[str, Any]:
    """What an apply can change: not the status or bookkeeping that others (the agent's
    status writes, controllers) move between our read and our write, which would otherwise
    make an unchanged object read as configured."""
    meta = {k: v for k, v in body.get("metadata", {}).items()
            if k not in ("resourceVersion", "managedFields", "generation")}
    return {**{k: v for k, v in body.items() if k != "status"}, "metadata": meta}


def _wait_established(kube: Kube, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = kube.get(CRD_RT, "", name) or {}
        if any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or []):
            return
        time.sleep(0.2)
    raise OperationFailed(f"CustomResourceDefinition/{name}: not Established after "
                          f"{timeout:.0f}s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- where it runs ---------------------------------------------------------------------------

def placement(t: Target, sync: str) -> Placement:
    if t.local:
        assert t.state_dir is not None
        agent = localproc.running(t.state_dir, sync)
        if agent:
            return Placement(True, "local-process", f"local process pid {agent.pid} "
                             f"(log {agent.log}, metrics http://{agent.listen}/metrics)", agent)
        return Placement(False, "none", "no agent process is running for this local "
                         f"cluster (start it with `gitops-restore agent install --cluster "
                         f"{t.record.name if t.record else '…'} …`)")
    name = agent_config.lease_name(sync)
    try:
        found = t.kube.get(DEPLOYMENT_RT, NAMESPACE, name)
    except ApiError as e:
        raise OperationFailed(f"Deployment {NAMESPACE}/{name}: cannot read it: {e}") from e
    if found is None:
        return Placement(False, "none", f"Deployment {NAMESPACE}/{name} does not exist")
    replicas = int(found.get("spec", {}).get("replicas", 1))
    ready = int(found.get("status", {}).get("readyReplicas") or 0)
    return Placement(ready > 0, "deployment", f"in-cluster Deployment {NAMESPACE}/{name}, "
                     f"{ready}/{replicas} replicas ready", deployment=f"{NAMESPACE}/{name}",
                     replicas=replicas, ready=ready)


def lease_holder(t: Target, sync: str) -> str:
    """The identity of the agent that leads `sync` now: "" when none holds its Lease, or the
    Lease cannot be read (status then shows what it can)."""
    try:
        lease = t.kube.get(LEASE_RT, NAMESPACE, agent_config.lease_name(sync))
    except ApiError:
        return ""
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or ""


def stop_local(t: Target, sync: str) -> bool:
    return bool(t.state_dir) and localproc.stop(t.state_dir, sync)


# --- steering --------------------------------------------------------------------------------

def choose_sync(kube: Kube, name: str | None) -> str:
    """`--sync`, or the only Sync there is."""
    if name:
        return name
    try:
        found = sorted(o["metadata"]["name"] for o in kube.list(syncobject.SYNC_RT, NAMESPACE))
    except ApiError as e:
        if e.status == 404:
            found = []
        else:
            raise OperationFailed(f"Syncs in {NAMESPACE}: cannot list them: {e}") from e
    if len(found) == 1:
        return found[0]
    raise UserError(f"Syncs in {NAMESPACE}: {', '.join(found) or 'none'}; "
                    + ("pass --sync" if found else "install the agent first "
                       "(gitops-restore agent install --help)"))


def read_sync(kube: Kube, sync: str) -> syncobject.SyncObject | None:
    try:
        stored = syncobject.read(kube, NAMESPACE, sync)
    except ApiError as e:
        if e.status == 404:  # the CRD itself is not installed
            return None
        raise OperationFailed(f"Sync {NAMESPACE}/{sync}: cannot read it: {e}") from e
    return syncobject.parse(stored) if stored else None


def deploykey_missing(kube: Kube, name: str) -> bool:
    try:
        return kube.get(SECRET_RT, NAMESPACE, deploykey.secret_name(name)) is None
    except ApiError:
        return False  # unreadable is not missing: the agent will say what is wrong


def set_spec(kube: Kube, sync: str, **changes: Any) -> syncobject.SyncObject:
    """Patch spec fields (None removes one, e.g. revision=None unpins)."""
    try:
        return syncobject.parse(syncobject.patch_spec(kube, NAMESPACE, sync, changes))
    except syncobject.InvalidSpec as e:
        raise UserError(str(e)) from None
    except ApiError as e:
        raise OperationFailed(f"Sync {NAMESPACE}/{sync}: cannot patch it: {e}") from e


def resolve(kube: Kube, obj: syncobject.SyncObject, ref: str) -> str:
    """The full SHA `ref` names in the Sync's repository (HEAD means the Sync's branch), read
    with the Sync's own deploy key."""
    if ref == "HEAD" or ref.startswith(("HEAD~", "HEAD^")):
        ref = obj.spec.branch + ref[4:]
    spec = obj.spec
    try:
        if spec.secret_name and source.is_remote(spec.repo):
            with deploykey.materialize(kube, NAMESPACE, spec.secret_name) as auth:
                repo = source.open_repository(spec.repo, auth)
        else:
            repo = source.open_repository(spec.repo)
        return source.resolve(repo, spec.repo, ref=ref).sha
    except deploykey.DeployKeyError as e:
        raise UserError(str(e)) from None
