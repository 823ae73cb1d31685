"""The Sync's `verify` section: its trusted keys, from a Secret in Flux's shape, for one sync.

`spec.verify.secretRef.name` names a Secret beside the Sync whose `*.asc` entries are OpenPGP
public keys and whose `*.sshpub` entries are SSH public keys (Flux's GitRepository
`verify.secretRef` uses the same shape; `agent install` / `bootstrap --verify-signatures`
write it). Read again on every sync, so added or removed keys take effect without a restart.
The engine then verifies the commit before rendering (sync_agent/signatures.py).
"""

from __future__ import annotations

import base64
import binascii

from sync_agent import signatures
from sync_agent.agent import deploykey, syncobject
from sync_agent.errors import SourceError, Unavailable
from sync_agent.kube import ApiError, Kube


class VerifyKeysError(Unavailable):
    """The verification Secret is missing or holds no usable key."""


def secret_name(sync: str) -> str:
    """The Secret `agent install --verify-signatures` writes the trusted keys to."""
    return f"{sync}-signing-keys"


def policy(kube: Kube, namespace: str, spec: syncobject.SyncSpec) -> signatures.Policy | None:
    if not spec.verify_mode:
        return None
    where = f"Secret {namespace}/{spec.verify_secret}"
    try:
        secret = kube.get(deploykey.SECRET_RT, namespace, spec.verify_secret)
    except ApiError as e:
        raise VerifyKeysError(f"{where}: cannot read the trusted keys: {e}") from e
    if secret is None:
        raise VerifyKeysError(
            f"{where}: not found; spec.verify needs it to hold the trusted public keys "
            f"(`*{signatures.PGP_SUFFIX}` OpenPGP, `*{signatures.SSH_SUFFIX}` SSH); "
            "create it with `gitops-restore agent install --verify-signatures ...`")
    try:
        data = {k: base64.b64decode(v, validate=True)
                for k, v in (secret.get("data") or {}).items()}
        return signatures.Policy(spec.verify_mode,
                                 signatures.Keys.from_secret(where, data))
    except (binascii.Error, ValueError):
        raise VerifyKeysError(f"{where}: data is not valid base64") from None
    except SourceError as e:
        raise VerifyKeysError(str(e)) from None


def secret_body(sync: str, namespace: str, keys: signatures.Keys) -> dict:
    """The Secret holding `keys` as `agent install` applies it."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(sync), "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "gitops-restore"}},
            "stringData": keys.secret_data()}
