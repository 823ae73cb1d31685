"""Which repository and path a sync follows, spelled one way, and the check that a sync name
is not already taken by another source.

The engine records `recorded` and `path_of` in every inventory it saves (`inventory.save`) and,
before planning, refuses to apply a different repository or path under a sync name whose
inventory records another one: two sources sharing one inventory prune each other's objects.
Spellings of one source compare equal: credentials, a trailing `/` or `.git` and the scheme's
user do not count, `git@host:org/repo` is `ssh://host/org/repo`, a local repository is its
absolute real path, and `./apps/web/` is `apps/web`. Inventories written before this module
recorded the repository as given; a relative local path among them is read from the current
directory, so such an old record may need `--take-over` once.
"""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import urlsplit

from sync_agent import source
from sync_agent.errors import Refused

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_SCP = re.compile(r"^(?:[^@/:]+@)?([^/:]+):(.*)$")


class SourceMismatch(Refused):
    """A sync name's inventory records another repository or path."""


def repo_of(url: str) -> str:
    """The repository's one spelling, without credentials (safe to store and show)."""
    url = url.strip()
    if url.lower().startswith("file://"):
        return os.path.realpath(url[len("file://"):])
    if _SCHEME.match(url):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()  # hostname drops any user:token@
        try:
            host += f":{parts.port}" if parts.port else ""
        except ValueError:
            pass  # a bad port is the fetch's error to report, not ours
        return _trimmed(f"{parts.scheme.lower()}://{host}{parts.path}")
    if source.is_remote(url) and (scp := _SCP.match(url)):
        return _trimmed(f"ssh://{scp.group(1).lower()}/{scp.group(2).lstrip('/')}")
    return os.path.realpath(url)  # a local directory: its own name, .git or not


def recorded(url: str) -> str:
    """How an inventory records a repository: as given without credentials (what reports
    show), a local path made absolute so that it means the same from any directory."""
    if source.is_remote(url):
        return source.redact(url)
    return os.path.realpath(url)


def path_of(path: str) -> str:
    """The path in the repository, relative, without `./` or trailing `/` ("" for the root)."""
    normal = posixpath.normpath(path.strip().strip("/") or ".")
    return "" if normal == "." else normal


def check(name: str, recorded_repo: str, recorded_path: str, repo: str, path: str) -> None:
    """Raise SourceMismatch when an inventory recorded for `name` names another source.

    An inventory without a recorded repository (none was ever saved) takes any source.
    """
    if not recorded_repo:
        return
    if (repo_of(recorded_repo), path_of(recorded_path)) == (repo_of(repo), path_of(path)):
        return
    raise SourceMismatch(
        f"sync {name!r}: its inventory records repository {repo_of(recorded_repo)} path "
        f"'{path_of(recorded_path) or '.'}', but this run applies {repo_of(repo)} path "
        f"'{path_of(path) or '.'}'; under one name the two would prune each other's objects. "
        "Give this source its own --sync (or leave --sync out: default names are unique per "
        "repository and path), or pass --take-over if this sync really moves to the new "
        "repository or path (nothing was changed)")


def _trimmed(url: str) -> str:
    return url.rstrip("/").removesuffix(".git").rstrip("/")
