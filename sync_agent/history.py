"""How the declared state under a path changed, commit by commit: the `history` command's engine.

Called by bootstrap's `history` command (and by rollback, to offer revisions). It lists the
first-parent commits that touched the path (or, for kustomizations, the files outside it they
read), renders each one, and keeps those whose objects changed: added, changed (same object,
different body) or removed, compared with the previous listed commit. Commits whose changes do
not alter any object (a README, a comment) are left out.

A path that did not exist at a commit declares no objects there, so a path that moved shows
its objects added where it appeared and removed where it went away. A commit that does not
render cleanly does not stop the walk: its entry carries the error text, and the object lists
cover what could be rendered.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sync_agent import render, source
from sync_agent.errors import RenderError, SourceError
from sync_agent.helm import capabilities
from sync_agent.objects import ObjectRef, Revision
from sync_agent.render_options import DEFAULTS, RenderOptions
from sync_agent.yaml_loader import YAMLSyntaxError, load_documents


@dataclass(frozen=True)
class HistoryEntry:
    """One commit that changed the declared state, and what it changed."""

    sha: str  # full commit SHA
    date: str  # committer date, ISO 8601
    author: str  # "Name <email>"
    message: str  # first line
    added: tuple[str, ...]  # str(ObjectRef) of objects new at this commit
    changed: tuple[str, ...]  # same object, different body
    removed: tuple[str, ...]
    objects: int  # how many objects the path declares at this commit
    error: str = ""  # why the commit did not render cleanly; "" when it did


@dataclass(frozen=True)
class _State:
    objects: dict[ObjectRef, dict[str, Any]]
    error: str


_EMPTY = _State({}, "")


def history(
    repo: source.Repository,
    url: str,
    path: str,
    ref: str | None = None,
    limit: int | None = None,
    ignore: Sequence[str] = (),
    options: RenderOptions = DEFAULTS,
) -> list[HistoryEntry]:
    """Commits that changed the objects under `path`, newest first, at most `limit` of them."""
    parts = PurePosixPath(path.strip() or ".").parts
    if path.strip().startswith("/") or ".." in parts:
        raise SourceError(f"path '{path}' must be relative to the repository root, inside it")
    start = source.resolve(repo, url, ref)
    watched = watched_paths(repo, start.sha, path)
    commits = list(source.path_commits(repo, url, start.sha, watched))
    exported = watched + _sourceignore_files(path)

    def state_at(index: int) -> _State:
        if index >= len(commits):
            return _EMPTY  # before the oldest listed commit nothing under the paths existed
        return _render(repo, commits[index], path, exported, ignore, options)

    entries: list[HistoryEntry] = []
    new = state_at(0)
    for index, commit in enumerate(commits):
        if limit is not None and len(entries) >= limit:
            break
        old = state_at(index + 1)
        entry = _compare(commit, old, new)
        if entry.added or entry.changed or entry.removed or new.error != old.error:
            entries.append(entry)
        new = old
    return entries


def objects_at(
    repo: source.Repository, commit: Revision, path: str, ignore: Sequence[str] = (),
    options: RenderOptions = DEFAULTS,
) -> dict[ObjectRef, dict[str, Any]]:
    """The objects `path` declares at `commit` ({} where the path does not exist; what did
    render where some files do not)."""
    exported = watched_paths(repo, commit.sha, path) + _sourceignore_files(path)
    return _render(repo, commit, path, exported, ignore, options).objects


def _render(
    repo: source.Repository, commit: Revision, path: str, exported: list[str],
    ignore: Sequence[str], options: RenderOptions,
) -> _State:
    with tempfile.TemporaryDirectory(prefix="gitops-restore-history-") as tmp:
        root = Path(tmp)
        left_out = source.export_tree(repo, commit.sha, root, only=exported)
        try:
            result = render.render(root, path, commit, ignore, options, left_out,
                                   capabilities.without_cluster(commit.repo))
        except SourceError:
            return _EMPTY  # the path does not exist at this commit
        except RenderError as e:
            objects = {r.ref: r.body for r in e.partial.resources} if e.partial else {}
            return _State(objects, str(e))
    return _State({r.ref: r.body for r in result.resources}, "")


def _compare(commit: Revision, old: _State, new: _State) -> HistoryEntry:
    def names(refs: set[ObjectRef]) -> tuple[str, ...]:
        return tuple(sorted(str(ref) for ref in refs))

    before, after = old.objects.keys(), new.objects.keys()
    changed = {ref for ref in after & before if new.objects[ref] != old.objects[ref]}
    return HistoryEntry(
        sha=commit.sha,
        date=commit.committed_at,
        author=commit.author,
        message=commit.message,
        added=names(after - before),
        changed=names(changed),
        removed=names(before - after),
        objects=len(after),
        error=new.error,
    )


def _sourceignore_files(path: str) -> list[str]:
    parts = PurePosixPath(path.strip("/") or ".").parts
    return ["/".join([*parts[:depth], render.SOURCEIGNORE]) for depth in range(len(parts) + 1)]


def watched_paths(repo: source.Repository, sha: str, path: str) -> list[str]:
    """`path`, plus the paths outside it that its kustomization files read at `sha`.

    Overlays often read bases and patches from sibling directories (`../base`); a change there
    changes the rendered objects, so those directories are watched too.
    """
    top = PurePosixPath(path.strip("/") or ".")
    watched = [str(top)]
    queue = [str(top)]
    while queue:
        directory = queue.pop()
        for kfile in _kustomization_files(repo, sha, directory):
            for ref in _references(repo, sha, kfile):
                if ref not in watched and not _inside(ref, watched):
                    watched.append(ref)
                    queue.append(ref)
    return ["" if w == "." else w for w in watched]


def _kustomization_files(repo: source.Repository, sha: str, directory: str) -> list[str]:
    names = render.KUSTOMIZATION_FILES
    return [p for p in source.tree_files(repo, sha, directory) if PurePosixPath(p).name in names]


def _references(repo: source.Repository, sha: str, kfile: str) -> list[str]:
    """Relative paths with `..` in a kustomization file, as repository paths."""
    try:
        docs = load_documents(source.file_text(repo, sha, kfile))
    except (SourceError, YAMLSyntaxError):
        return []
    found = []
    base = PurePosixPath(kfile).parent
    for value in render.kustomization_references(docs[0].data if docs else None):
        target = os.path.normpath(base / value)
        if target != ".." and not target.startswith(("../", "/")):
            found.append(target)
    return found


def _inside(path: str, directories: list[str]) -> bool:
    return any(d == "." or path == d or path.startswith(d + "/") for d in directories)
