"""Helm: charts under --path and HelmReleases in the revision, rendered to plain objects.

Called by `render.render` when the engine passes a `context.HelmContext` (it needs the
cluster's version and served APIs, which only the engine knows). The pipeline inside:
releases (what to render, from which chart) -> fetch (chart archives, cached) -> template
(`helm template` in a clean environment, then ownership marks, namespaces and hook policy).
"""
