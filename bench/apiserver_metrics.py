"""What the API server itself counted: `apiserver_request_total` from its /metrics, so that
requests of every tool are counted the same way, whatever client made them."""

from __future__ import annotations

import re
import ssl
import urllib.request
from collections import Counter

from bench.ways import kubeconfig_credentials

MUTATING = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# Written by the control plane itself all the time (leader election, events), not by a tool.
BACKGROUND = frozenset({"leases", "events"})
_SAMPLE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Key = tuple[str, str, str, str]  # verb, dry_run, resource, subresource


def sample(kubeconfig: str) -> Counter[Key]:
    creds = kubeconfig_credentials(kubeconfig)
    context = ssl.create_default_context(cafile=creds["ca"])
    context.load_cert_chain(creds["cert"], creds["key"])
    with urllib.request.urlopen(creds["server"] + "/metrics", context=context,
                                timeout=30) as response:
        text = response.read().decode()
    counts: Counter[Key] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        key = (labels.get("verb", ""), labels.get("dry_run", ""), labels.get("resource", ""),
               labels.get("subresource", ""))
        counts[key] += int(float(match["value"]))
    return counts


def summary(before: Counter[Key], after: Counter[Key]) -> dict:
    """Requests between two samples: reads, dry-runs and writes (leases and events apart)."""
    delta = after - before
    out = {"reads": 0, "dry_runs": 0, "writes": 0, "background_writes": 0}
    for (verb, dry_run, resource, _), n in delta.items():
        if verb not in MUTATING:
            out["reads"] += n
        elif dry_run:
            out["dry_runs"] += n
        elif resource in BACKGROUND:
            out["background_writes"] += n
        else:
            out["writes"] += n
    out["written_resources"] = sorted({f"{r}/{s}".rstrip("/") for (v, d, r, s), n in delta.items()
                                       if n and v in MUTATING and not d and r not in BACKGROUND})
    return out
