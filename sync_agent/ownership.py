"""Which fields of a live object are ours, and how an object we created by POST becomes ours
the way server-side apply means it.

apply.py creates a new object by POST (it costs the API server about a third less than a
server-side apply that creates it), so the object comes out owned by an *Update* entry of our
field manager, not an *Apply* one. The API server honours no Apply entry sent with a create.
That is enough while the object stays as declared: drift moves fields out of that entry as it
would out of an Apply entry, and `owned_fields_digest` sees it. Before the first server-side
apply of such an object, `upgrade` turns the Update entry into our Apply entry (what client-go's
csaupgrade does for kubectl), so that the apply removes what the new revision stops declaring.
"""

from __future__ import annotations

from sync_agent import digests
from sync_agent.conventions import FIELD_MANAGER
from sync_agent.kube import METADATA_ONLY, ApiError, Kube, ResourceType


def _ours(entry: dict, operation: str) -> bool:
    return (entry.get("manager") == FIELD_MANAGER and entry.get("operation") == operation
            and not entry.get("subresource"))


def _entries(live: dict) -> list[dict]:
    return live.get("metadata", {}).get("managedFields") or []


def owned_fields_digest(live: dict) -> str:
    """Digest of the fields our field manager owns on a live object ("" if none)."""
    entries = _entries(live)
    applied = [e.get("fieldsV1", {}) for e in entries if _ours(e, "Apply")]
    created = [e.get("fieldsV1", {}) for e in entries if _ours(e, "Update")]
    if not created:  # the form every inventory recorded before objects were created by POST
        return digests.plain(applied[0]) if applied else ""
    return digests.plain({"Apply": applied, "Update": created})


def created_by_us(live: dict) -> bool:
    """Owned by our Update entry: created by POST and not applied since."""
    return any(_ours(e, "Update") for e in _entries(live))


def upgrade(kube: Kube, rt: ResourceType, namespace: str, name: str) -> None:
    """Make our Update entry part of our Apply entry. On the object as read here: the JSON
    patch tests its resourceVersion, and one changed meanwhile is read again."""
    for _ in range(5):
        live = kube.get(rt, namespace, name)
        if live is None or not created_by_us(live):
            return
        try:
            kube.request("PATCH", rt.path(namespace, name), [
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": live["metadata"]["resourceVersion"]},
                {"op": "replace", "path": "/metadata/managedFields",
                 "value": _upgraded(_entries(live))}],
                content_type="application/json-patch+json", accept=METADATA_ONLY)
            return
        except ApiError as e:
            if e.status not in (409, 422):  # the test failed: changed since read
                raise


def _upgraded(entries: list[dict]) -> list[dict]:
    update = [e for e in entries if _ours(e, "Update")]
    applied = [e for e in entries if _ours(e, "Apply")]
    merged: dict = {}
    for entry in applied + update:
        _union(merged, entry.get("fieldsV1", {}))
    first = (applied or update)[0]
    ours = {"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": first["apiVersion"],
            "time": first.get("time"), "fieldsType": "FieldsV1", "fieldsV1": merged}
    return [*(e for e in entries if not (_ours(e, "Update") or _ours(e, "Apply"))), ours]


def _union(into: dict, fields: dict) -> None:
    for key, value in fields.items():
        _union(into.setdefault(key, {}), value)
