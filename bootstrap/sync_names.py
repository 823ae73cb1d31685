"""Sync names: the name that owns a sync's inventory, lock and agent, given or derived from
the repository and path; and deploy keys' names."""

from __future__ import annotations

import hashlib
import re

from bootstrap.errors import UserError
from sync_agent import source, sync_identity


def sync_name(name: str | None, repo: str, path: str) -> str:
    """--sync, else the default: readable, and unique per repository and path.

    The default is the repository's name and the path, cut to 43 characters, then 8 hex digits
    of a hash of the repository and path (spelled as `sync_identity` records them), so two
    repositories called `fleet`, `apps/web` and `apps-web`, or long paths that differ only at
    the end never share an inventory. Syncs started before (named without the hash) keep their
    name: see `sync_lookup.continued`.
    """
    if name:
        return check_sync_name(name)
    repo = sync_identity.repo_of(repo)  # also: no credentials in the name
    tag = hashlib.sha256(f"{repo}\n{sync_identity.path_of(path)}".encode()).hexdigest()[:8]
    stem = _slug(repo, path)[:43].strip("-")
    return f"{stem}-{tag}" if stem else f"sync-{tag}"


def legacy_sync_name(repo: str, path: str) -> str:
    """The default sync name before it carried a hash (collides; read only to continue)."""
    return _slug(repo, path)[:52].strip("-") or "default"


def key_name(name: str | None, repo: str) -> str:
    """A deploy key's name: --deploy-key, else the repository's name (unchanged, so existing
    keys are found again)."""
    return check_sync_name(name, "--deploy-key") if name else legacy_sync_name(repo, "")


def check_sync_name(name: str, option: str = "--sync") -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", name):
        raise UserError(f"{option} {name!r}: use lowercase letters, digits and '-' "
                        "(at most 52), starting and ending with a letter or digit")
    return name


def _slug(repo: str, path: str) -> str:
    shown = source.redact(repo)  # a URL without a path would otherwise lend its token
    stem = re.sub(r"\.git$", "", shown.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1])
    raw = f"{stem}-{path}" if path.strip("./") else stem
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")
