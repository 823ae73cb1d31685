"""The age keys of a Sync, read from the Secret its `spec.decryption.secretRef` names.

The Secret is in Flux's shape (kustomize-controller's `decryption.secretRef`): every data key
ending in `.agekey` holds an age key file; `bootstrap --sops-age-key` writes it as
`<sync>-sops-age` with the key `age.agekey`. It is read again on every sync, so a rotated key
takes effect without a restart, and kept in memory only (`sops.AgeKeys`): never a file.
"""

from __future__ import annotations

import base64
import binascii

from sync_agent import sops
from sync_agent.errors import Unavailable
from sync_agent.kube import ApiError, Kube, ResourceType

SECRET_RT = ResourceType("", "v1", "Secret", "secrets", namespaced=True)
SUFFIX = ".agekey"
DATA_KEY = "age.agekey"  # the one key bootstrap writes


class DecryptionKeyError(Unavailable):
    """The decryption Secret is missing or holds no age key; the message names it and the fix."""


def secret_name(sync: str) -> str:
    """The decryption Secret bootstrap writes for a Sync."""
    return f"{sync}-sops-age"


def age_keys(kube: Kube, namespace: str, name: str) -> sops.AgeKeys:
    where = f"Secret {namespace}/{name}"
    try:
        secret = kube.get(SECRET_RT, namespace, name)
    except ApiError as e:
        raise DecryptionKeyError(f"{where}: cannot read the age keys: {e}") from e
    if secret is None:
        raise DecryptionKeyError(f"{where}: not found; store the age key with `gitops-restore "
                                 "bootstrap --sops-age-key FILE` or point "
                                 "spec.decryption.secretRef.name at the Secret holding it")
    files = {k: v for k, v in (secret.get("data") or {}).items() if k.endswith(SUFFIX)}
    if not files:
        raise DecryptionKeyError(f"{where}: holds no '*{SUFFIX}' key; put the age key file "
                                 f"under '{DATA_KEY}'")
    try:
        text = "\n".join(base64.b64decode(v, validate=True).decode() for _, v in
                         sorted(files.items()))
    except (binascii.Error, ValueError):
        raise DecryptionKeyError(f"{where}: data is not valid base64 text") from None
    try:
        return sops.parse_keys(text, where)
    except sops.KeyFileError as e:
        raise DecryptionKeyError(str(e)) from None
