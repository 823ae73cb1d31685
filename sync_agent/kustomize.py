"""kustomize builds confined to the exported tree; called by `render` for kustomization dirs.

kustomize runs as Flux runs it, with `--load-restrictor LoadRestrictionsNone`, so an overlay may
read patches and files from sibling directories of the repository. Flux then confines it to the
source root with a filesystem that refuses every path resolving outside it. We confine it the
same way in two layers, before kustomize starts:

1. The tree is ours: `source.export_tree` writes it from Git objects and drops every symbolic
   link that resolves outside it (absolute ones are never written), and `render` refuses any
   left that escape (a tree it did not export). So no path inside the tree leads out.
2. What is left is a path spelled out in a file kustomize reads. `check` reads every
   kustomization file the build reaches (following resources, bases and components into nested
   directories) and every generator or transformer configuration they name, and refuses any
   string in them that resolves outside the tree, both as written (kustomize joins paths
   lexically: `a/link/..` is `a`) and with symlinks resolved (the kernel: `link/..` is the link
   target's parent), whatever the spelling: absolute, `..`, `key=path`, in any field (generator
   `files`/`envs`/`env`, patches, components, configurations, crds, openapi, replacements,
   helmCharts) — the check does not depend on knowing the field.

Remote references (`https://…`, `github.com/org/repo//dir?ref=…`, `git@…`, `ssh://…`) would be
fetched by kustomize with the operator's git setup; they are refused unless
`RenderOptions.allow_remote_bases`, and then the fetched content is trusted as the operator
chose. kustomize gets the environment of `child_process`, never our credentials.

Why not a confined kustomize binary (Flux's secure filesystem compiled in)? It would be one
more program built from Go modules and shipped in the agent's image; the two layers above give
the same guarantee for every path kustomize can be told to read, with the programs we ship.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sync_agent import child_process, paths, source
from sync_agent.errors import RenderError
from sync_agent.render_options import RenderOptions
from sync_agent.yaml_loader import YAMLLimitError, YAMLSyntaxError, load_documents

_RAISE_SIZE = "--max-file-size (spec.maxFileSize in a Sync) if it is meant to be this large"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
TIMEOUT = 300  # seconds; remote bases, when allowed, are fetched by kustomize itself

# Fields whose entries are directories or files kustomize loads: a missing one may be fetched.
_LOADED_LISTS = ("resources", "bases", "components", "generators", "transformers", "validators",
                 "patchesStrategicMerge", "configurations", "crds")
# Of those, the ones whose entries may be kustomization directories of their own.
_NESTED_LISTS = ("resources", "bases", "components", "generators", "transformers", "validators")
# Of those, the ones whose files (or inline strings) are generator or transformer
# configurations, which name files of their own.
_PLUGIN_LISTS = ("generators", "transformers", "validators")
# Items (mappings) with a file to load: field -> keys in each item.
_LOADED_ITEM_KEYS = {"patches": ("path",), "patchesJson6902": ("path",),
                     "replacements": ("path",), "configMapGenerator": ("files", "envs", "env"),
                     "secretGenerator": ("files", "envs", "env"),
                     "helmCharts": ("valuesFile", "additionalValuesFiles")}

# What kustomize fetches instead of reading a local path: a URL with a scheme (https, ssh, git,
# file), scp-like `git@host:org/repo`, a `repo//dir` or `?ref=` spelling, a forge's host.
_REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://|^[\w.-]+@[\w.-]+:|[^:/]//|\?(ref|version)="
                     r"|^(github|gitlab|bitbucket)\.(com|org)/", re.IGNORECASE)


def kustomization_in(directory: Path) -> str:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return name
    return ""


def build(root: Path, directory: str, kustomization: str, options: RenderOptions,
          pass_fds: Sequence[int] = ()) -> str | RenderError:
    """kustomize's output for `directory` (relative to `root`), or the reason it failed.
    `pass_fds`: in-memory files the kustomization reads as /dev/fd/N (`sops_kustomize`)."""
    command = [paths.kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", "."]
    with child_process.empty_home() as home:
        env = child_process.environment(home, operator_git=options.allow_remote_bases)
        try:
            done = child_process.run(command, cwd=root / directory, env=env, timeout=TIMEOUT,
                                     max_stdout=options.max_file_bytes, pass_fds=pass_fds)
        except FileNotFoundError:
            return RenderError([f"{kustomization}: kubectl is needed to build it and was not "
                                "found"])
        except subprocess.TimeoutExpired:
            return RenderError([f"{kustomization}: kubectl kustomize did not finish in "
                                f"{TIMEOUT}s"])
    if done.truncated:
        return RenderError([f"{kustomization}: kustomize's output is larger than "
                            f"{options.max_file_bytes:,} bytes; nothing was read. Raise "
                            f"{_RAISE_SIZE}"])
    if done.returncode != 0:
        stderr = done.stderr.strip() or f"exit status {done.returncode}"
        return RenderError([f"{kustomization}: kubectl kustomize failed: {stderr}"])
    return done.stdout


def check(root: Path, directories: list[str], options: RenderOptions,
          left_out: Mapping[str, str] | None = None) -> list[str]:
    """Problems that forbid building the kustomization `directories`: references leaving the
    tree (also through a link `export_tree` left out), remote references (unless allowed),
    kustomization files too large or aliased."""
    checker = _Checker(root.resolve(), options, left_out or {})
    for directory in directories:
        checker.visit(checker.root / directory)
    return sorted(set(checker.problems))


class _Checker:
    def __init__(self, root: Path, options: RenderOptions, left_out: Mapping[str, str]):
        self.root = root
        self.options = options
        self.left_out = left_out
        self.problems: list[str] = []
        self._seen: set[Path] = set()

    def visit(self, directory: Path) -> None:
        """Check the kustomization file in `directory` and everything it reaches."""
        real = Path(os.path.realpath(directory))
        if real in self._seen or not real.is_dir():
            return
        self._seen.add(real)
        name = kustomization_in(directory)
        if not name:
            return  # a directory of plain resources: kustomize reads only the files named
        file = directory / name
        data = self._load(file)
        if not isinstance(data, dict):
            return  # empty, or not a mapping: kustomize says so in its own words
        shown = self._shown(file)
        self._escapes(shown, directory, data)
        for field, value in _loaded_entries(data):
            self._loaded(shown, directory, field, value)

    def _loaded(self, shown: str, directory: Path, field: str, value: str) -> None:
        if "\n" in value:  # an inline configuration or patch
            if field in _PLUGIN_LISTS:
                self._plugin_config(shown, directory, value, shown)
            return
        if any(_REMOTE.search(spelling) for spelling in _spellings(value)):
            if not self.options.allow_remote_bases:
                self.problems.append(
                    f"{shown}: {field} entry '{source.redact(value)}' is remote; kustomize "
                    "would fetch it with your own git credentials, so it is refused. Copy it "
                    "into the repository, or pass --allow-remote-bases (in a Sync: "
                    "spec.allowRemoteBases: true) if you trust it")
            return
        target = directory / value
        if field in _NESTED_LISTS and target.is_dir():
            self.visit(target)
        elif field in _PLUGIN_LISTS and target.is_file() and self._inside(target):
            self._plugin_config(shown, directory, self._read(target) or "", self._shown(target))

    def _plugin_config(self, shown: str, directory: Path, text: str, where: str) -> None:
        """A generator/transformer configuration names files relative to the kustomization."""
        try:
            docs = load_documents(text, self.options.max_yaml_nodes)
        except YAMLLimitError as e:
            self.problems.append(f"{where}, document {e.document}: {e.problem}")
            return
        except YAMLSyntaxError:
            return
        for doc in docs:
            self._escapes(shown, directory, doc.data)

    def _escapes(self, shown: str, directory: Path, data: Any) -> None:
        for value in _strings(data):
            for path in _spellings(value):
                if link := self._through_left_out(directory, path):
                    self.problems.append(
                        f"{shown}: refers to '{value}', through "
                        f"{link_left_out(link, self.left_out[link])}")
                    break
                if not self._path_inside(directory, path):
                    self.problems.append(
                        f"{shown}: refers to '{value}', outside the repository; kustomize may "
                        "only read files inside it. Copy the file into the repository and "
                        "name it by a path relative to the kustomization")
                    break

    def _through_left_out(self, directory: Path, value: str) -> str:
        """The left-out link `value` names or goes through, if any."""
        if value.startswith("/") or not self.left_out:
            return ""
        lexical = Path(os.path.normpath(directory / value))
        if not lexical.is_relative_to(self.root):
            return ""
        rel = lexical.relative_to(self.root).as_posix()
        for link in self.left_out:
            if rel == link or rel.startswith(link + "/"):
                return link
        return ""

    def _path_inside(self, directory: Path, value: str) -> bool:
        if value.startswith("/"):
            # Absolute: a file or directory on this machine (JSON pointers like /spec/x are not).
            return not os.path.lexists(value) or self._inside(Path(value))
        lexical = Path(os.path.normpath(directory / value))
        return lexical.is_relative_to(self.root) and self._inside(directory / value)

    def _inside(self, path: Path) -> bool:
        return Path(os.path.realpath(path)).is_relative_to(self.root)

    def _load(self, file: Path) -> Any:
        text = self._read(file)
        if text is None:
            return None
        try:
            docs = load_documents(text, self.options.max_yaml_nodes)
        except YAMLLimitError as e:
            self.problems.append(f"{self._shown(file)}, document {e.document}: {e.problem}")
            return None
        except YAMLSyntaxError:
            return None  # kustomize reports it, in its own words
        return docs[0].data if docs else None

    def _read(self, file: Path) -> str | None:
        shown = self._shown(file)
        if not self._inside(file):
            self.problems.append(f"{shown}: a symbolic link to outside the repository; "
                                 "kustomize may only read files inside it")
            return None
        try:
            with file.open("rb") as f:
                data = f.read(self.options.max_file_bytes + 1)
        except OSError:
            return None  # kustomize reports it
        if len(data) > self.options.max_file_bytes:
            self.problems.append(too_large(shown, self.options.max_file_bytes))
            return None
        return data.decode("utf-8", "replace")

    def _shown(self, file: Path) -> str:
        lexical = Path(os.path.normpath(file))
        if lexical.is_relative_to(self.root):
            return lexical.relative_to(self.root).as_posix()
        return str(file)


def link_left_out(link: str, target: str) -> str:
    return (f"{link}: a symbolic link to '{target}', outside the repository; it is not read. "
            "Replace the link with the file it points to")


def too_large(shown: str, limit: int) -> str:
    return (f"{shown}: larger than {limit:,} bytes, the most a manifest may be; nothing was "
            f"read. Raise {_RAISE_SIZE}")


def _loaded_entries(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, entry) for every file or directory the kustomization `data` tells kustomize to
    load."""
    for field in _LOADED_LISTS:
        for entry in _as_list(data.get(field)):
            if isinstance(entry, str):
                yield field, entry
            elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
                yield field, entry["path"]  # patchesStrategicMerge may use {path: …}
    for field, keys in _LOADED_ITEM_KEYS.items():
        for item in _as_list(data.get(field)):
            if not isinstance(item, dict):
                continue
            for key in keys:
                for entry in _as_list(item.get(key)):
                    if isinstance(entry, str):
                        yield f"{field} {key}", entry
    openapi = data.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        yield "openapi path", openapi["path"]


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


# Fields that hold values, never paths: left out of the generic check, so that `literals:
# [LOG_DIR=/var/log]` or a label value `/tmp` is not taken for a file on this machine.
_VALUE_FIELDS = frozenset((
    "literals", "commonLabels", "commonAnnotations", "labels", "annotations", "images",
    "namePrefix", "nameSuffix", "namespace", "replicas", "target", "metadata", "options",
))


def _strings(data: Any) -> Iterator[str]:
    """Every one-line string in `data` that may name a path (keys, values, list items)."""
    if isinstance(data, str):
        if "\n" not in data and "://" not in data:
            yield data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(key)
            if key not in _VALUE_FIELDS:
                yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)


def _spellings(value: str) -> list[str]:
    """The paths a string may name: itself, and for `key=path` (generator files) the path."""
    found = [value]
    if "=" in value:
        found.append(value.split("=", 1)[1])
    return [v for v in found if v]
