"""`photosearch app`: start the web app (`streamlit run page.py` with the right options).

The options reach the page through environment variables (see logic.ENV_*). A plain password
is hashed here and only the hash is passed on. On loopback, this process becomes Streamlit.
Serving the network (`--public`, or an address other than loopback) runs Streamlit on loopback
behind the authenticating gateway (photosearch.app.gateway), which answers nothing before
login; without any account (the owner's password, or `photosearch app users add`) it is
refused before anything starts. `photosearch app users ...` is registered by the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

__all__ = [
    "DEFAULT_PORT",
    "MAX_MESSAGE_MB",
    "MAX_UPLOAD_MB",
    "MULTIPART_OVERHEAD_MB",
    "PAGE",
    "Refused",
    "app",
    "app_environment",
    "ensure_port_free",
    "network_accounts",
    "open_browser_when_up",
    "read_secrets_files",
    "streamlit_command",
]

PAGE = Path(__file__).with_name("page.py")
DEFAULT_PORT = 8501
MAX_UPLOAD_MB = 25  # one reference photo (Streamlit's server.maxUploadSize)
MULTIPART_OVERHEAD_MB = 1  # form framing around the file, allowed on top by the gateway
MAX_MESSAGE_MB = 50  # one WebSocket message either way (Streamlit's server.maxMessageSize)


class Refused(click.ClickException):
    """Bad usage or configuration: nothing started (exit status 2)."""

    exit_code = 2


def ensure_port_free(address: str, port: int) -> None:
    """Refuse a taken port before printing the app's address: otherwise the user sees a URL
    that answers with someone else's server, then Streamlit's own error."""
    import socket

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as the servers set it: a port in TIME_WAIT is free for them too.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            raise Refused(
                f"port {port} on {address} is not free ({error.strerror}): "
                "choose another with --port (make run PORT=...)"
            ) from None


def read_secrets_files(folder: Path | None = None) -> dict[str, Any]:
    """Streamlit's secrets files, as Streamlit merges them (project overrides user)."""
    merged: dict[str, Any] = {}
    for path in (
        Path.home() / ".streamlit" / "secrets.toml",
        (folder or Path.cwd()) / ".streamlit" / "secrets.toml",
    ):
        try:
            merged.update(tomllib.loads(path.read_text()))
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise click.ClickException(f"cannot read {path}: {error}") from None
    return merged


def open_browser_when_up(url: str, wait_seconds: float = 30.0) -> None:
    """Open the user's browser on the app once the server answers (a detached helper process,
    since this process becomes the Streamlit server)."""
    import subprocess
    import sys

    script = (
        "import sys, time, urllib.request, webbrowser\n"
        f"deadline = time.time() + {wait_seconds}\n"
        "while time.time() < deadline:\n"
        "    try:\n"
        f"        urllib.request.urlopen({url!r} + '/_stcore/health', timeout=1)\n"
        f"        webbrowser.open({url!r})\n"
        "        break\n"
        "    except Exception:\n"
        "        time.sleep(0.5)\n"
    )
    subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def streamlit_command(address: str, port: int, *, headless: bool) -> list[str]:
    """The `streamlit run` command line for the page."""
    return [
        sys.executable,
        "-m",
        "photosearch.app.streamlit_main",  # Streamlit, with uploads kept in memory
        "run",
        str(PAGE),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true" if headless else "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        "--server.maxMessageSize",
        str(MAX_MESSAGE_MB),
        "--server.enableXsrfProtection",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
    ]


