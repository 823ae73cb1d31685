"""`python -m sync_agent`: the sync agent daemon (see sync_agent.agent.main)."""

import sys

from sync_agent.agent import main

if __name__ == "__main__":
    sys.exit(main.run())
