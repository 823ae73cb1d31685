"""Which existing sync a command means, found through what the inventories record.

Called by restore, plan, verify and rollback once connected to the cluster:
- `continued`: a sync started before default names carried a hash (`sync_names.sync_name`)
  keeps its inventory: with no --sync, an inventory under the old default name that records
  the same repository and path is used, rather than starting a second sync beside it.
- `for_rollback`: `rollback --to REV` rolls the existing sync back. Without --sync it is the
  one inventory that records this repository (and --path, when given, as recorded or as it
  was at REV); several ask for --sync, none asks for --path. Without --path the recorded path
  is used, followed to where that directory was at REV if it moved in between.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bootstrap import sync_names
from bootstrap.errors import UserError
from sync_agent import inventory, rollback_target, source, sync_identity
from sync_agent.engine import SyncOptions
from sync_agent.errors import SourceError
from sync_agent.kube import Kube


def continued(kube: Kube, options: SyncOptions, repo: str, path: str) -> SyncOptions:
    """`options`, named for the old default name when only that inventory has this source."""
    name = continued_name(kube, options.sync_name, repo, path)
    return options if name == options.sync_name else dataclasses.replace(options, sync_name=name)


def continued_name(kube: Kube, name: str, repo: str, path: str) -> str:
    """`name`, or the old default name when `name` is the default and only an inventory under
    the old default name records this repository and path."""
    if name != sync_names.sync_name(None, repo, path):
        return name  # named by --sync
    legacy = sync_names.legacy_sync_name(repo, path)
    records = {r.name: r for r in inventory.sources(kube)}
    old = records.get(legacy)
    if name in records or old is None or not _same(old, repo, path):
        return name
    return legacy


@dataclass(frozen=True)
class RollbackSync:
    """The sync a rollback rolls back, and the path that holds its state at the target."""

    name: str
    path: str
    recorded_path: str | None = None  # the inventory's path; None for a sync not yet here
    followed: bool = False  # `path` is where the recorded directory was at the target

    @property
    def moved(self) -> bool:
        """The directory moved since the target: the rollback applies it where it was then,
        under the same sync (the engine's repository/path check is satisfied by that)."""
        return self.followed and self.recorded_path is not None and (
            sync_identity.path_of(self.recorded_path) != sync_identity.path_of(self.path))


def for_rollback(kube: Kube, name: str | None, repo: str, path: str | None, to: str,
                 auth: source.GitAuth | None) -> RollbackSync:
    """Raises UserError (exit 2) when the sync cannot be told without --sync or --path."""
    records = inventory.sources(kube)
    if name:
        candidates = [r for r in records if r.name == name]
        if not candidates and path is None:
            raise UserError(f"--sync {name}: no inventory of that name in this cluster, so no "
                            "recorded path to roll back; give --path (`gitops-restore status` "
                            "lists the syncs here)")
    else:
        mine = sync_identity.repo_of(repo)
        candidates = [r for r in records if r.repo and sync_identity.repo_of(r.repo) == mine]
    if not candidates:
        if path is None:
            raise UserError(f"{sync_identity.repo_of(repo)}: no sync in this cluster applied "
                            "this repository, so there is nothing to roll back; give --path "
                            "to restore that path at the revision (and --sync for its sync)")
        return RollbackSync(name or sync_names.sync_name(None, repo, path), path)

    at = _paths_at_target(repo, auth, to, candidates)
    if path is not None and not name:
        wanted = sync_identity.path_of(path)
        candidates = [r for r in candidates
                      if wanted in (sync_identity.path_of(r.path), at[r.name])]
        if not candidates:
            return RollbackSync(sync_names.sync_name(None, repo, path), path)
    if len(candidates) > 1:
        listed = "; ".join(f"{r.name} (path '{r.path or '.'}', {r.revision[:12] or 'unfinished'})"
                           for r in candidates)
        raise UserError(f"{sync_identity.repo_of(repo)}: {len(candidates)} syncs in this "
                        f"cluster apply this repository: {listed}; say which with --sync "
                        "(nothing was changed)")
    record = candidates[0]
    chosen = at[record.name] if path is None else path
    return RollbackSync(record.name, chosen, record.path,
                        followed=sync_identity.path_of(chosen) == at[record.name])


def _paths_at_target(repo: str, auth: source.GitAuth | None, to: str,
                     records: list[inventory.Source]) -> dict[str, str]:
    """Each record's path followed from its recorded revision (else HEAD) to `to`."""
    repository = source.open_repository(repo, auth)
    target = source.resolve(repository, repo, ref=to).sha
    at = {}
    for record in records:
        try:
            start = source.resolve(repository, repo, ref=record.revision or None).sha
            moved = rollback_target.path_at(repository, record.path, start, target)
        except SourceError:
            moved = record.path  # the recorded commit is gone: no history to follow
        at[record.name] = sync_identity.path_of(moved)
    return at


def _same(record: inventory.Source, repo: str, path: str) -> bool:
    return (sync_identity.repo_of(record.repo), sync_identity.path_of(record.path)) == (
        sync_identity.repo_of(repo), sync_identity.path_of(path))
