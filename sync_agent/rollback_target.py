"""The two revisions a drill goes between, and the declared state before the current one.

Called by bootstrap's `drill` before it provisions anything: `resolve_targets` resolves the
revision to restore (`--from`) and the one to roll back to (`--to`), and renders both, so an
unknown ref, a missing path or a broken manifest is reported while nothing has been made yet.

Without `--to`, the rollback target is `previous_state`: the previous commit that changed the
objects under the path, as `history` lists them. When the path's whole history is one commit
that moved the directory there (a `git mv` of `guestbook/` to `web/guestbook/`), the walk
follows the move and goes on under the old path, so a restructured repository still has a
previous revision. A pure move declares the same objects as before it and does not count as a
change of state; a move that also edited files does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sync_agent import engine, history, source
from sync_agent.errors import SourceError
from sync_agent.helm import capabilities
from sync_agent.objects import ObjectRef, Revision

PREVIOUS = "previous change"  # how a default --to is named in reports

_MOVES_FOLLOWED = 10  # a safety stop for pathological histories


@dataclass(frozen=True)
class Target:
    """A resolved revision to restore, the path holding its state there, and its size."""

    revision: Revision  # `ref` is what was asked (a ref, or PREVIOUS), `sha` the commit
    path: str
    objects: int  # objects the path declares at the revision

    def spec(self, base: engine.SourceSpec) -> engine.SourceSpec:
        """`base` pinned to this commit and path (repository, ignores and auth stay)."""
        return dataclasses.replace(base, ref=self.revision.sha, at=None, path=self.path)


def resolve_targets(spec: engine.SourceSpec, to_ref: str | None,
                    to_path: str | None = None) -> tuple[Target, Target]:
    """(from, to): `spec`'s revision, and `to_ref` or else the previous state; both rendered.

    Raises SourceError or RenderError (bad input) naming the ref, path or file.
    """
    repo, start = engine.fetch(spec)
    if to_ref is not None:
        back = PathRevision(source.resolve(repo, spec.repo, ref=to_ref),
                            spec.path if to_path is None else to_path)
    else:
        found = previous_state(repo, spec.repo, spec.path, start.sha, spec.ignore)
        if found is None:
            raise SourceError(
                f"{source.redact(spec.repo)}: no earlier commit changed the objects under "
                f"'{spec.path or '.'}' before {start.sha[:12]} ({start.ref}); give the "
                "revision to roll back to with --to REF")
        revision = dataclasses.replace(found.revision, ref=PREVIOUS)
        back = PathRevision(revision, found.path if to_path is None else to_path)
    return (_rendered(repo, spec, start, spec.path, None),
            _rendered(repo, spec, back.revision, back.path, to_ref))


def _rendered(repo: source.Repository, spec: engine.SourceSpec, revision: Revision, path: str,
              asked: str | None) -> Target:
    try:
        result = engine.render_revision(repo, revision, dataclasses.replace(spec, path=path),
                                        capabilities.without_cluster(spec.repo))
    except SourceError as e:
        hint = " If the directory moved since, give its path there with --to-path." if asked \
            else ""
        raise SourceError(f"{e}{hint}") from None
    return Target(revision, path, len(result.resources))


@dataclass(frozen=True)
class PathRevision:
    """A commit and the path that holds the declared state there (it moved if it differs)."""

    revision: Revision
    path: str


def previous_state(repo: source.Repository, url: str, path: str, start: str,
                   ignore: Sequence[str] = ()) -> PathRevision | None:
    """The commit that introduced the declared state just before the one at `start`.

    None when there is none: the path's objects appeared at its first commit and did not move
    there from another directory.
    """
    sha, current, skip = start, path, 1  # skip the change that made the state at `start`
    for _ in range(_MOVES_FOLLOWED):
        entries = history.history(repo, url, current, ref=sha, limit=skip + 1, ignore=ignore)
        if not entries:
            return None
        if len(entries) > skip:
            chosen = entries[skip]
            move = _move_into(repo, chosen.sha, current, ignore)
            if move is None or not move.pure:
                return PathRevision(_as_revision(url, chosen), current)
            # A pure move only renamed the state: find who made it, under the old path.
            sha, current, skip = move.parent, move.old_path, 0
            continue
        move = _move_into(repo, entries[-1].sha, current, ignore)
        if move is None:
            return None
        skip -= len(entries) - (1 if move.pure else 0)
        sha, current = move.parent, move.old_path
    return None


@dataclass(frozen=True)
class _Move:
    parent: str
    old_path: str
    pure: bool  # the same objects as before: only the directory changed


def _move_into(repo: source.Repository, sha: str, path: str,
               ignore: Sequence[str]) -> _Move | None:
    """How `path` came to be at `sha`, if it was moved there from another directory."""
    arrival = _arrival(repo, sha, path)
    if arrival is None:
        return None
    parent, old_path = arrival
    pure = _objects(repo, parent, old_path, ignore) == _objects(repo, sha, path, ignore)
    return _Move(parent, old_path, pure)


def _arrival(repo: source.Repository, sha: str, path: str) -> tuple[str, str] | None:
    """(first parent, old path) when commit `sha` moved the directory `path` here."""
    parent = source.first_parent(repo, sha)
    if parent is None or source.path_exists(repo, parent, path):
        return None
    old_path = moved_from(repo, parent, sha, path)
    return None if old_path is None else (parent, old_path)


def moved_from(repo: source.Repository, parent: str, sha: str, path: str) -> str | None:
    """The directory that `path` was renamed from between `parent` and `sha`, if it was."""
    return _renamed(repo, parent, sha, path, into=True)


def moved_to(repo: source.Repository, parent: str, sha: str, path: str) -> str | None:
    """The directory that `path` was renamed to between `parent` and `sha`, if it was."""
    return _renamed(repo, parent, sha, path, into=False)


def _renamed(repo: source.Repository, parent: str, sha: str, path: str, into: bool) -> str | None:
    """The other end of a directory rename of `path` (its source when `into`, else its
    destination): the directory most renamed files agree on."""
    top = PurePosixPath(path.strip("/") or ".")
    if str(top) == ".":
        return None
    votes: dict[str, int] = {}
    for renamed in source.renames(repo, parent, sha):
        old, new = (PurePosixPath(name) for name in renamed)
        here, there = (new, old) if into else (old, new)
        if here.is_relative_to(top):
            rel = here.relative_to(top)
            if there.parts[len(there.parts) - len(rel.parts):] == rel.parts:
                base = PurePosixPath(*there.parts[:len(there.parts) - len(rel.parts)])
                votes[str(base)] = votes.get(str(base), 0) + 1
    if not votes:
        return None
    best = max(votes, key=lambda name: votes[name])
    return "" if best == "." else best


def path_at(repo: source.Repository, path: str, start: str, target: str) -> str:
    """Where the directory that is `path` at commit `start` is at commit `target`.

    Follows directory renames back from `start` to the commits' merge base, then forward to
    `target`, so it works whether `target` is older (a rollback), newer or on another branch.
    A directory that was created or deleted rather than moved keeps its path.
    """
    base = source.merge_base(repo, start, target)
    return _forward(repo, _back(repo, path, start, base), base, target)


def _back(repo: source.Repository, path: str, start: str, base: str) -> str:
    current, sha = path.strip("/"), start
    for _ in range(_MOVES_FOLLOWED):
        if not current or current == ".":
            return current
        commits = source.commits_changing(repo, current, base, sha)
        # The oldest is the change that brought `current` here, if any.
        arrival = _arrival(repo, commits[-1], current) if commits else None
        if arrival is None:
            return current
        sha, current = arrival
    return current


def _forward(repo: source.Repository, path: str, base: str, target: str) -> str:
    current, sha = path.strip("/"), base
    for _ in range(_MOVES_FOLLOWED):
        if not current or current == ".":
            return current
        commits = source.commits_changing(repo, current, sha, target, oldest_first=True)
        gone = next((c for c in commits if not source.path_exists(repo, c, current)), None)
        if gone is None:
            return current
        parent = source.first_parent(repo, gone)
        new = moved_to(repo, parent, gone, current) if parent else None
        if new is None:
            return current
        current, sha = new, gone
    return current


def _as_revision(url: str, entry: history.HistoryEntry) -> Revision:
    return Revision(source.redact(url), entry.sha, entry.sha, entry.date, entry.author,
                    entry.message)


def _objects(repo: source.Repository, sha: str, path: str,
             ignore: Sequence[str]) -> dict[ObjectRef, dict[str, Any]]:
    revision = Revision(source.redact(repo.git_dir), sha, sha, "", "", "")
    return history.objects_at(repo, revision, path, ignore)
