"""Forwarding an authenticated request to the Streamlit server on loopback: HTTP and WebSocket.

Headers a client could use to pose as someone (``X-Photosearch-*``) and the gateway's own
cookie never reach Streamlit; the gateway adds the signed-in user, their role and the token
that proves the request came through it. HTTP goes through the standard library's
http.client in a worker thread (the body is already read and bounded; the answer is streamed
back in chunks); the WebSocket (``/_stcore/stream``) is pumped both ways with `websockets`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import anyio
from starlette.responses import StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from photosearch.app.logic.identity import HEADER_GATEWAY, HEADER_ROLE, HEADER_USER

__all__ = [
    "HEADER_GATEWAY",
    "HEADER_ROLE",
    "HEADER_USER",
    "Upstream",
    "forwarded_headers",
    "proxy_http",
    "proxy_websocket",
]

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
_WEBSOCKET_OWN = {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "origin",  # checked by the gateway; Streamlit sees a same-machine client
}
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Upstream:
    host: str  # loopback
    port: int
    token: str  # sent as HEADER_GATEWAY: the page trusts identity headers only with it
    timeout: float = 120.0


def _without_cookie(value: str, cookie_name: str) -> str:
    kept = [
        part.strip()
        for part in value.split(";")
        if part.strip() and part.strip().split("=", 1)[0] != cookie_name
    ]
    return "; ".join(kept)


def forwarded_headers(
    headers: Iterable[tuple[str, str]],
    *,
    user: str,
    role: str,
    token: str,
    cookie_name: str,
    websocket: bool = False,
) -> list[tuple[str, str]]:
    """The client's headers, cleaned, plus who is signed in."""
    dropped = _HOP_BY_HOP | (_WEBSOCKET_OWN if websocket else set())
    kept: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in dropped or lower.startswith("x-photosearch-"):
            continue
        if lower == "cookie":
            value = _without_cookie(value, cookie_name)
            if not value:
                continue
        kept.append((name, value))
    kept += [(HEADER_USER, user), (HEADER_ROLE, role), (HEADER_GATEWAY, token)]
    return kept


async def proxy_http(
    upstream: Upstream,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> StreamingResponse:
    """Send the request to Streamlit and stream its answer back."""

    def send() -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        connection = http.client.HTTPConnection(
            upstream.host, upstream.port, timeout=upstream.timeout
        )
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body or method in ("POST", "PUT", "PATCH"):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        return connection, connection.getresponse()

    try:
        connection, answer = await anyio.to_thread.run_sync(send)
    except OSError:
        return StreamingResponse(_once(b"the app is starting, try again in a moment\n"), 502)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(answer.read1, CHUNK)
                if not chunk:
                    break
                yield chunk
        finally:
            connection.close()

    response = StreamingResponse(chunks(), status_code=answer.status)
    response.raw_headers = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in answer.getheaders()
        if name.lower() not in _HOP_BY_HOP or name.lower() == "content-length"
    ]
    return response


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def proxy_websocket(
    upstream: Upstream,
    client: WebSocket,
    headers: list[tuple[str, str]],
    *,
    max_message: int,
    still_allowed,
) -> None:
    """Connect to Streamlit's WebSocket, accept the client's, and pump messages both ways.

    `still_allowed()` is asked before each client message: a removed account is cut off.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    offered = [
        part.strip()
        for part in client.headers.get("sec-websocket-protocol", "").split(",")
        if part.strip()
    ]
    path = client.url.path + (f"?{client.url.query}" if client.url.query else "")
    try:
        server = await connect(
            f"ws://{upstream.host}:{upstream.port}{path}",
            additional_headers=headers,
            subprotocols=offered or None,
            max_size=max_message,
            compression=None,
            open_timeout=30,
        )
    except (TimeoutError, OSError, WebSocketException):
        await client.close(code=1013)  # try again later: Streamlit is not up
        return
    async with server:
        await client.accept(subprotocol=server.subprotocol)

        async def from_client() -> None:
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if not still_allowed():
                    await client.close(code=1008)
                    return
                if message.get("bytes") is not None:
                    await server.send(message["bytes"])
                elif message.get("text") is not None:
                    await server.send(message["text"])

        async def from_server() -> None:
            async for message in server:
                if isinstance(message, bytes):
                    await client.send_bytes(message)
                else:
                    await client.send_text(message)

        tasks = [asyncio.create_task(from_client()), asyncio.create_task(from_server())]
        try:
            _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in tasks:
                try:
                    await task
                except (asyncio.CancelledError, WebSocketDisconnect, WebSocketException):
                    pass
                except RuntimeError:
                    pass  # the client went away mid-send
        finally:
            with contextlib.suppress(RuntimeError):  # already closed
                await client.close()
