"""A drill's result as files for CI: JSON (schemas/drill-report.schema.json), JUnit XML and a
Markdown summary for a job page. Pure functions of `drill.DrillResult`; `write` puts a text in
place atomically (a CI step never reads half a report)."""

from __future__ import annotations

import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bootstrap.drill import DrillResult, PhaseResult
from bootstrap.resources import resource
from sync_agent.rollback_target import Target
from sync_agent.signatures import Signed

SCHEMA = resource("schemas") / "drill-report.schema.json"
SCHEMA_ID = "https://gitops-restore.io/schemas/drill-report/v1"
_FAILURE_KINDS = ("missing", "drifted", "extra", "unhealthy", "error")
_MARK = {"passed": "✅ passed", "failed": "❌ failed", "skipped": "⏭️ skipped"}


def to_json(result: DrillResult) -> dict[str, Any]:
    plan, spec = result.plan, result.plan.spec
    statuses = [p.status for p in result.phases]
    failures = [f for _, f in result.failures]
    return {
        "$schema": SCHEMA_ID,
        "result": "passed" if result.passed else "failed",
        "started_at": result.started_at,
        "repo": plan.from_target.revision.repo,
        "sync": spec.sync.sync_name,
        "from": _target(plan.from_target, plan.signed.get("from", ())),
        "to": _target(plan.to_target, plan.signed.get("to", ())),
        "cluster": {"name": result.cluster.name, "provider": result.cluster.provider,
                    "kubeconfig": result.cluster.kubeconfig, "context": result.cluster.context,
                    "kept": result.cluster.kept},
        "flags": {"given": list(spec.flags), "needed": list(result.needed)},
        "phases": [_phase(p) for p in result.phases],
        "seconds": {"prepare": _round(plan.prepare_seconds),
                    "recovery": _round(result.recovery_seconds),
                    "overhead": _round(result.overhead_seconds),
                    "total": _round(result.total_seconds)},
        "counts": {
            "phases_passed": statuses.count("passed"),
            "phases_failed": statuses.count("failed"),
            "phases_skipped": statuses.count("skipped"),
            "failures": len(failures),
            **{kind: sum(f.kind == kind for f in failures) for kind in _FAILURE_KINDS},
        },
    }


def json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def _target(target: Target, signed: tuple[Signed, ...]) -> dict[str, Any]:
    rev = target.revision
    return {"ref": rev.ref, "sha": rev.sha, "path": target.path, "committed_at":
            rev.committed_at, "author": rev.author, "message": rev.message,
            "objects": target.objects, "signatures": [s.to_json() for s in signed]}


def _phase(phase: PhaseResult) -> dict[str, Any]:
    return {
        "name": phase.name,
        "kind": "recovery" if phase.recovery else "overhead",
        "result": phase.status,
        "seconds": _round(phase.seconds),
        "revision": phase.revision or None,
        "steps": [{"phase": name, "seconds": _round(s)} for name, s in phase.steps],
        "counts": dict(phase.counts),
        "changes": [{"object": obj, "result": outcome} for obj, outcome in phase.changes],
        "failures": [{"object": f.object, "kind": f.kind, "reason": f.reason}
                     for f in phase.failures],
        "needs": [{"flag": n.flag, "given": n.given, "reason": n.reason} for n in phase.needs],
        "note": phase.note,
    }


def _round(seconds: float) -> float:
    return round(seconds, 3)


