"""The `photosearch` command group: registers the commands, each in its own module.

Command modules import only click and light modules at the top, so `photosearch --help` stays
fast; the library's heavy modules are imported inside the commands.
"""

from __future__ import annotations

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="photosearch")
def main() -> None:
    """Find every photo of a person in an album."""


def register_commands() -> None:
    """Sub-commands and groups that live in their own modules."""
    from photosearch.app.launch import app
    from photosearch.cli.app_users import users
    from photosearch.cli.aws import aws
    from photosearch.cli.aws_app import app_group
    from photosearch.cli.evaluate import eval_group
    from photosearch.cli.faces import faces
    from photosearch.cli.index import index, info
    from photosearch.cli.people import people
    from photosearch.cli.search import search

    for command in (faces, index, info, search, people, eval_group, aws, app):
        main.add_command(command)
    app.add_command(users)  # photosearch app users add | remove | list
    aws.add_command(app_group)  # photosearch aws app build | deploy | status | pause | ...


register_commands()

if __name__ == "__main__":
    main()
