"""Real Git repositories for tests: clones of the fixture bundles in tests/fixtures, and small
ones built commit by commit with the git command (dates set through GIT_COMMITTER_DATE)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # tests/fixtures, see its README


def git(repo: Path, *args: str, date: str | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Dana Ops",
        "GIT_AUTHOR_EMAIL": "dana@example.com",
        "GIT_COMMITTER_NAME": "Dana Ops",
        "GIT_COMMITTER_EMAIL": "dana@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if date:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = date
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    return path


def commit(
    repo: Path,
    files: dict[str, str | None],
    message: str,
    date: str | None = None,
) -> str:
    """Write (or, for None, delete) files, commit everything, return the new SHA."""
    for name, text in files.items():
        target = repo / name
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD")


def push_everything(from_repo: Path, bare: Path) -> None:
    """Force-push every branch and tag of `from_repo` into the bare repository `bare` (straight
    to the disk) and point its HEAD at `from_repo`'s current branch."""
    subprocess.run(["git", "-C", str(from_repo), "push", "-q", "--force", str(bare),
                    "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"],
                   check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(from_repo), "symbolic-ref", "-q", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    if head:
        subprocess.run(["git", "--git-dir", str(bare), "symbolic-ref", "HEAD", head],
                       check=True, capture_output=True)


def clone_bundle(name: str, dest: Path) -> Path:
    """A normal clone of a fixture bundle (the bundle itself is never changed)."""
    subprocess.run(["git", "clone", "-q", str(FIXTURES / f"{name}.bundle"), str(dest)], check=True)
    return dest
