"""Rendered revisions kept on disk, so a commit rendered before is not exported and parsed again.

The agent renders the same commit every interval, and a rollback renders a commit it rendered
when it was current: the objects a revision declares depend only on the commit, the path, the
ignore patterns, the render options, the Helm settings, this package's own code and the kubectl
that runs kustomize, so they are stored under the hash of exactly those (`key`) and read back
by `engine.render_revision`.

What is kept is only what is safe in plain files and cannot move under the same key: never a
decrypted SOPS value, never anything Helm rendered (its output depends on the cluster, and helm
keeps its own cache: `helm.rendercache`), never a render that may fetch remote kustomize bases,
never a render that failed. An entry that cannot be read or parsed is a miss, never an error;
one that cannot be written is skipped. The MAX_ENTRIES most recently used are kept.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from pathlib import Path

import orjson

from sync_agent import collector, json_codec, paths
from sync_agent.helm.context import HelmContext
from sync_agent.objects import Origin, RenderResult, Resource, Revision
from sync_agent.render_options import RenderOptions

FORMAT = 1  # bump when what an entry holds changes
MAX_ENTRIES = 20


def directory() -> Path:
    return paths.cache_root() / "render"


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Everything a render's output depends on besides the commit's files (and the code and
    the kubectl that renders them, which `key` adds)."""

    repo: str  # as given: the same commit from another URL is another entry
    sha: str
    path: str
    ignore: tuple[str, ...]
    options: RenderOptions
    helm: HelmContext | None  # None: charts are listed as skipped, not rendered


def cacheable(inputs: Inputs) -> bool:
    """Remote kustomize bases may change under the same commit: such a render is never kept."""
    return not inputs.options.allow_remote_bases


def key(inputs: Inputs) -> str:
    options = inputs.options
    helm = inputs.helm.settings if inputs.helm else None
    described = {
        "format": FORMAT, "code": _code_digest(), "kustomize": paths.kubectl(),
        "repo": inputs.repo, "sha": inputs.sha,
        "path": inputs.path, "ignore": list(inputs.ignore),
        "max_file_bytes": options.max_file_bytes, "max_yaml_nodes": options.max_yaml_nodes,
        "sops_keys": options.sops_keys is not None,
        "helm": None if helm is None else {
            "mode": helm.mode, "offline": helm.offline,
            "ca_file": str(helm.ca_file) if helm.ca_file else None,
            "username": helm.username, "password": helm.password is not None},
    }
    return hashlib.sha256(json_codec.canonical(described)).hexdigest()


def load(entry: str, revision: Revision) -> RenderResult | None:
    """The stored result for `entry`, carrying this run's `revision` (the ref asked for may
    differ); None when absent or bad."""
    path = directory() / f"{entry}.json"
    try:
        with collector.paused():
            data = json_codec.loads(path.read_bytes())
            if data["format"] != FORMAT:
                return None
            resources = tuple(Resource(body, Origin(*origin))
                              for body, origin in data["resources"])
        if not all(isinstance(r.body, dict) for r in resources):
            return None
        os.utime(path)  # in use: the last to be trimmed
        return RenderResult(revision, data["path"], resources, tuple(data["skipped"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(entry: str, result: RenderResult) -> None:
    """Keep `result` unless it holds decrypted or Helm-rendered objects, or does not survive
    JSON unchanged (non-string keys, integers past 64 bits); a failed write is skipped."""
    if result.helm or any(r.decrypted for r in result.resources):
        return
    rows = [[r.body, list(dataclasses.astuple(r.origin))] for r in result.resources]
    data = {"format": FORMAT, "path": result.path, "skipped": list(result.skipped),
            "resources": rows}
    try:
        text = orjson.dumps(data)
        with collector.paused():
            if orjson.loads(text)["resources"] != rows:  # e.g. .inf, which JSON writes as null
                return
        folder = directory()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile("wb", dir=folder, delete=False, suffix=".tmp") as out:
            try:
                out.write(text)
                out.close()
                os.replace(out.name, folder / f"{entry}.json")
            except OSError:
                Path(out.name).unlink(missing_ok=True)
                raise
        _trim(folder)
    except (OSError, TypeError):  # orjson.JSONEncodeError is a TypeError
        return


def _trim(folder: Path) -> None:
    entries = []
    for path in folder.glob("*.json"):
        try:
            entries.append((path.stat().st_mtime, path))
        except OSError:  # removed by another process meanwhile
            continue
    for _, old in sorted(entries)[:-MAX_ENTRIES]:
        old.unlink(missing_ok=True)


@functools.cache
def _code_digest() -> str:
    """This package's source, once per process: a changed renderer never reads an old entry."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for file in sorted(package.rglob("*.py")):
        digest.update(file.relative_to(package).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
