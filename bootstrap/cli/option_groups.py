"""Options that always come together, declared once for every command that takes them.

A converter declares a group of options as its parameters (each an Annotated typer.Option
with its default) and turns them into one value: `options.render_options` gives the engine's
RenderOptions, `options.signature_policy` a signature Policy. A command decorated with
`grouped(render=options.render_options)` offers those options and receives one keyword-only
`render` argument. Typer reads a command's options from its signature, so the decorated
command shows Typer its own parameters with the converter's in place of `render`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable


def grouped(**groups: Callable) -> Callable[[Callable], Callable]:
    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True)
        taken = {name: list(inspect.signature(group, eval_str=True).parameters.values())
                 for name, group in groups.items()}
        params = [p for p in own.parameters.values() if p.name not in groups]
        params += [p for group_params in taken.values() for p in group_params]

        @functools.wraps(command)
        def with_groups(**kwargs):
            for name, group in groups.items():
                kwargs[name] = group(**{p.name: kwargs.pop(p.name) for p in taken[name]})
            return command(**kwargs)

        with_groups.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        with_groups.__annotations__ = {p.name: p.annotation for p in params}
        return with_groups
    return decorate
