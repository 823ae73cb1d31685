"""What the inventory remembers of a body: a digest, so that a later run can tell, without a
request, that the object it would send is the one it sent last time.

Most objects get a plain sha256 of their canonical JSON. Secret values never do (a Secret, or
anything decrypted from a SOPS file): whoever reads the inventory, a ConfigMap, could test
guesses of the values against a plain hash. They get an HMAC instead, keyed by 32 random bytes
in the Secret `gitops-restore-system/gitops-restore-digest-key` that the first restore of a
cluster makes: reading it takes the right to read Secrets there, where the deploy keys and age
keys already are. Without the key (a `plan` before any restore) secret objects get no digest
and are always dry-run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sync_agent import json_codec
from sync_agent.conventions import NAMESPACE, SECRET_RT, managed_labels
from sync_agent.errors import Refused
from sync_agent.kube import ApiError, Kube

KEY_SECRET = "gitops-restore-digest-key"
_KEY_BYTES = 32


class DigestKeyError(Refused):
    """The key Secret exists but holds no usable key."""


def plain(body: dict) -> str:
    return hashlib.sha256(json_codec.canonical(body)).hexdigest()[:16]


def keyed(body: dict, key: bytes) -> str:
    return hmac.new(key, json_codec.canonical(body), hashlib.sha256).hexdigest()[:16]


def of_body(body: dict, secret: bool, key: bytes) -> str:
    """The digest of `body` as the inventory keeps it ("" for a secret one without a key)."""
    if not secret:
        return plain(body)
    return keyed(body, key) if key else ""


def cluster_key(kube: Kube, create: bool) -> bytes:
    """The cluster's digest key; made when missing if `create` (the caller holds the sync's
    lock, so the agent's namespace exists), else b"" when missing."""
    key = _read(kube)
    if key is not None or not create:
        return key or b""
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": KEY_SECRET, "namespace": NAMESPACE, "labels": managed_labels()},
            "data": {"key": base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()}}
    try:
        kube.request("POST", SECRET_RT.path(NAMESPACE), body)
    except ApiError as e:
        if e.status != 409:  # 409: another writer made it first; theirs is the key
            raise
    return _read(kube) or b""


def _read(kube: Kube) -> bytes | None:
    secret = kube.get(SECRET_RT, NAMESPACE, KEY_SECRET)
    if secret is None:
        return None
    try:
        key = base64.b64decode((secret.get("data") or {}).get("key", ""), validate=True)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise DigestKeyError(
            f"Secret {NAMESPACE}/{KEY_SECRET} holds no usable digest key (data.key, 32 random "
            f"bytes). Delete it (`kubectl -n {NAMESPACE} delete secret {KEY_SECRET}`): the next "
            "restore makes a new one, and dry-runs every Secret once.")
    return key
