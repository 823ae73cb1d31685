"""Run the installed `gitops-restore` command as a user would, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

COMMAND = str(Path(sys.executable).parent / "gitops-restore")


def run(*args: str, env: dict | None = None, timeout: float = 600, check_code: int | None = None
        ) -> subprocess.CompletedProcess:
    result = subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    if check_code is not None:
        assert result.returncode == check_code, (
            f"exit {result.returncode}, wanted {check_code}\nstdout:\n{result.stdout}\n"
            f"stderr:\n{result.stderr}")
    return result


def run_json(*args: str, **kwargs) -> dict:
    result = run(*args, "--output", "json", **kwargs)
    return json.loads(result.stdout)
