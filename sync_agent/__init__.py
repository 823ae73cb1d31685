"""The engine that makes a cluster match a Git revision, and the daemon that runs it.

The pipeline, one module per stage: source (Git) -> render (objects) -> validate -> plan ->
apply / prune -> health. Each stage takes the previous stage's plain data (see `objects`).
"""
