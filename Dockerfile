# The sync agent's image: `python -m sync_agent`, the same code the CLI runs as a local process.
#   docker build -t ghcr.io/gitops-restore/agent:0.1.0 .
#   gitops-restore agent install --image ghcr.io/gitops-restore/agent:0.1.0 ...
# It carries every program the engine runs (sync_agent/paths.py GO_PROGRAMS and
# DEBIAN_PROGRAMS); tests/test_image.py checks this file against those lists and runs the
# `programs` stage's build outside Docker.

# The Go programs (kubectl, for kustomize; helm, for charts; helm-renderer, this repository's
# Go module linking helm, for rendering them), built from Go modules by
# scripts/engine-programs: the code, module versions, go.mod and flags that
# `gitops-restore cluster-bin` uses locally.
FROM python:3.11-slim AS programs
COPY --from=golang:1.26 /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:$PATH
WORKDIR /src
COPY scripts/engine-programs ./scripts/
COPY bootstrap/__init__.py bootstrap/errors.py bootstrap/binaries.py ./bootstrap/
COPY sync_agent/__init__.py sync_agent/errors.py sync_agent/paths.py ./sync_agent/
COPY sync_agent/helm/__init__.py sync_agent/helm/binary.py ./sync_agent/helm/
COPY sync_agent/helm/renderer ./sync_agent/helm/renderer
RUN python scripts/engine-programs /out

FROM python:3.11-slim

# git fetches the repository; ssh (openssh-client) carries it, with the deploy key and the
# pinned known_hosts from the Secret (StrictHostKeyChecking=yes, always). gpg (with gpgconf)
# and ssh-keygen verify signed commits for a Sync's spec.verify.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client gpg gpgconf ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# On PATH, where sync_agent/paths.py finds them (the image has no control-plane cache).
COPY --from=programs /out/ /usr/local/bin/

# ssh refuses to run for a uid without a passwd entry, so the non-root user is a real one.
RUN groupadd --gid 65532 agent \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin agent

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY sync_agent ./sync_agent
COPY bootstrap ./bootstrap
# The distribution's data files (pyproject.toml's data-files): without them pip install fails.
COPY deploy ./deploy
COPY examples ./examples
COPY playbooks ./playbooks
COPY schemas ./schemas
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /
USER 65532:65532
ENV GITOPS_RESTORE_CACHE=/var/cache/gitops-restore HOME=/tmp PYTHONUNBUFFERED=1
EXPOSE 9795
ENTRYPOINT ["python", "-m", "sync_agent"]
