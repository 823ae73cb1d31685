"""The Sync's `verify` section: its trusted keys, from a Secret in Flux's shape, for one sync.

`spec.verify.secretRef.name` names a Secret beside the Sync whose `*.asc` entries are OpenPGP
public keys and whose `*.sshpub` entries are SSH public keys (Flux's GitRepository
`verify.secretRef` uses the same shape; `agent install` / `bootstrap --verify-signatures`
write it). Read again on every sync, so added or removed keys take effect without a restart.
The engine then verifies the commit before rendering (sync_agent/signatures.py).
"""

from __future__ import annotations

from sync_agent import signatures
from sync_agent.agent import secretref, syncobject
from sync_agent.conventions import managed_labels
from sync_agent.errors import SourceError, Unavailable
from sync_agent.kube import Kube


class VerifyKeysError(Unavailable):
    """The verification Secret is missing or holds no usable key."""


def secret_name(sync: str) -> str:
    """The Secret `agent install --verify-signatures` writes the trusted keys to."""
    return f"{sync}-signing-keys"


def policy(kube: Kube, namespace: str, spec: syncobject.SyncSpec) -> signatures.Policy | None:
    if not spec.verify_mode:
        return None
    data = secretref.read(
        kube, namespace, spec.verify_secret, VerifyKeysError, "the trusted keys",
        f"spec.verify needs it to hold the trusted public keys (`*{signatures.PGP_SUFFIX}` "
        f"OpenPGP, `*{signatures.SSH_SUFFIX}` SSH); create it with `gitops-restore agent "
        "install --verify-signatures ...`")
    try:  # from_secret's messages say "Secret <name>" themselves
        keys = signatures.Keys.from_secret(f"{namespace}/{spec.verify_secret}", data)
    except SourceError as e:
        raise VerifyKeysError(str(e)) from None
    return signatures.Policy(spec.verify_mode, keys)


def secret_body(sync: str, namespace: str, keys: signatures.Keys) -> dict:
    """The Secret holding `keys` as `agent install` applies it."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": secret_name(sync), "namespace": namespace,
                         "labels": managed_labels()},
            "stringData": keys.secret_data()}
