# The sync agent's image: `python -m sync_agent`, the same code the CLI runs as a local process.
#   docker build -t ghcr.io/gitops-restore/agent:0.1.0 .
#   gitops-restore agent install --image ghcr.io/gitops-restore/agent:0.1.0 ...
FROM python:3.11-slim

# git fetches the repository; ssh (openssh-client) carries it, with the deploy key and the
# pinned known_hosts from the Secret (StrictHostKeyChecking=yes, always).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# ssh refuses to run for a uid without a passwd entry, so the non-root user is a real one.
RUN groupadd --gid 65532 agent \
 && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin agent

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sync_agent ./sync_agent
COPY bootstrap ./bootstrap
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /
USER 65532:65532
ENV GITOPS_RESTORE_CACHE=/var/cache/gitops-restore HOME=/tmp PYTHONUNBUFFERED=1
EXPOSE 9795
ENTRYPOINT ["python", "-m", "sync_agent"]
