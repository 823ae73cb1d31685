"""scripts/prereqs, which `make test` and `make demo` run first: what the machine needs is
installed (Debian packages, as root) or named in one line, before anything else runs.

A machine without a package is made for real in a private mount namespace, where a
non-executable file is mounted over the program (sshd, apt-get); the host stays untouched.
"""

from __future__ import annotations

import ensurepip
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREREQS = ROOT / "scripts" / "prereqs"


def prereqs_without(programs: list[str], purpose: str, tmp_path: Path, directory: str = ""):
    """Run `scripts/prereqs PURPOSE` where each of `programs` (absolute paths) is missing, and
    `directory` (if given) is empty."""
    blank, empty = tmp_path / "not-a-program", tmp_path / "empty"
    blank.write_text("")
    blank.chmod(0o644)
    empty.mkdir()
    mounts = [f"mount --bind {blank} {program}" for program in programs]
    mounts += [f"mount --bind {empty} {directory}"] if directory else []
    script = " && ".join([*mounts, f"exec {PREREQS} {purpose}"])
    return subprocess.run(["unshare", "--mount", "--", "bash", "-c", script],
                          env={**os.environ, "PYTHON": sys.executable},
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_prereqs_change_nothing_and_say_nothing_when_everything_is_present():
    for purpose in ("demo", "test"):
        done = subprocess.run([str(PREREQS), purpose], capture_output=True, text=True, cwd=ROOT,
                              timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_sshd_and_no_way_to_install_it_make_test_stops_naming_the_package(tmp_path):
    done = prereqs_without(["/usr/sbin/sshd", "/usr/bin/apt-get"], "test", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "prereqs: missing packages: openssh-server "
        "(on Debian/Ubuntu, as root: apt-get install openssh-server)"]


def test_the_demo_does_not_need_an_ssh_server(tmp_path):
    done = prereqs_without(["/usr/sbin/sshd", "/usr/bin/apt-get"], "demo", tmp_path)
    assert (done.returncode, done.stderr) == (0, "")


def test_without_venvs_pip_bootstrap_the_demo_stops_naming_python3_venv(tmp_path):
    # Debian ships ensurepip (what `python3 -m venv` needs for pip) in python3.X-venv.
    done = prereqs_without(["/usr/bin/apt-get"], "demo", tmp_path,
                           directory=ensurepip.__path__[0])
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "prereqs: missing packages: python3-venv "
        "(on Debian/Ubuntu, as root: apt-get install python3-venv)"]
