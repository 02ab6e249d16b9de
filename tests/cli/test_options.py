"""The options several commands share mean the same everywhere: one declaration (cli/options.py),
so one help text, one type and one default, whichever command shows them."""

from __future__ import annotations

import click

from photosearch.cli.main import main

SHARED = ("--device", "--max-side", "--mirror", "--upsample", "--detection-side")


def commands(group: click.Group, prefix: str = "photosearch"):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", command


def test_shared_options_are_declared_once() -> None:
    seen: dict[str, dict[tuple, list[str]]] = {name: {} for name in SHARED}
    for path, command in commands(main):
        for param in command.params:
            for name in set(param.opts) & set(SHARED):
                form = (param.help, repr(param.type), param.default, param.show_default)
                seen[name].setdefault(form, []).append(path)
    for name, forms in seen.items():
        assert forms, f"no command takes {name}"
        assert len(forms) == 1, f"{name} is declared {len(forms)} ways: {list(forms.values())}"
    # --max-side appears on the local and the SageMaker indexing alike (0: full size).
    assert {"photosearch index", "photosearch aws index"} <= set(*seen["--max-side"].values())
