"""Structured log lines: `time=… level=… logger=… msg="…" key=value …` (logfmt), one per line.

Fields come from `logging`'s `extra=`; values are quoted when they hold spaces, quotes or `=`.
Only messages the agent composes are logged: never Secret data, never the deploy key; URLs
pass through `source.redact` before they get here.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        parts = [f"time={stamp[:-3]}Z", f"level={record.levelname.lower()}",
                 f"logger={record.name.removeprefix('sync_agent.')}",
                 f"msg={_value(record.getMessage())}"]
        parts += [f"{k}={_value(v)}" for k, v in vars(record).items() if k not in _STANDARD]
        if record.exc_info and record.exc_info[0] is not None:
            parts.append(f"exception={_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "git", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
