"""SOPS-encrypted files in kustomize builds, decrypted without plaintext touching disk.

Called by `render` before it runs kustomize builds, for the two ways such files enter a build.

Resources (`resources: [secret.enc.yaml]`, the common Flux layout): kustomize copies the
encrypted values through untouched, but its transformers (namespace, labels, prefixes) change
the object, so sops' MAC no longer matches what comes out. So each encrypted resource file is
decrypted as it is in the tree (MAC verified), which pairs every `ENC[…]` string with its
plain value (`Inputs.values`); after the build, `render` puts the plain values in place of those
strings and drops the `sops` metadata (`plain_object`).

Generators: kustomize reads a generator's `envs` and
`files` from files; Flux decrypts them in its working copy, so the plaintext sits on disk during
the build. We never write plaintext: each encrypted entry is decrypted (by `sops`) into an
anonymous in-memory file (memfd_create(2), gone when closed), the kustomization in our exported
temporary tree is rewritten to read `/dev/fd/N` instead, and kustomize inherits descriptor N.
A `files` entry is rewritten `key=/dev/fd/N`, keeping the key kustomize would have used.

The plaintext format follows Flux: an `envs` file is dotenv; a `files` entry is YAML, JSON or
dotenv by its extension, any other file was encrypted by sops as binary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from sync_agent import kustomize, sops
from sync_agent.errors import RenderError
from sync_agent.render_options import RenderOptions
from sync_agent.yaml_loader import YAMLSyntaxError, load_documents

_NESTED = ("resources", "bases", "components")  # entries that may be kustomization directories
_BY_SUFFIX = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".env": "dotenv"}


@dataclass
class Inputs:
    """The in-memory files of one render; kustomize gets `fds`. Close when the builds are done."""

    fds: list[int] = field(default_factory=list)
    # The kustomize units (directories relative to the root) whose builds read decrypted files.
    directories: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    # `ENC[…]` string of an encrypted resource file -> its plain value (any YAML type).
    values: dict[str, Any] = field(default_factory=dict, repr=False)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


def prepare(root: Path, directories: list[str], options: RenderOptions) -> Inputs:
    """Decrypt every encrypted secretGenerator input the builds of `directories` reach."""
    inputs = Inputs()
    rewritten: dict[Path, bool] = {}  # kustomization directory -> reads a decrypted file
    try:
        for directory in directories:
            reads = list(_rewrite(root, root / directory, options, inputs, rewritten, set()))
            if any(reads):
                inputs.directories.add(directory)
    except BaseException:
        inputs.close()
        raise
    return inputs


def _rewrite(root: Path, directory: Path, options: RenderOptions, inputs: Inputs,
             rewritten: dict[Path, bool], seen: set[Path]) -> Iterator[bool]:
    """For `directory` and each kustomization it reaches: whether it now reads decrypted
    files."""
    real = Path(os.path.realpath(directory))
    if real in seen or not real.is_relative_to(root.resolve()) or not real.is_dir():
        return
    seen.add(real)
    name = kustomize.kustomization_in(real)
    if not name:
        return
    if real not in rewritten:
        rewritten[real] = _rewrite_one(root, real / name, options, inputs)
    yield rewritten[real]
    data = _load(real / name, options)
    for entry in _strings(data, _NESTED):
        yield from _rewrite(root, real / entry, options, inputs, rewritten, seen)


def _rewrite_one(root: Path, file: Path, options: RenderOptions, inputs: Inputs) -> bool:
    data = _load(file, options)
    generators = data.get("secretGenerator") if isinstance(data, dict) else None
    changed = False
    for generator in generators if isinstance(generators, list) else []:
        if not isinstance(generator, dict):
            continue
        for key in ("envs", "env", "files"):
            value = generator.get(key)
            entries = value if isinstance(value, list) else [value]
            new = [_entry(root, file.parent, key, e, options, inputs) if isinstance(e, str)
                   else e for e in entries]
            if new != entries:
                generator[key] = new if isinstance(value, list) else new[0]
                changed = True
    if changed:
        file.write_text(yaml.safe_dump(data, sort_keys=False))
    _refuse_encrypted_config_maps(root, file.parent, data, options, inputs)
    resources = [_resource(root, file.parent / e, options, inputs)
                 for e in _strings(data, ("resources",))]
    return changed or any(resources)


def _refuse_encrypted_config_maps(root: Path, directory: Path, data: Any,
                                  options: RenderOptions, inputs: Inputs) -> None:
    """Flux decrypts only secretGenerator inputs; an encrypted file in a configMapGenerator
    would put ciphertext into a ConfigMap, or, decrypted, a secret in the clear."""
    generators = data.get("configMapGenerator") if isinstance(data, dict) else None
    for generator in generators if isinstance(generators, list) else []:
        for key in ("envs", "env", "files") if isinstance(generator, dict) else ():
            value = generator.get(key)
            for entry in value if isinstance(value, list) else [value]:
                shown = _encrypted(root, directory, key, entry, options) \
                    if isinstance(entry, str) else None
                if shown:
                    inputs.problems.append(
                        f"{shown}: SOPS-encrypted, but read by configMapGenerator {key} of "
                        f"{directory.relative_to(root.resolve()).as_posix() or '.'}: a "
                        "ConfigMap would hold its ciphertext; list it under secretGenerator "
                        "instead")


def _encrypted(root: Path, directory: Path, field_name: str, entry: str,
               options: RenderOptions) -> str | None:
    """The file a generator entry reads, as shown in errors, if sops encrypted it."""
    key, named, path = entry.partition("=")
    if field_name != "files" or not named:
        path = entry
    real = Path(os.path.realpath(directory / path))
    if not real.is_relative_to(root.resolve()) or not real.is_file():
        return None
    with real.open("rb") as f:
        text = f.read(options.max_file_bytes + 1).decode("utf-8", "replace")
    shown = real.relative_to(root.resolve()).as_posix()
    return shown if sops.file_format(shown, text) else None


def _resource(root: Path, file: Path, options: RenderOptions, inputs: Inputs) -> bool:
    """Decrypt `file` if it is an encrypted resource file; whether it was."""
    real = Path(os.path.realpath(file))
    if not real.is_relative_to(root.resolve()) or not real.is_file():
        return False
    with real.open("rb") as f:
        text = f.read(options.max_file_bytes + 1).decode("utf-8", "replace")
    shown = real.relative_to(root.resolve()).as_posix()
    fmt = sops.file_format(shown, text)
    if not fmt:
        return False
    plain = sops.decrypt(root.resolve(), shown, fmt, options.sops_keys, options.max_file_bytes)
    if isinstance(plain, RenderError):
        inputs.problems.extend(plain.problems)
        return True
    try:
        if fmt == "json":
            pairs = zip([json.loads(text)], [json.loads(plain)], strict=True)
        else:
            pairs = zip([d.data for d in load_documents(text, options.max_yaml_nodes)],
                        [d.data for d in load_documents(plain, options.max_yaml_nodes)],
                        strict=False)
    except (ValueError, YAMLSyntaxError):
        return True  # kustomize and the collector report a file that does not parse
    for encrypted, decrypted in pairs:
        if _identity_encrypted(encrypted):
            inputs.problems.append(
                f"{shown}: its kind, apiVersion or name is encrypted, so kustomize cannot "
                "build it; encrypt only the values (sops --encrypted-regex "
                "'^(data|stringData)$'), as Flux requires for files kustomize reads")
            return True
        _pair(encrypted, decrypted, inputs.values)
    return True


def _identity_encrypted(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    fields = (document.get("kind"), document.get("apiVersion"), metadata.get("name"))
    return any(isinstance(v, str) and v.startswith("ENC[") for v in fields)


def _pair(encrypted: Any, plain: Any, values: dict[str, Any]) -> None:
    """Record each `ENC[…]` string of `encrypted` with the value at the same place in
    `plain` (sops keeps the structure and the keys)."""
    if isinstance(encrypted, str) and encrypted.startswith("ENC["):
        values[encrypted] = plain
    elif isinstance(encrypted, dict) and isinstance(plain, dict):
        for key, value in encrypted.items():
            if key != "sops" and key in plain:
                _pair(value, plain[key], values)
    elif isinstance(encrypted, list) and isinstance(plain, list):
        for value, plain_value in zip(encrypted, plain, strict=False):
            _pair(value, plain_value, values)


def plain_object(body: dict[str, Any], values: dict[str, Any]) -> dict[str, Any] | None:
    """A built object from an encrypted resource file, with its plain values and without the
    `sops` metadata; None if it holds an `ENC[…]` string of no file we decrypted."""
    missing: list[str] = []

    def walk(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("ENC["):
            if value not in values:
                missing.append(value)
            return values.get(value, value)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    plain = walk({k: v for k, v in body.items() if k != "sops"})
    return None if missing else plain


def _entry(root: Path, directory: Path, field_name: str, entry: str, options: RenderOptions,
           inputs: Inputs) -> str:
    """The entry as kustomize should now read it: `/dev/fd/N` if it was encrypted."""
    key, named, path = entry.partition("=")
    if field_name != "files" or not named:
        key, path = "", entry
    shown = _encrypted(root, directory, field_name, entry, options)
    if not shown:
        return entry  # plain, or missing: kustomize.check or kustomize itself reports that
    fmt = "dotenv" if field_name != "files" else _BY_SUFFIX.get(PurePosixPath(path).suffix,
                                                                 "binary")
    plain = sops.decrypt_bytes(root.resolve(), shown, fmt, options.sops_keys,
                               options.max_file_bytes)
    if isinstance(plain, RenderError):
        inputs.problems.extend(f"{p} (secretGenerator {field_name} of "
                               f"{directory.relative_to(root.resolve()).as_posix() or '.'})"
                               for p in plain.problems)
        return entry
    fd = os.memfd_create(f"sops:{PurePosixPath(path).name}", os.MFD_CLOEXEC)
    inputs.fds.append(fd)
    with os.fdopen(os.dup(fd), "wb") as memory:
        memory.write(plain)
    if field_name != "files":
        return f"/dev/fd/{fd}"
    return f"{key or PurePosixPath(path).name}=/dev/fd/{fd}"


def _load(file: Path, options: RenderOptions) -> Any:
    try:
        docs = load_documents(file.read_text(encoding="utf-8", errors="replace"),
                              options.max_yaml_nodes)
    except (OSError, YAMLSyntaxError):
        return None  # kustomize reports it in its own words
    return docs[0].data if docs else None


def _strings(data: Any, fields: tuple[str, ...]) -> Iterator[str]:
    if not isinstance(data, dict):
        return
    for name in fields:
        value = data.get(name)
        for entry in value if isinstance(value, list) else []:
            if isinstance(entry, str):
                yield entry