def junit_xml(result: DrillResult) -> str:
    """One testsuite, one testcase per phase, one <failure> per object that failed it."""
    plan = result.plan
    name = f"gitops-restore drill {plan.spec.sync.sync_name}"
    failed = sum(p.status == "failed" for p in result.phases)
    skipped = sum(p.status == "skipped" for p in result.phases)
    counts = {"tests": str(len(result.phases)), "failures": str(failed), "errors": "0",
              "skipped": str(skipped), "time": f"{result.total_seconds:.3f}"}
    suites = ET.Element("testsuites", {"name": name, **counts})
    suite = ET.SubElement(suites, "testsuite", {"name": name, **counts,
                                                "timestamp": result.started_at})
    props = ET.SubElement(suite, "properties")
    for key, value in (("repo", plan.from_target.revision.repo),
                       ("from.ref", plan.from_target.revision.ref),
                       ("from.sha", plan.from_target.revision.sha),
                       ("from.path", plan.from_target.path),
                       ("to.ref", plan.to_target.revision.ref),
                       ("to.sha", plan.to_target.revision.sha),
                       ("to.path", plan.to_target.path),
                       ("cluster", f"{result.cluster.name} ({result.cluster.provider})"),
                       ("flags.given", " ".join(plan.spec.flags)),
                       ("flags.needed", " ".join(result.needed)),
                       ("recovery_seconds", f"{result.recovery_seconds:.3f}")):
        ET.SubElement(props, "property", {"name": key, "value": value})
    classname = f"gitops-restore.drill.{plan.spec.sync.sync_name}"
    targets = {"from": plan.from_target, "to": plan.to_target}
    for phase in result.phases:
        case = ET.SubElement(suite, "testcase", {"name": phase.name, "classname": classname,
                                                 "time": f"{phase.seconds:.3f}"})
        if phase.status == "skipped":
            ET.SubElement(case, "skipped", {"message": phase.note or "skipped"})
        for failure in phase.failures:
            element = ET.SubElement(case, "failure", {"message": str(failure),
                                                      "type": failure.kind})
            target = targets.get(phase.revision)
            where = f" ({target.revision.sha[:12]} {target.path or '.'})" if target else ""
            element.text = f"{phase.name}{where}: {failure}"
        lines = [f"{name}: {seconds:.3f}s" for name, seconds in phase.steps]
        lines[:0] = [f"needed {need}" for need in phase.needs]
        if phase.note:
            lines.insert(0, phase.note)
        if lines:
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def markdown(result: DrillResult) -> str:
    """A summary for a CI job page (GitHub's $GITHUB_STEP_SUMMARY, a GitLab MR note)."""
    plan, cluster = result.plan, result.cluster
    verdict = "✅ passed" if result.passed else "❌ failed"
    fate = "kept" if cluster.kept else "destroyed"
    lines = [f"## gitops-restore drill: {verdict}", "",
             f"Repository `{_cell(plan.from_target.revision.repo)}`, sync "
             f"`{plan.spec.sync.sync_name}`, cluster `{cluster.name}` ({cluster.provider}, "
             f"{fate}).", "",
             "| revision | ref | commit | path | objects | committed | message |",
             "|---|---|---|---|---:|---|---|"]
    for label, target in (("from", plan.from_target), ("to", plan.to_target)):
        rev = target.revision
        lines.append(f"| {label} | {_cell(rev.ref)} | `{rev.sha}` | `{target.path or '.'}` | "
                     f"{target.objects} | {rev.committed_at} | {_cell(rev.message)} |")
    signers = [f"- {label}: {_cell(str(s))}" for label in ("from", "to")
               for s in plan.signed.get(label, ())]
    if signers:
        lines += ["", "Signatures verified:", "", *signers]
    lines += ["", "| phase | kind | result | time | detail |", "|---|---|---|---:|---|"]
    for phase in result.phases:
        kind = "recovery" if phase.recovery else "overhead"
        lines.append(f"| {phase.name} | {kind} | {_MARK[phase.status]} | "
                     f"{phase.seconds:.2f} s | {_cell(phase_detail(phase))} |")
    lines += ["", f"**Recovery time {result.recovery_seconds:.2f} s** (restore, rollback and "
              f"roll-forward, each until healthy); drill overhead "
              f"{result.overhead_seconds:.2f} s (provision, verification, teardown); total "
              f"{result.total_seconds:.2f} s."]
    if result.needed or plan.spec.flags:
        lines += ["", f"Safety flags given: {_flags(plan.spec.flags)}; needed: "
                  f"{_flags(result.needed)}."]
        lines += [f"- **{phase.name}** needed {_cell(str(need))}"
                  for phase in result.phases for need in phase.needs]
    if result.failures:
        lines += ["", "### Failures", ""]
        lines += [f"- **{phase}** {'`' + f.object + '` ' if f.object else ''}{f.kind}: "
                  f"{_cell(f.reason)}" for phase, f in result.failures]
    return "\n".join(lines) + "\n"


def phase_detail(phase: PhaseResult) -> str:
    """The counts of a phase, or its note: `2 deleted, 2 configured, 5 unchanged`."""
    counts = ", ".join(f"{n} {word}" for word, n in phase.counts)
    return "; ".join(part for part in (counts, phase.note) if part)


def _flags(flags: tuple[str, ...]) -> str:
    return " ".join(f"`{flag}`" for flag in flags) or "none"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, making its directory if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for the CI job to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
