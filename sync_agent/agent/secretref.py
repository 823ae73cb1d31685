"""Reading a Secret that a Sync names beside it: its deploy key, age keys or trusted keys.

Called by `deploykey`, `decryption` and `verifykeys` on every sync, each with its own error
class and the sentence that says how to create the Secret. The data comes back decoded and is
never put into a message.
"""

from __future__ import annotations

import base64
import binascii

from sync_agent.conventions import SECRET_RT
from sync_agent.errors import SyncError
from sync_agent.kube import ApiError, Kube


def read(kube: Kube, namespace: str, name: str, error: type[SyncError], holding: str,
         create: str) -> dict[str, bytes]:
    """The decoded data of Secret `namespace/name`. Raises `error`, naming the Secret: it
    cannot read `holding` (the API failed), or the Secret is missing (then `create` says how
    to make it), or its data is not base64."""
    where = f"Secret {namespace}/{name}"
    try:
        secret = kube.get(SECRET_RT, namespace, name)
    except ApiError as e:
        raise error(f"{where}: cannot read {holding}: {e}") from e
    if secret is None:
        raise error(f"{where}: not found; {create}")
    try:
        return {key: base64.b64decode(value or "", validate=True)
                for key, value in (secret.get("data") or {}).items()}
    except (binascii.Error, ValueError):
        raise error(f"{where}: data is not valid base64") from None
