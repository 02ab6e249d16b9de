"""Running the public app: Streamlit on loopback, the gateway on the public address.

`serve_public` starts the Streamlit server as a child process bound to 127.0.0.1 on a free
port, with a fresh token that only the gateway sends, then runs the gateway with uvicorn in
this process until it is stopped (Ctrl-C or SIGTERM), and stops the child with it. If the
child dies, the gateway stops too, so a service manager sees the failure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping

from photosearch.app.gateway.accounts import Directory
from photosearch.app.gateway.limiter import LoginLimiter
from photosearch.app.gateway.proxy import Upstream
from photosearch.app.gateway.server import GatewaySettings, gateway_app
from photosearch.app.logic.identity import ENV_GATEWAY_TOKEN

__all__ = [
    "ENV_COOKIE_SECRET",
    "ENV_FORWARDED_HOPS",
    "ENV_GATEWAY_TOKEN",
    "ENV_ORIGINS",
    "ENV_SECURE_COOKIES",
    "free_loopback_port",
    "serve_public",
]

ENV_COOKIE_SECRET = "PHOTOSEARCH_APP_COOKIE_SECRET"  # optional: sessions survive a restart
ENV_FORWARDED_HOPS = "PHOTOSEARCH_APP_FORWARDED_HOPS"  # proxies in front (CloudFront + ALB: 2)
ENV_ORIGINS = "PHOTOSEARCH_APP_ORIGINS"  # extra allowed Origins, comma-separated
# "1": the cookie is always Secure (HTTPS ends before the app, e.g. at CloudFront, whose load
# balancer hop is plain HTTP and says so in X-Forwarded-Proto).
ENV_SECURE_COOKIES = "PHOTOSEARCH_APP_SECURE_COOKIES"


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _configure_logging() -> None:
    logger = logging.getLogger("photosearch.gateway")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s photosearch gateway: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def serve_public(
    *,
    address: str,
    port: int,
    directory: Directory,
    streamlit_command: Callable[[str, int], list[str]],
    environment: Mapping[str, str],
    max_body_bytes: int,
    max_message_bytes: int,
) -> int:
    """Run until stopped; returns the exit status."""
    import uvicorn

    _configure_logging()
    token = secrets.token_urlsafe(32)
    inner_port = free_loopback_port()
    child_environment = dict(environment)
    child_environment[ENV_GATEWAY_TOKEN] = token
    child_environment.pop(ENV_COOKIE_SECRET, None)
    child = subprocess.Popen(
        streamlit_command("127.0.0.1", inner_port), env=child_environment, stdin=subprocess.DEVNULL
    )
    origins = tuple(o.strip() for o in environment.get(ENV_ORIGINS, "").split(",") if o.strip())
    settings = GatewaySettings(
        upstream=Upstream("127.0.0.1", inner_port, token),
        directory=directory,
        secret=environment.get(ENV_COOKIE_SECRET) or secrets.token_urlsafe(32),
        max_body_bytes=max_body_bytes,
        max_message_bytes=max_message_bytes,
        limiter=LoginLimiter(),
        forwarded_hops=int(environment.get(ENV_FORWARDED_HOPS) or 0),
        allowed_origins=origins,
        secure_cookie=True if environment.get(ENV_SECURE_COOKIES) == "1" else None,
    )
    config = uvicorn.Config(
        gateway_app(settings),
        host=address,
        port=port,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is read by the gateway, for trusted hops only
        server_header=False,
        ws_max_size=max_message_bytes,
        ws_per_message_deflate=False,
        timeout_keep_alive=10,
        h11_max_incomplete_event_size=64 * 1024,
    )
    server = uvicorn.Server(config)

    async def watch_child() -> None:
        while child.poll() is None and not server.should_exit:
            await asyncio.sleep(0.5)
        server.should_exit = True

    async def run() -> None:
        watcher = asyncio.create_task(watch_child())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    code = child.returncode
    return 0 if code in (0, -15, -2, None) or os.name != "posix" else 1
