"""What rendering may do with a repository it does not trust: the bounds and the one opt-in.

Part of `engine.SourceSpec`; read by `render`, `kustomize` and `yaml_loader`. The defaults are
generous for real repositories (the largest CRD bundles are a few MiB and a few hundred
thousand YAML nodes) and small enough that a hostile file cannot exhaust the machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sync_agent.sops import AgeKeys

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_YAML_NODES = 10_000_000


@dataclass(frozen=True)
class RenderOptions:
    # Let kustomize fetch `https://…`, `github.com/…`, `git@…` bases with the operator's own
    # git setup (HOME, SSH agent). Off: such a reference is refused before kustomize runs.
    allow_remote_bases: bool = False
    # Largest manifest or kustomization file, and largest kustomize output, read (bytes).
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # Most YAML nodes one file may hold once its aliases are expanded ("billion laughs").
    max_yaml_nodes: int = DEFAULT_MAX_YAML_NODES
    # Age identities that decrypt SOPS-encrypted files (see `sops`); None: such files are
    # refused, naming the option that would decrypt them.
    sops_keys: AgeKeys | None = None


DEFAULTS = RenderOptions()

_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def parse_size(text: str) -> int:
    """Bytes in `64Mi`, `200M`, `1Gi` or a plain number; ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*(Ki|Mi|Gi|K|M|G)?\s*", text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{text!r}: use a size such as 64Mi, 200Mi or 1Gi")
    return int(match.group(1)) * _UNITS[match.group(2) or ""]
