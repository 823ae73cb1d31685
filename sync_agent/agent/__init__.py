"""The sync agent: a daemon that keeps one cluster converged on one `Sync` object.

`python -m sync_agent` (see `main`) runs the same code in a Pod (ServiceAccount credentials)
and as a local process beside a `local` provider's control plane (kubeconfig). Layout:

  main        wiring, signals, exit codes (`python -m sync_agent`)
  config      command-line options -> AgentConfig
  syncobject  the Sync custom resource: read its spec, write its status and conditions
  recorder    Kubernetes Events about the Sync object (deduplicated, like client-go's)
  deploykey   the deploy-key Secret -> 0600 files -> source.GitAuth, for the time of one fetch
  lease       leader election through a coordination.k8s.io/v1 Lease
  metrics     Prometheus metrics; server serves them with /healthz and /readyz
  loop        the reconcile loop: interval, prompt reaction to spec changes, backoff
  attempts    what an attempt came to (reason, retryable or stalled) -> the status patch
  localproc   start, find and stop a detached agent process (used by bootstrap's local provider)
  logs        structured key=value log lines

The agent imports the engine and nothing of `bootstrap`.
"""