def app_environment(
    album: str | None,
    index: str | None,
    public: bool,
    password_hash: str | None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The page's environment: options in, plain password out."""
    from photosearch.app import logic

    environment = dict(os.environ if base is None else base)
    environment.pop(logic.ENV_PASSWORD, None)
    environment.pop(logic.ENV_PASSWORD_HASH, None)
    for name, value in ((logic.ENV_ALBUM, album), (logic.ENV_INDEX, index)):
        if value:
            environment[name] = value
        else:
            environment.pop(name, None)
    environment[logic.ENV_PUBLIC] = "1" if public else "0"
    if password_hash:
        environment[logic.ENV_PASSWORD_HASH] = password_hash
    return environment


@click.group(invoke_without_command=True)
@click.option(
    "--album",
    metavar="PATH_OR_URL",
    help="The album: a folder or a URL such as s3://bucket/photos [default: pick one in the app].",
)
@click.option(
    "--index",
    "index_location",
    metavar="PATH_OR_URL",
    help="The album's index [default: the album's index in the user data dir].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="The port to listen on.",
)
@click.option(
    "--public",
    is_flag=True,
    help="Serve on every network interface (0.0.0.0), everything behind a login. Requires an "
    "account: PHOTOSEARCH_APP_PASSWORD (the owner) or `photosearch app users add`.",
)
@click.option(
    "--address",
    metavar="ADDRESS",
    help="Bind to this address instead [default: 127.0.0.1, or 0.0.0.0 with --public]. "
    "A non-loopback address requires a password like --public.",
)
@click.option("--no-browser", is_flag=True, help="Do not open a browser tab.")
@click.option(
    "--hash-password",
    is_flag=True,
    help="Print a hash of a password (asked for) to use as PHOTOSEARCH_APP_PASSWORD_HASH.",
)
@click.pass_context
def app(ctx, album, index_location, port, public, address, no_browser, hash_password):
    """Start the web app: find every photo of a person in a few clicks.

    Opens on http://127.0.0.1:PORT (this computer only) unless --public is given. Uploaded
    reference photos are never stored unless you save the person.
    """
    if ctx.invoked_subcommand is not None:
        return
    # Imported here: `photosearch --help` should not pay for the app's dependencies.
    from photosearch.app import logic

    if hash_password:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        click.echo(logic.hash_password(password))
        return
    address = address or ("0.0.0.0" if public else "127.0.0.1")
    public_mode = public or not logic.is_loopback(address)
    try:
        password_hash = logic.password_hash_from(os.environ, read_secrets_files())
    except logic.StartRefused as error:
        raise Refused(str(error)) from None
    directory = network_accounts(password_hash) if public_mode else None
    if index_location and not album:
        try:
            album = logic.album_of_index(index_location)
        except Exception as error:
            raise Refused(f"cannot read the index {index_location}: {error}") from None
        if not album:
            raise Refused(f"no photosearch index at {index_location}")
    if public_mode and not album:
        # Network users may not browse the server's folders: the album is fixed at start.
        raise Refused("--public needs --album (or --index)")
    if album and "://" not in album and not Path(album).expanduser().is_dir():
        raise Refused(f"album folder not found: {album}")
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise Refused("the web app needs Streamlit: pip install streamlit") from None

    environment = app_environment(album, index_location, public_mode, password_hash)
    ensure_port_free(address, port)
    if directory is not None:
        from photosearch.app.gateway.serve import serve_public

        click.echo(
            f"photosearch app on http://{address}:{port}, sign-in required "
            f"({len(directory.accounts())} accounts; Ctrl-C stops it)",
            err=True,
        )
        sys.exit(
            serve_public(
                address=address,
                port=port,
                directory=directory,
                streamlit_command=lambda host, inner: streamlit_command(host, inner, headless=True),
                environment=environment,
                max_body_bytes=(MAX_UPLOAD_MB + MULTIPART_OVERHEAD_MB) * 2**20,
                max_message_bytes=MAX_MESSAGE_MB * 2**20,
            )
        )
    # Without a terminal, or on a first run, a non-headless Streamlit stops at its e-mail
    # prompt; so the server always runs headless and the browser is opened from here instead.
    command = streamlit_command(address, port, headless=True)
    if not (no_browser or public_mode):
        open_browser_when_up(f"http://127.0.0.1:{port}")
    shown = "127.0.0.1" if address in ("0.0.0.0", "::") else address
    click.echo(f"photosearch app on http://{shown}:{port}  (Ctrl-C stops it)", err=True)
    if os.name == "posix":
        # Become Streamlit: signals (Ctrl-C, a service manager's SIGTERM) reach the server
        # itself, and no server is left running behind a killed launcher.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, environment)
    try:
        completed = subprocess.run(command, env=environment, check=False)
    except KeyboardInterrupt:
        return
    if completed.returncode not in (0, -2, 130):
        sys.exit(completed.returncode)


def network_accounts(password_hash: str | None):
    """The accounts that may sign in to a public app (a gateway.accounts.Directory); refuses
    (exit 2) when there are none, or the users file cannot be read."""
    from photosearch.app import logic
    from photosearch.app.gateway.accounts import (
        AccountError,
        Directory,
        UsersFile,
        default_users_location,
        owner_account,
    )

    location = default_users_location()
    try:
        directory = Directory(owner_account(password_hash), UsersFile(location))
    except (AccountError, ValueError) as error:
        raise Refused(str(error)) from None
    except OSError as error:
        raise Refused(f"cannot read the users file {location}: {error}") from None
    if not directory.accounts():
        raise Refused(
            "refusing to serve photos on the network without a password: set "
            f"{logic.ENV_PASSWORD} (the owner's), or add accounts with "
            f"`photosearch app users add NAME` ({location})"
        )
    return directory


if __name__ == "__main__":
    app()
