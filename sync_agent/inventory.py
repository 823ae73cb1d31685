"""What gitops-restore owns in a cluster: per sync name, the objects applied and at which commit.

The restore and the in-cluster agent call `load` before planning, `to_prune` to decide what to
delete, and `save` after applying; `history` and `verify` read it back. Prune deletes only what
an inventory lists, so nothing here may ever turn an unreadable record into "owns nothing"
silently: unreadable data raises `CorruptInventoryError` with the way to recover.

Storage, in namespace `gitops-restore-system`, modelled on kustomize-controller's inventory:

- `inventory-<name>`: labels `app.kubernetes.io/managed-by=gitops-restore` and
  `gitops-restore.io/inventory=<name>`; annotations `gitops-restore.io/{revision, ref,
  applied-at, path, repo, complete, entries, shards, digest}`.
- The entries are gzip-compressed text: a header line `gitops-restore-inventory/v1`, then one
  line per object, `version|group|kind|namespace|name|digest|owned`, sorted. `%`, `|` and
  newlines inside a field are %-escaped, so the format is unambiguous for any name the API
  server accepts.
- Up to `SHARD_BYTES` of compressed data sit inline in `binaryData["entries.gz"]` (`shards: 0`).
  Larger payloads are cut into `SHARD_BYTES` chunks stored in `inventory-<name>-<s>-<i>`
  (i = 1..shards, s = annotation `shard-set`, 10 random hex digits new with every save; older
  records without it used the first 10 hex digits of the payload's sha256), labelled
  `gitops-restore.io/inventory=<name>` and `gitops-restore.io/inventory-shard=<i>`.

Save order, so that a crash at any point leaves a loadable inventory:
  1. write the shards -- names new to this save, so nobody else's shards are touched;
  2. write the main object -- the single switch from the old payload to the new one, with the
     resourceVersion the writer read as a precondition (optimistic concurrency): if another
     writer switched it meanwhile, nothing is overwritten, this save's shards are removed and
     `InventoryConflict` says so;
  3. delete the shards of the record just replaced (named by it, so no other writer's), and
     orphans older than `ORPHAN_SECONDS` (a save that died between 1 and 2; a live save takes
     seconds, so a younger shard may belong to a writer still at step 1).
A crash before 2 leaves the previous inventory intact plus orphan shards; a crash before 3
leaves stale shards. Both are ignored by `load` and removed by a later `save`, or `delete`.
`load` checks the sha256 and entry count recorded on the main object, so a mixed set of shards
is reported, never read. `delete` removes the main object first for the same reason.

Ownership across an interrupted restore (Flux records its inventory only after a successful
apply; we must also own what a killed or failed run created). The engine's restore does:
  1. `old = load(...)`; render, validate, plan -- nothing written yet; the plan's prune
     candidates are `to_prune(old, desired)`;
  2. before the first write: `merge(old, <Entry.of each object the plan creates or changes,
     without digests>)`, saved (write-ahead: owning an object that then never got created is
     harmless, pruning it finds nothing; not owning one that did get created would leak it for
     good; and a write cut short must not leave a digest describing the old body);
  3. if apply fails: save `merge(old, <the objects applied>)` and stop, without pruning (every
     object sent has an answer by then, and later stages were never sent);
  4. prune;
  5. save the complete inventory of the revision (plus what prune kept as still ours or
     failed to delete, so the next run decides about it again).
`merge` marks its result `complete=False`: the cluster then matches no single revision, so the
record keeps the revision last applied completely.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import secrets
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import unquote

from sync_agent.conventions import CONFIGMAP_RT as CONFIGMAP
from sync_agent.conventions import (
    DOMAIN,
    FIELD_MANAGER,
    INVENTORY_LABEL,
    MANAGED_BY,
    NAMESPACE,
    SHARD_LABEL,
)
from sync_agent.conventions import NAMESPACE_RT as NAMESPACE_TYPE
from sync_agent.errors import Conflict, Failed, Refused
from sync_agent.kube import ApiError, Kube
from sync_agent.objects import ObjectRef

if TYPE_CHECKING:
    from sync_agent.changes import Desired

SHARD_BYTES = 900_000  # compressed bytes per ConfigMap; the API server allows 1 MiB of data
FORMAT_HEADER = "gitops-restore-inventory/v1"
ORPHAN_SECONDS = 600.0  # a shard no record names is a dead save's only after this long

_A = f"{DOMAIN}/"
_INLINE_KEY = "entries.gz"
_SHARD_KEY = "part"
_METADATA_LIST = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                  "application/json")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object format


class InventoryError(Failed):
    """An inventory cannot be read or written."""


class InventoryConflict(InventoryError, Conflict):
    """Another writer changed the inventory since this one read it; nothing was overwritten."""

    def __init__(self, name: str, expected: str, found: str):
        read = f"version {expected}" if expected else "no inventory"
        now = f"version {found}" if found else "none"
        super().__init__(
            f"inventory {name!r}: ConfigMap {NAMESPACE}/{configmap_name(name)} was changed by "
            f"another writer since this run read it (read {read}, now {now}); nothing was "
            "overwritten. Another gitops-restore command or the sync agent wrote this sync "
            "meanwhile: run again once it has finished (every writer holds the lock Lease "
            f"{NAMESPACE}/agent-{name}; a writer without it is not gitops-restore's).")


class InvalidSyncName(InventoryError, Refused):
    """A sync name that cannot name an inventory."""


class CorruptInventoryError(InventoryError, Refused):
    """Stored inventory data cannot be decoded, so nothing is changed; the message says how to
    recover."""

    def __init__(self, name: str, configmap: str, problem: str):
        self.name = name
        self.configmap = configmap
        super().__init__(
            f"inventory {name!r}: ConfigMap {NAMESPACE}/{configmap} is corrupt: {problem}. "
            "gitops-restore cannot tell which objects it owns, so it will not prune. To "
            f"recover, delete the inventory (`kubectl -n {NAMESPACE} delete configmap -l "
            f"{INVENTORY_LABEL}={name}`) and re-run restore without --prune; objects that only "
            "the lost inventory listed are then no longer owned and must be removed by hand.")


@dataclass(frozen=True)
class Entry:
    """One owned object and the API version it was applied at (to build its URL for delete)."""

    ref: ObjectRef
    version: str  # without the group: "v1" of "apps/v1"
    digest: str = ""  # of the body we sent; "" when unknown (then nothing about it is trusted)
    owned: str = ""  # of the fields our manager owned right after the apply

    @classmethod
    def of(cls, desired: Desired) -> Entry:
        """`desired` owned from now on, nothing about its live body trusted yet."""
        return cls(desired.ref, desired.rt.version)


@dataclass(frozen=True)
class Inventory:
    """The record of one sync name; entries are kept sorted and unique per object."""

    name: str
    revision: str  # full commit SHA; "" before any revision was completely applied
    ref: str  # what the user asked for: "main", "v1.2", "HEAD~2", ...
    applied_at: str  # ISO 8601, UTC
    entries: tuple[Entry, ...]
    path: str = ""  # repository path synced
    repo: str = ""  # repository URL
    complete: bool = True  # False for the `merge` record of an unfinished restore
    # of the main ConfigMap as loaded: the precondition of the next save ("" when not loaded)
    resource_version: str = field(default="", compare=False)
    by_ref: Mapping[ObjectRef, Entry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.revision and not _SHA.fullmatch(self.revision):
            raise InventoryError(f"inventory {self.name!r}: revision {self.revision!r} is not "
                                 "a full lowercase hex commit SHA")
        try:
            at = datetime.fromisoformat(self.applied_at)
        except ValueError:
            at = None
        if at is None or at.utcoffset() is None or at.utcoffset().total_seconds() != 0:
            raise InventoryError(f"inventory {self.name!r}: applied_at {self.applied_at!r} is "
                                 "not an ISO 8601 UTC time such as 2024-05-01T12:00:00Z")
        # Later entries win, so a merge records the version an object was last applied at.
        unique = {entry.ref: entry for entry in self.entries}
        object.__setattr__(self, "entries", tuple(unique[ref] for ref in sorted(unique)))
        object.__setattr__(self, "by_ref", MappingProxyType(unique))


def check_name(name: str) -> None:
    """Sync names become part of ConfigMap names and a label value: a DNS-1123 label."""
    if not isinstance(name, str) or not _DNS_LABEL.fullmatch(name):
        raise InvalidSyncName(
            f"inventory {name!r}: invalid sync name; use at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit")


def configmap_name(name: str) -> str:
    return f"inventory-{name}"


# ---- pure helpers -------------------------------------------------------------------------

def to_prune(old: Inventory | None, desired: Iterable[ObjectRef]) -> list[Entry]:
    """Entries owned by `old` that the revision no longer declares, sorted by object."""
    if old is None:
        return []
    keep = set(desired)
    return [entry for entry in old.entries if entry.ref not in keep]


def merge(old: Inventory | None, new: Inventory) -> Inventory:
    """`new`'s record owning also everything `old` owned (`new`'s entry wins for an object in
    both); incomplete, so it keeps the revision last applied completely (see module doc)."""
    if old is None:
        return replace(new, revision="", ref="", complete=False)
    if old.name != new.name:
        raise InventoryError(f"inventory {new.name!r}: cannot merge the inventory {old.name!r}")
    return replace(new, revision=old.revision, ref=old.ref, entries=old.entries + new.entries,
                   complete=False)


# ---- cluster I/O --------------------------------------------------------------------------

class _Replaced(Exception):
    """The main object was switched to a new record while it was being read."""


def load(kube: Kube, name: str) -> Inventory | None:
    """The stored inventory of `name`, or None when there is none."""
    check_name(name)
    for _ in range(3):
        try:
            return _load(kube, name)
        except _Replaced:
            continue  # a save replaced it (and deleted the shards we were reading): again
    return _load(kube, name)


def _load(kube: Kube, name: str) -> Inventory | None:
    main_name = configmap_name(name)
    with _api(name, f"read ConfigMap {NAMESPACE}/{main_name}"):
        main = kube.get(CONFIGMAP, NAMESPACE, main_name)
    if main is None:
        return None

    def corrupt(problem: str, where: str = main_name) -> CorruptInventoryError:
        return CorruptInventoryError(name, where, problem)

    meta = main.get("metadata", {})
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) != "gitops-restore" or labels.get(INVENTORY_LABEL) != name:
        raise corrupt(f"it lacks the labels {MANAGED_BY}=gitops-restore and "
                      f"{INVENTORY_LABEL}={name}, so gitops-restore did not write it")
    notes = meta.get("annotations") or {}
    missing = [_A + k for k in ("revision", "ref", "applied-at", "entries", "shards", "digest")
               if _A + k not in notes]
    if missing:
        raise corrupt(f"annotation {', '.join(missing)} is missing")
    if not (notes[_A + "shards"].isdigit() and notes[_A + "entries"].isdigit()):
        raise corrupt(f"annotations {_A}shards and {_A}entries must be numbers")
    shards, count = int(notes[_A + "shards"]), int(notes[_A + "entries"])
    digest = notes[_A + "digest"]

    if shards == 0:
        payload = _b64(main, _INLINE_KEY, corrupt)
    else:
        parts = []
        for index in range(1, shards + 1):
            shard_name = _shard_name(name, _shard_set(notes), index)
            with _api(name, f"read ConfigMap {NAMESPACE}/{shard_name}"):
                shard = kube.get(CONFIGMAP, NAMESPACE, shard_name)
            if shard is None:
                with _api(name, f"read ConfigMap {NAMESPACE}/{main_name}"):
                    now = kube.get(CONFIGMAP, NAMESPACE, main_name)
                if _version(now) != _version(main):
                    raise _Replaced()
                raise corrupt(f"its shard {shard_name} ({index} of {shards}) is missing")
            parts.append(_b64(shard, _SHARD_KEY, lambda p, s=shard_name: corrupt(p, s)))
        payload = b"".join(parts)

    if _digest(payload) != digest:
        raise corrupt(f"the data does not match its recorded digest {digest} (edited by hand, "
                      "or shards from different saves)")
    entries = _decode(payload, corrupt)
    if len(entries) != count:
        raise corrupt(f"it holds {len(entries)} entries where {count} were recorded")
    try:
        return Inventory(name=name, revision=notes[_A + "revision"], ref=notes[_A + "ref"],
                         applied_at=notes[_A + "applied-at"], entries=entries,
                         path=notes.get(_A + "path", ""), repo=notes.get(_A + "repo", ""),
                         complete=notes.get(_A + "complete", "true") == "true",
                         resource_version=_version(main))
    except InventoryError as e:
        raise corrupt(str(e).removeprefix(f"inventory {name!r}: ")) from None


def save(kube: Kube, inventory: Inventory, expected: str | None = None) -> str:
    """Store `inventory`, replacing the previous one of its name (order: see module doc).

    `expected` is the resourceVersion of the main object the writer read ("": there was
    none); if it changed meanwhile, InventoryConflict is raised and nothing is overwritten.
    None replaces whatever is stored when the call starts (the switch itself is still
    conditional). Returns the new resourceVersion, the precondition of the next save.
    """
    name = inventory.name
    main_name = configmap_name(name)
    payload = _encode(inventory)
    digest = _digest(payload)
    chunks = [payload[i:i + SHARD_BYTES] for i in range(0, len(payload), SHARD_BYTES)]
    shards = len(chunks) if len(chunks) > 1 else 0

    with _api(name, f"create namespace {NAMESPACE}"):
        if kube.get(NAMESPACE_TYPE, "", NAMESPACE) is None:
            kube.apply(NAMESPACE_TYPE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": NAMESPACE, "labels": {MANAGED_BY: "gitops-restore"}}})
    with _api(name, f"read ConfigMap {NAMESPACE}/{main_name}"):
        current = kube.get(CONFIGMAP, NAMESPACE, main_name)
    found = _version(current)
    if expected is not None and found != expected:
        raise InventoryConflict(name, expected, found)

    shard_set = secrets.token_hex(5) if shards else ""
    written: list[str] = []
    for index, chunk in enumerate(chunks if shards else [], start=1):
        shard_name = _shard_name(name, shard_set, index)
        body = _configmap(shard_name, {INVENTORY_LABEL: name, SHARD_LABEL: str(index)},
                          {_A + "digest": digest}, {_SHARD_KEY: chunk})
        with _api(name, f"write ConfigMap {NAMESPACE}/{shard_name}"):
            kube.request("POST", CONFIGMAP.path(NAMESPACE), body)
        written.append(shard_name)

    notes = {"revision": inventory.revision, "ref": inventory.ref,
             "applied-at": inventory.applied_at, "path": inventory.path, "repo": inventory.repo,
             "complete": "true" if inventory.complete else "false",
             "entries": str(len(inventory.entries)), "shards": str(shards), "digest": digest,
             "shard-set": shard_set}
    body = _configmap(main_name, {INVENTORY_LABEL: name}, {_A + k: v for k, v in notes.items()},
                      {} if shards else {_INLINE_KEY: payload})
    stored = _switch(kube, name, body, current, written)

    replaced = [_shard_name(name, _shard_set(_notes(current)), i)
                for i in range(1, _shard_count(current) + 1)]
    _delete_named(kube, name, [s for s in replaced if s not in written])
    _delete_orphans(kube, name, set(written), stored)
    return _version(stored)


def _switch(kube: Kube, name: str, body: dict, current: dict | None,
            written: list[str]) -> dict:
    """Write the main object on the condition that it is still `current`."""
    main_name = body["metadata"]["name"]
    query = {"fieldManager": FIELD_MANAGER}
    try:
        if current is None:
            return kube.request("POST", CONFIGMAP.path(NAMESPACE), body, query=query)
        body["metadata"]["resourceVersion"] = _version(current)
        return kube.request("PUT", CONFIGMAP.path(NAMESPACE, main_name), body, query=query)
    except ApiError as e:
        if e.status != 409:
            raise InventoryError(f"inventory {name!r}: cannot write ConfigMap "
                                 f"{NAMESPACE}/{main_name}: {e}") from e
        with _api(name, f"read ConfigMap {NAMESPACE}/{main_name}"):
            now = kube.get(CONFIGMAP, NAMESPACE, main_name)
        if _notes(now).get(_A + "digest") == body["metadata"]["annotations"][_A + "digest"] \
                and _shard_set(_notes(now)) == _shard_set(body["metadata"]["annotations"]):
            return now  # our own write, retried after a lost response
        _delete_named(kube, name, written)
        raise InventoryConflict(name, _version(current), _version(now)) from None


def names(kube: Kube) -> list[str]:
    """Every sync name that has an inventory in the cluster, sorted."""
    selector = f"{MANAGED_BY}=gitops-restore,{INVENTORY_LABEL},!{SHARD_LABEL}"
    with _api(None, f"list ConfigMaps in {NAMESPACE}"):
        found = _list_metadata(kube, selector)
    return sorted({meta["labels"][INVENTORY_LABEL] for meta in found})


@dataclass(frozen=True)
class Source:
    """What an inventory records of where its objects came from (read without its entries)."""

    name: str
    repo: str
    path: str
    revision: str
    applied_at: str


def sources(kube: Kube) -> list[Source]:
    """Every inventory's recorded repository, path and revision, sorted by sync name; read from
    metadata only, so an inventory with corrupt entries does not hide the others."""
    selector = f"{MANAGED_BY}=gitops-restore,{INVENTORY_LABEL},!{SHARD_LABEL}"
    with _api(None, f"list ConfigMaps in {NAMESPACE}"):
        found = _list_metadata(kube, selector)
    records = []
    for meta in found:
        notes = meta.get("annotations") or {}
        records.append(Source(meta["labels"][INVENTORY_LABEL], notes.get(_A + "repo", ""),
                              notes.get(_A + "path", ""), notes.get(_A + "revision", ""),
                              notes.get(_A + "applied-at", "")))
    return sorted(records, key=lambda r: r.name)


def delete(kube: Kube, name: str) -> bool:
    """Remove the inventory of `name` (main object first); False when there was none."""
    check_name(name)
    main_name = configmap_name(name)
    with _api(name, f"delete ConfigMap {NAMESPACE}/{main_name}"):
        existed = kube.delete(CONFIGMAP, NAMESPACE, main_name)
    return _delete_shards(kube, name, set()) or existed


# ---- internals ----------------------------------------------------------------------------

def _escape(text: str) -> str:
    if "%" in text or "|" in text or "\n" in text:
        return text.replace("%", "%25").replace("|", "%7C").replace("\n", "%0A")
    return text


def _encode(inventory: Inventory) -> bytes:
    lines = [FORMAT_HEADER]
    for entry in inventory.entries:
        ref = entry.ref
        if not (entry.version and ref.kind and ref.name):
            raise InventoryError(f"inventory {inventory.name!r}: entry {ref} lacks a version, "
                                 "kind or name")
        lines.append("|".join(map(_escape, (entry.version, ref.group, ref.kind, ref.namespace,
                                            ref.name, entry.digest, entry.owned))))
    # mtime=0: the same entries give the same bytes, hence the same digest and shard names.
    return gzip.compress("\n".join(lines).encode(), compresslevel=6, mtime=0)


def _decode(payload: bytes, corrupt) -> tuple[Entry, ...]:
    try:
        text = gzip.decompress(payload).decode()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise corrupt(f"the data is not gzip-compressed UTF-8 text ({e})") from None
    lines = text.split("\n")
    if lines[0] != FORMAT_HEADER:
        raise corrupt(f"unknown data format {lines[0][:60]!r}, expected {FORMAT_HEADER!r}")
    entries = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("|")
        if len(fields) != 7 or not (fields[0] and fields[2] and fields[4]):
            raise corrupt(f"line {number} is not 'version|group|kind|namespace|name|digest|"
                          f"owned': {line[:200]!r}")
        version, group, kind, namespace, obj, digest, owned = (
            unquote(f) if "%" in f else f for f in fields)
        # The engine used to record the group too ("apps/v1"): such records still load.
        version = version.rpartition("/")[2]
        entries.append(Entry(ObjectRef(group, kind, namespace, obj), version, digest, owned))
    return tuple(entries)


def _digest(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _shard_name(name: str, shard_set: str, index: int) -> str:
    return f"{configmap_name(name)}-{shard_set}-{index}"


def _configmap(name: str, labels: dict[str, str], annotations: dict[str, str],
               data: dict[str, bytes]) -> dict:
    body: dict = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": name, "namespace": NAMESPACE,
        "labels": {MANAGED_BY: "gitops-restore", **labels}, "annotations": annotations}}
    if data:
        body["binaryData"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return body


def _b64(configmap: dict, key: str, corrupt) -> bytes:
    value = (configmap.get("binaryData") or {}).get(key)
    if value is None:
        raise corrupt(f"binaryData[{key!r}] is missing")
    return base64.b64decode(value)  # the API server has already validated the base64


def _list_metadata(kube: Kube, selector: str) -> list[dict]:
    """Metadata only: listing shards must not download megabytes of their data."""
    query: dict = {"labelSelector": selector, "limit": 500}
    items: list[dict] = []
    while True:
        page = kube.request("GET", CONFIGMAP.path(NAMESPACE), query=query, accept=_METADATA_LIST)
        items.extend(item["metadata"] for item in page.get("items") or [])
        token = page.get("metadata", {}).get("continue")
        if not token:
            return items
        query["continue"] = token


def _version(configmap: dict | None) -> str:
    return (configmap or {}).get("metadata", {}).get("resourceVersion", "") if configmap else ""


def _notes(configmap: dict | None) -> dict:
    return ((configmap or {}).get("metadata") or {}).get("annotations") or {}


def _shard_set(notes: dict) -> str:
    return notes.get(_A + "shard-set") or notes.get(_A + "digest", "").removeprefix("sha256:")[:10]


def _shard_count(configmap: dict | None) -> int:
    count = _notes(configmap).get(_A + "shards", "0")
    return int(count) if count.isdigit() else 0


def _delete_named(kube: Kube, name: str, shard_names: Iterable[str]) -> None:
    for shard_name in shard_names:
        with _api(name, f"delete ConfigMap {NAMESPACE}/{shard_name}"):
            kube.delete(CONFIGMAP, NAMESPACE, shard_name)


def _delete_orphans(kube: Kube, name: str, keep: set[str], stored: dict) -> None:
    """Delete shards no record names that are older than ORPHAN_SECONDS before our write, by
    the API server's clock (the time it recorded our write)."""
    written_at = max((_time(f.get("time")) for f in stored["metadata"].get("managedFields", [])
                      if f.get("manager") == FIELD_MANAGER), default=None)
    if written_at is None:
        return
    with _api(name, f"list the shards of ConfigMap {NAMESPACE}/{configmap_name(name)}"):
        found = _list_metadata(kube, f"{INVENTORY_LABEL}={name},{SHARD_LABEL}")
    _delete_named(kube, name, [
        meta["name"] for meta in found if meta["name"] not in keep
        and (_time(meta.get("creationTimestamp")) or written_at)
        <= written_at - ORPHAN_SECONDS])


def _time(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None
    except ValueError:
        return None


def _delete_shards(kube: Kube, name: str, keep: set[str]) -> bool:
    """Delete the shards of `name` not in `keep` (stale or orphaned); True if any were."""
    with _api(name, f"list the shards of ConfigMap {NAMESPACE}/{configmap_name(name)}"):
        found = _list_metadata(kube, f"{INVENTORY_LABEL}={name},{SHARD_LABEL}")
    deleted = False
    for meta in found:
        if meta["name"] not in keep:
            with _api(name, f"delete ConfigMap {NAMESPACE}/{meta['name']}"):
                deleted = kube.delete(CONFIGMAP, NAMESPACE, meta["name"]) or deleted
    return deleted


@contextmanager
def _api(name: str | None, action: str) -> Iterator[None]:
    """Start API errors with the inventory they concern (None: all of them)."""
    try:
        yield
    except ApiError as e:
        subject = f"inventory {name!r}" if name else "inventories"
        raise InventoryError(f"{subject}: cannot {action}: {e}") from e
