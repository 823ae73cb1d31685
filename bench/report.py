"""Ratios and the Markdown table of a throughput run (the README's Performance section)."""

from __future__ import annotations

import os
import platform

WAYS = ("gitops_restore", "flux_ssa", "flux_controllers", "kubectl", "client_go_create",
        "raw_probe", "raw_probe_apply", "raw_probe_dry_run")
LABELS = {
    "gitops_restore": "gitops-restore restore",
    "flux_ssa": "Flux's engine (ssa ApplyAllStaged, concurrency 4)",
    "flux_controllers": "Flux's source- + kustomize-controller (Kustomization created → Ready)",
    "kubectl": "kubectl apply --server-side -R",
    "client_go_create": "client-go creates, 32 at a time",
    "raw_probe": "raw creates (bench/rawprobe, 32 at a time): the baseline",
    "raw_probe_apply": "raw server-side applies",
    "raw_probe_dry_run": "raw dry-run creates",
}


def add_ratios(result: dict) -> dict:
    """Each way's rate over the raw create rate, and ours over each peer's."""
    raw = result.get("raw_probe", {}).get("objects_per_second")
    ours = result.get("gitops_restore", {}).get("objects_per_second")
    for way in WAYS:
        if way in result and raw:
            result[way]["vs_raw"] = round(result[way]["objects_per_second"] / raw, 3)
        if way in result and ours and way != "gitops_restore":
            result[way]["ours_vs_it"] = round(ours / result[way]["objects_per_second"], 2)
    if "raw_probe" in result and "raw_probe_dry_run" in result and ours:
        # What validate-first cannot go below: every object dry-run, then every one created.
        floor = result["raw_probe"]["seconds"] + result["raw_probe_dry_run"]["seconds"]
        result["validate_first_floor_seconds"] = round(floor, 2)
        result["ours_vs_floor"] = round(floor / result["gitops_restore"]["seconds"], 3)
    return result


def machine() -> dict:
    return {"cpus": os.cpu_count(), "system": platform.platform(),
            "python": platform.python_version()}


def markdown(results: list[dict]) -> str:
    sizes = [r["objects"] for r in results]
    lines = ["| way | " + " | ".join(f"N = {n:,}: s (obj/s, × raw)" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for way in WAYS:
        if not any(way in r for r in results):
            continue
        cells = []
        for r in results:
            m = r.get(way)
            ratio = f"{m['vs_raw']:.2f}×" if m and "vs_raw" in m else "–"
            cells.append(f"{m['seconds']:.2f} ({m['objects_per_second']:.0f}/s, {ratio})"
                         if m else "–")
        lines.append(f"| {LABELS[way]} | " + " | ".join(cells) + " |")
    lines.append("")
    for r in results:
        lines.extend(_notes(r))
    lines.extend(_scale(results))
    return "\n".join(lines) + "\n"


def _scale(results: list[dict]) -> list[str]:
    """Per-object time of each way at every N, and at each N over that at 10,000."""
    base = next((r for r in results if r["objects"] == 10_000), None)
    notes = []
    for way in ("gitops_restore", "flux_ssa", "raw_probe"):
        cells = []
        for r in results:
            if way not in r:
                continue
            ms = 1000 * r[way]["seconds"] / r["objects"]
            cell = f"{ms:.2f} ms at N = {r['objects']:,}"
            if base and way in base and r is not base:
                cell += f" ({ms / (1000 * base[way]['seconds'] / 10_000):.2f}× that at 10,000)"
            cells.append(cell)
        if cells:
            notes.append(f"- per object, {LABELS[way]}: " + "; ".join(cells))
    return notes


def _notes(r: dict) -> list[str]:
    n = f"N = {r['objects']:,} (median of {r['rounds']})"
    notes = []
    if "gitops_restore" in r:
        notes.append(f"- {n}: gitops-restore peak RSS {r['gitops_restore']['peak_rss_mb']} MB"
                     + (f"; vs Flux's engine {r['flux_ssa']['ours_vs_it']}×" if "flux_ssa" in r
                        else "")
                     + (f"; vs kubectl {r['kubectl']['ours_vs_it']}×" if "kubectl" in r else "")
                     + (f"; vs the validate-first floor ({r['validate_first_floor_seconds']} s) "
                        f"{r['ours_vs_floor']}×" if "ours_vs_floor" in r else ""))
    server = [f"{LABELS[way].split(' (')[0]} {r[way]['apiserver_cpu_seconds']}" for way in WAYS
              if "apiserver_cpu_seconds" in r.get(way, {})]
    if server:
        notes.append(f"- {n}: kube-apiserver CPU s per way: " + "; ".join(server))
    for way in ("gitops_restore", "flux_ssa"):
        steady = r.get(f"steady_{way}")
        if steady:
            q = steady["requests"]
            engine = (f" (engine alone {steady['engine_cpu_seconds']} CPU s)"
                      if "engine_cpu_seconds" in steady else "")
            notes.append(f"- {n}, idle re-sync by {LABELS[way]}: {steady['seconds']} s, "
                         f"{steady['cpu_seconds']} CPU s{engine}, {q['reads']} reads, "
                         f"{q['dry_runs']} dry-runs, {q['writes']} writes "
                         f"({', '.join(q['written_resources']) or 'none'}); idle window "
                         f"alone: {steady['idle_window']['writes']} writes")
    if "rollback_10" in r:
        rb = r["rollback_10"]
        render = rb.get("rollback_phases", {}).get("render")
        notes.append(f"- {n}: a 10-object change restored in {rb['forward_seconds']} s, "
                     f"rolled back in {rb['rollback_seconds']} s"
                     + (f" (of which rendering the earlier commit {render} s)" if render else ""))
    return notes
