"""`photosearch app users add | remove | list`: who may sign in to the public app.

The accounts live in the users file (``PHOTOSEARCH_APP_USERS``, default ``app-users.json`` in
the data dir; an ``s3://`` URL for the app on AWS), as salted scrypt hashes. The owner account
of ``PHOTOSEARCH_APP_PASSWORD`` needs no entry; owners added here may index too, friends only
search. A running app sees changes within seconds.
"""

from __future__ import annotations

import os

import click

from photosearch.cli.options import fail, say

__all__ = ["users"]

_ENV_NEW_PASSWORD = "PHOTOSEARCH_APP_NEW_PASSWORD"  # for scripts: the password of `users add`


def _users_file(location: str | None):
    from photosearch.app.gateway.accounts import UsersFile, default_users_location

    return UsersFile(location or default_users_location())


users_location_option = click.option(
    "--users",
    "location",
    metavar="PATH_OR_URL",
    help="The users file [default: PHOTOSEARCH_APP_USERS, else app-users.json in the data dir].",
)


@click.group()
def users() -> None:
    """Accounts of the public app: friends search, owners also index."""


@users.command("add")
@click.argument("name")
@click.option("--owner", "is_owner", is_flag=True, help="May index the album too.")
@users_location_option
def add(name: str, is_owner: bool, location: str | None) -> None:
    """Add an account (or give NAME a new password). The password is asked for, or read
    from PHOTOSEARCH_APP_NEW_PASSWORD."""
    from photosearch.app.gateway.accounts import FRIEND, OWNER, AccountError, check_account_name

    try:
        check_account_name(name)
    except AccountError as error:
        fail(str(error))
    password = os.environ.get(_ENV_NEW_PASSWORD)
    if not password:
        if not click.get_text_stream("stdin").isatty():
            fail(f"no password: set {_ENV_NEW_PASSWORD} or run this on a terminal")
        password = click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        fail("the password is too short: use at least 8 characters")
    store = _users_file(location)
    try:
        account = store.add(name, password, OWNER if is_owner else FRIEND)
    except AccountError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write the users file {store.location}: {error}")
    say(f"{account.name} ({account.role}) can sign in; users file: {store.location}")


@users.command("remove")
@click.argument("name")
@users_location_option
def remove(name: str, location: str | None) -> None:
    """Remove an account: its sessions end at their next request. Its saved people stay in
    storage until forgotten."""
    from photosearch.app.gateway.accounts import AccountError

    store = _users_file(location)
    try:
        removed = store.remove(name)
    except AccountError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write the users file {store.location}: {error}")
    if not removed:
        fail(f"no account {name!r} in {store.location}")
    say(f"removed {name}")


@users.command("list")
@users_location_option
def list_users(location: str | None) -> None:
    """The accounts, one a line: name and role (never a hash)."""
    from photosearch.app.gateway.accounts import AccountError

    store = _users_file(location)
    try:
        accounts = store.accounts()
    except AccountError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot read the users file {store.location}: {error}")
    for account in sorted(accounts.values(), key=lambda a: a.name):
        click.echo(f"{account.name}\t{account.role}")
    if not accounts:
        say(f"no accounts in {store.location}")
