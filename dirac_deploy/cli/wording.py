"""Library messages worded for the command line.

The library names a setting the way its Python caller sets it, in backticks: `min_speedup`, or with a value,
`min_speedup=0`, `target='openvino'`, `verify=False`. It never spells a command-line flag; the command line
words those for the command that ran, from that command's own click options: `min_speedup=0` becomes
`--min-speedup 0`, `verify=False` becomes `--no-verify`, `trust_checkpoint=True` becomes `--trust-checkpoint`.
A name that is not one of the command's options (a setting of another layer, a command in backticks) is left
as it is.
"""

from __future__ import annotations

import re

import click

MARKED = re.compile(r"`([a-z_][a-z0-9_]*)(?:=([^`]*))?`")

# Library names whose option is spelled otherwise on the command line.
ALIASES = {"object_store_mb": "ray_object_store_mb"}


def options_of(command: click.Command | None) -> dict[str, click.Option]:
    """Each option of `command` under its parameter name and under its long flag's name (`--onnx` -> onnx)."""
    found: dict[str, click.Option] = {}
    for p in command.params if command is not None else ():
        if isinstance(p, click.Option) and p.name:
            found[p.name] = p
            for flag in p.opts:
                if flag.startswith("--"):
                    found.setdefault(flag[2:].replace("-", "_"), p)
    for name, target in ALIASES.items():
        if target in found:
            found.setdefault(name, found[target])
    return found


def _flag(option: click.Option, value: str | None) -> str:
    long = next((o for o in option.opts if o.startswith("--")), option.opts[0])
    if value is None:
        return long
    value = value.strip("'\"")
    if option.is_flag:
        if value == "False":
            return next((o for o in option.secondary_opts if o.startswith("--")), f"no {long}")
        return long
    return f"{long} {value}"


def worded(message: str) -> str:
    """`for_command_line` for the command running now (a library note printed in a report)."""
    ctx = click.get_current_context(silent=True)
    return for_command_line(message, ctx.command if ctx is not None else None)


def for_command_line(message: str, command: click.Command | None) -> str:
    """`message` with every setting `command` has as an option written as its flag."""
    options = options_of(command)

    def word(m: re.Match) -> str:
        option = options.get(m.group(1))
        return m.group(0) if option is None else _flag(option, m.group(2))

    return MARKED.sub(word, message)
