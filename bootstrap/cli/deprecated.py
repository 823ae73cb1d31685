"""Option spellings renamed so that every command follows one rule; the old ones still work
for one release, each with a line on stderr naming the new spelling.

The rule: an option is named for what it names. `--cluster` is a cluster of this machine
(`gitops-restore clusters`) wherever a command uses one, also where bootstrap and drill make
it; `--name` is left only to `provision`, whose subject is the cluster it creates (as
`kind create cluster --name`). `--sync` is a sync's name, `--deploy-key` a deploy key's.

A command registered with `cls=renamed(...)` rewrites the old spellings in its arguments to
the new ones before Click parses them, so the command itself only knows the new option.
"""

from __future__ import annotations

import itertools

from typer.core import TyperCommand

from bootstrap.cli.output import stderr

SYNC = {"--name": "--sync"}
CLUSTER = {"--name": "--cluster"}
BOOTSTRAP = {"--name": "--cluster", "--sync-name": "--sync"}
DRILL = {"--cluster-name": "--cluster", "--name": "--sync"}
DEPLOY_KEY = {"--name": "--deploy-key"}


def renamed(renames: dict[str, str]) -> type[TyperCommand]:
    """A command class that accepts `renames`' old spellings (old -> new)."""
    return type("RenamedCommand", (_Renamed,), {"renames": renames})


class _Renamed(TyperCommand):
    renames: dict[str, str] = {}

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self._rewrite(ctx, args))

    def _rewrite(self, ctx, args: list[str]) -> list[str]:
        """Old spellings in option position become the new ones: `--name x`, `--name=x`;
        the value of an option that takes one is left as it is, whatever it looks like."""
        takes_value = {flag for p in self.get_params(ctx)
                       if p.param_type_name == "option" and not p.is_flag and not p.count
                       for flag in p.opts}
        out: list[str] = []
        rest = iter(args)
        for arg in rest:
            if arg == "--":
                out += [arg, *rest]
                break
            flag, equals, value = arg.partition("=")
            if flag in self.renames:
                stderr.print(f"warning: {flag} is deprecated; use {self.renames[flag]}",
                             markup=False)
                flag = self.renames[flag]
            out.append(flag + equals + value)
            if not equals and flag in takes_value:
                out += itertools.islice(rest, 1)
        return out
