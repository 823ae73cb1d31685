"""The age keys of a Sync, read from the Secret its `spec.decryption.secretRef` names.

The Secret is in Flux's shape (kustomize-controller's `decryption.secretRef`): every data key
ending in `.agekey` holds an age key file; `bootstrap --sops-age-key` writes it as
`<sync>-sops-age` with the key `age.agekey`. It is read again on every sync, so a rotated key
takes effect without a restart, and kept in memory only (`sops.AgeKeys`): never a file.
"""

from __future__ import annotations

from sync_agent import sops
from sync_agent.agent import secretref
from sync_agent.errors import Unavailable
from sync_agent.kube import Kube

SUFFIX = ".agekey"
DATA_KEY = "age.agekey"  # the one key bootstrap writes


class DecryptionKeyError(Unavailable):
    """The decryption Secret is missing or holds no age key; the message names it and the fix."""


def secret_name(sync: str) -> str:
    """The decryption Secret bootstrap writes for a Sync."""
    return f"{sync}-sops-age"


def age_keys(kube: Kube, namespace: str, name: str) -> sops.AgeKeys:
    where = f"Secret {namespace}/{name}"
    data = secretref.read(kube, namespace, name, DecryptionKeyError, "the age keys",
                          "store the age key with `gitops-restore bootstrap --sops-age-key "
                          "FILE` or point spec.decryption.secretRef.name at the Secret holding it")
    files = {k: v for k, v in data.items() if k.endswith(SUFFIX)}
    if not files:
        raise DecryptionKeyError(f"{where}: holds no '*{SUFFIX}' key; put the age key file "
                                 f"under '{DATA_KEY}'")
    try:
        text = "\n".join(v.decode() for _, v in sorted(files.items()))
    except UnicodeDecodeError:
        raise DecryptionKeyError(f"{where}: data is not valid base64 text") from None
    try:
        return sops.parse_keys(text, where)
    except sops.KeyFileError as e:
        raise DecryptionKeyError(str(e)) from None
