"""Where the files that ship beside the code live: playbooks, deploy manifests, the demo repo,
report schemas.

In a checkout (and an editable install) they sit at the top of the repository, as the design
card lays it out; a wheel installs them under `<prefix>/share/gitops-restore/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALLED = Path(sys.prefix) / "share" / "gitops-restore"


def resource(name: str) -> Path:
    """The directory `name` (playbooks, deploy, examples, schemas)."""
    for base in (CHECKOUT, INSTALLED):
        if (base / name).is_dir():
            return base / name
    return CHECKOUT / name  # missing either way: errors will name the checkout path
