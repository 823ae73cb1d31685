"""SOPS test fixtures made the way a team makes them: age keys, then the real `sops` CLI.

sops cannot make age keys; pyrage (the Rust `age` implementation's Python binding) makes real
X25519 identities, written in age-keygen's key file format.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pyrage import x25519

from sync_agent import sops


@dataclass(frozen=True)
class AgeKey:
    file: Path  # the key file, as age-keygen writes it
    recipient: str  # age1…


def age_key(directory: Path, name: str = "keys.txt") -> AgeKey:
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    file = directory / name
    file.write_text(f"# created: by the tests\n# public key: {recipient}\n{identity}\n")
    return AgeKey(file, recipient)


def encrypt(plain: str, recipient: str, work: Path, fmt: str = "yaml", *extra: str) -> str:
    """`plain` encrypted by `sops encrypt --age recipient` (`extra`: e.g. --encrypted-regex)."""
    source = work / f"plain.{ {'dotenv': 'env'}.get(fmt, fmt) }"
    source.write_text(plain)
    try:
        done = subprocess.run(
            [sops.program(), "encrypt", "--age", recipient, "--input-type", fmt,
             "--output-type", fmt, *extra, str(source)],
            capture_output=True, text=True, check=True, cwd=work,
            env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    finally:
        source.unlink()
    return done.stdout


def tamper(encrypted: str, old: str, new: str) -> str:
    assert old in encrypted, f"{old!r} not in the encrypted file"
    return encrypted.replace(old, new, 1)


def encrypt_binary(file: Path, recipient: str, work: Path) -> str:
    """A binary file as `sops encrypt` stores it (JSON with the ciphertext under `data`)."""
    done = subprocess.run(
        [sops.program(), "encrypt", "--age", recipient, "--input-type", "binary",
         "--output-type", "binary", str(file)],
        capture_output=True, text=True, check=True, cwd=work,
        env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    return done.stdout
