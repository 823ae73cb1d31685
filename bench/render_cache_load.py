"""What a render-cache hit costs against rendering the commit again, and which encoding loads
fastest, with Python's cyclic collector running and paused (as `render_cache.load` pauses it):
the synthetic repository (bench/synthetic.py) at each size, in-process, CPU seconds, median of
a few repeats. `python -m bench.render_cache_load --sizes 10000 50000`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from bench import synthetic
from sync_agent import collector, engine, render_cache, source


def cpu(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return round(statistics.median(times), 3)


def measure(size: int, work: Path, repeats: int) -> dict:
    repo = work / f"repo-{size}"
    repo.mkdir()
    synthetic.write_tree(synthetic.objects(size), repo)
    synthetic.git_commit(repo, f"{size} objects")
    opened = source.open_repository(str(repo))
    revision = source.resolve(opened, str(repo))
    spec = engine.SourceSpec(repo=str(repo))
    os.environ["GITOPS_RESTORE_CACHE"] = str(work / f"cache-{size}")  # render_cache.directory
    inputs = render_cache.Inputs(spec.repo, revision.sha, spec.path, spec.ignore, spec.render,
                                 None)
    entry = render_cache.key(inputs)
    rendered = engine.render_revision(opened, revision, spec)  # a miss: renders and stores
    data = {"format": render_cache.FORMAT, "path": rendered.path, "skipped": [],
            "resources": [[r.body, dataclasses.astuple(r.origin)] for r in rendered.resources]}
    as_orjson, as_json, as_pickle = orjson.dumps(data), json.dumps(data), pickle.dumps(data)
    decoders = {"orjson": lambda: orjson.loads(as_orjson), "json": lambda: json.loads(as_json),
                "pickle": lambda: pickle.loads(as_pickle)}
    hit = {"hit": lambda: engine.render_revision(None, revision, spec)}
    return {
        "objects": len(rendered.resources),
        "entry_mb": round((render_cache.directory() / f"{entry}.json").stat().st_size / 1e6, 1),
        "cpu_seconds": {
            "export_and_render": cpu(lambda: render_cache.directory().joinpath(
                f"{entry}.json").unlink() or engine.render_revision(opened, revision, spec),
                repeats),
            "store": cpu(lambda: render_cache.store(entry, rendered), repeats),
            **{name: cpu(work, repeats) for name, work in hit.items()},
            "encode_orjson": cpu(lambda: orjson.dumps(data), repeats),
            "encode_json": cpu(lambda: json.dumps(data), repeats),
            **{f"decode_{name}": cpu(work, repeats) for name, work in decoders.items()},
            **{f"decode_{name}_collector_paused": cpu(paused(work), repeats)
               for name, work in decoders.items()},
        },
    }


def paused(work):
    def run() -> None:
        with collector.paused():
            work()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitops-restore-rcbench-") as tmp:
        for size in args.sizes:
            print(json.dumps({size: measure(size, Path(tmp), args.repeats)}))


if __name__ == "__main__":
    main()
