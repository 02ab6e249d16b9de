"""The public app as `photosearch app --public` starts it, for the gateway and browser tests.

The real command runs in a child process (the gateway in front, Streamlit on loopback behind
it), with the owner's password in PHOTOSEARCH_APP_PASSWORD and friends in a users file made
with `photosearch app users add`. Saved people can go to a loopback S3 server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OWNER_PASSWORD = "owner-password-1"
FRIENDS = {"alice": "alice-password-1", "bob": "bob-password-1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class PublicApp:
    url: str  # http://127.0.0.1:PORT (the gateway)
    port: int
    process: subprocess.Popen
    log_path: Path
    users_file: str  # a path or an s3:// URL

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def add_users(environment: Mapping[str, str], users: Mapping[str, str]) -> None:
    for name, password in users.items():
        subprocess.run(
            [sys.executable, "-m", "photosearch.cli.main", "app", "users", "add", name],
            env={**environment, "PHOTOSEARCH_APP_NEW_PASSWORD": password},
            check=True,
            capture_output=True,
        )


@contextmanager
def public_app(
    album: str, index: str, work: Path, extra: Mapping[str, str] | None = None
) -> Iterator[PublicApp]:
    """Start `photosearch app --public` on 127.0.0.1; yields once Streamlit answers behind it."""
    port = free_port()
    users_file = work / "users.json"
    environment = {
        **os.environ,
        "PHOTOSEARCH_DATA_DIR": str(work / "data"),
        "PHOTOSEARCH_APP_USERS": str(users_file),
        **(extra or {}),
    }
    for name in ("PHOTOSEARCH_APP_PASSWORD_HASH", "PHOTOSEARCH_APP_GATEWAY_TOKEN"):
        environment.pop(name, None)
    add_users(environment, FRIENDS)
    environment["PHOTOSEARCH_APP_PASSWORD"] = OWNER_PASSWORD
    command = [
        sys.executable,
        "-m",
        "photosearch.cli.main",
        "app",
        "--album",
        album,
        "--index",
        index,
        "--address",
        "127.0.0.1",
        "--public",
        "--port",
        str(port),
        "--no-browser",
    ]
    with running_app(command, environment, work, port, str(users_file)) as app:
        yield app


@contextmanager
def running_app(
    command: list[str], environment: Mapping[str, str], work: Path, port: int, users_file: str
) -> Iterator[PublicApp]:
    """Run `command` (a public app on `port`) until the block ends."""
    log_path = work / "public-app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, env=dict(environment), cwd=work, stdout=log, stderr=subprocess.STDOUT
        )
    app = PublicApp(f"http://127.0.0.1:{port}", port, process, log_path, users_file)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{app.url}/_photosearch/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    message = f"the public app did not start:\n{app.log()[-3000:]}"
                    raise RuntimeError(message) from None
                time.sleep(0.3)
        wait_for_streamlit(app)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_streamlit(app: PublicApp, timeout: float = 120) -> None:
    """Signed in as the owner, until Streamlit answers behind the gateway."""
    cookie = sign_in(app, "owner", OWNER_PASSWORD)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(f"{app.url}/_stcore/health", headers={"Cookie": cookie})
        try:
            with urllib.request.urlopen(request, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not start behind the gateway:\n{app.log()[-3000:]}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def sign_in(app: PublicApp, account: str, password: str, forwarded_for: str | None = None) -> str:
    """The session cookie ("name=value") of a successful sign-in; raises otherwise."""
    from urllib.parse import urlencode

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    request = urllib.request.Request(
        f"{app.url}/_photosearch/login",
        data=urlencode({"account": account, "password": password, "next": "/"}).encode(),
        headers=headers,
        method="POST",
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(request, timeout=30)
    except urllib.error.HTTPError as answer:
        if answer.code != 303:
            raise
        cookie = answer.headers["Set-Cookie"]
        return cookie.split(";", 1)[0]
    raise AssertionError("a sign-in that does not redirect")
