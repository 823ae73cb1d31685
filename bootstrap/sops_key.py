"""The age key a new environment needs from outside Git, stored for the agent by bootstrap.

`bootstrap --sops-age-key FILE` writes the key file to the Secret `<sync>-sops-age` (data key
`age.agekey`, the shape `sync_agent.agent.decryption` and Flux read) in the agent's namespace,
and the Sync names it in `spec.decryption.secretRef`. A Secret holding another key is kept
unless `--rotate` is given, as with deploy keys. The key text is never printed; messages name
the age recipients' count and the Secret.
"""

from __future__ import annotations

import base64

from bootstrap.deploy_key import store_secret
from bootstrap.errors import UserError
from sync_agent import sops
from sync_agent.agent import decryption
from sync_agent.conventions import NAMESPACE, SOPS_AGE_LABEL, managed_labels
from sync_agent.kube import Kube

NOTHING_CHANGED = "; nothing was changed"


def store(kube: Kube, sync: str, keys: sops.AgeKeys, rotate: bool) -> tuple[bool, str]:
    """Write the keys to the Sync's decryption Secret; (changed, a note for people)."""
    name = decryption.secret_name(sync)
    where = f"Secret {NAMESPACE}/{name}"
    try:
        stored = decryption.age_keys(kube, NAMESPACE, name)
    except decryption.DecryptionKeyError:
        stored = None
    if stored is not None and stored.text == keys.text:
        return False, f"age key unchanged in {where}"
    if stored is not None and not rotate:
        raise UserError(f"{where} already holds another age key; pass --rotate to replace it "
                        f"(files encrypted only for the old key then stop decrypting)"
                        f"{NOTHING_CHANGED}")
    body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": NAMESPACE,
                         "labels": managed_labels({SOPS_AGE_LABEL: sync})},
            "data": {decryption.DATA_KEY: base64.b64encode(keys.text.encode()).decode()}}
    store_secret(kube, body, "the age key")
    return True, f"age key {'rotated' if stored else 'stored'} in {where}"
