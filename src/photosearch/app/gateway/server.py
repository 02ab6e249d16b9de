"""The authenticating gateway: every route of the app answers only after signing in.

A small Starlette app (Streamlit's own web stack, so no new dependency) run by uvicorn on the
public address, in front of the Streamlit server that listens on loopback only. Before login,
every route (the page, ``/_stcore/*`` with the upload endpoint and the WebSocket, ``/media/*``)
answers 401 (or a redirect to the sign-in form for a page navigation), and no request body is
read. Signing in sets a signed, HttpOnly, SameSite cookie; failed logins are slowed per address
and per account (`LoginLimiter`) and each one is logged (address, account, time) to stderr.
Request bodies are bounded, so an upload cannot exceed the app's limit even when signed in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, urlparse

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from photosearch.app.gateway.accounts import Account, Directory
from photosearch.app.gateway.limiter import LoginLimiter
from photosearch.app.gateway.login_page import LOGIN_PATH, LOGOUT_PATH, login_html, safe_next
from photosearch.app.gateway.proxy import Upstream, forwarded_headers, proxy_http, proxy_websocket

__all__ = [
    "COOKIE_NAME",
    "HEALTH_PATH",
    "GatewaySettings",
    "gateway_app",
]

COOKIE_NAME = "photosearch_session"
HEALTH_PATH = "/_photosearch/health"  # for a load balancer: says "ok", nothing else
_LOGIN_FORM_BYTES = 4096
_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
log = logging.getLogger("photosearch.gateway")


class _TooLarge(Exception):
    pass


@dataclass
class GatewaySettings:
    upstream: Upstream
    directory: Directory
    secret: str  # signs the session cookie; a fresh one each start ends every session
    max_body_bytes: int  # the largest request body forwarded (uploads included)
    max_message_bytes: int  # the largest WebSocket message either way
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    forwarded_hops: int = 0  # trusted proxies in front that append to X-Forwarded-For
    allowed_origins: tuple[str, ...] = ()  # extra Origins (e.g. the CloudFront address)
    session_seconds: int = 12 * 3600
    failure_delay: float = 1.0  # every failed login answers this much later
    secure_cookie: bool | None = None  # None: Secure when the request came over https
    clock: Callable[[], float] = time.time


def gateway_app(settings: GatewaySettings) -> Starlette:
    """The ASGI app of the gateway."""
    signer = URLSafeTimedSerializer(settings.secret, salt="photosearch-login")

    def client_address(scope_client, headers) -> str:
        direct = scope_client.host if scope_client else "unknown"
        hops = settings.forwarded_hops
        if hops <= 0:
            return direct
        chain = [part.strip() for part in headers.get("x-forwarded-for", "").split(",")]
        chain = [part for part in chain if part]
        # The rightmost entries were added by our own proxies; a client can only prepend.
        return chain[-hops] if len(chain) >= hops else (chain[0] if chain else direct)

    def signed_in(cookies) -> Account | None:
        value = cookies.get(COOKIE_NAME)
        if not value:
            return None
        try:
            data = signer.loads(value, max_age=settings.session_seconds)
        except BadSignature:
            return None
        name = data.get("u") if isinstance(data, dict) else None
        return settings.directory.get(name) if isinstance(name, str) else None

    def same_origin(headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True  # not a browser's cross-site request
        if origin in settings.allowed_origins:
            return True
        return urlparse(origin).netloc == headers.get("host", "")

    def is_https(request: Request) -> bool:
        if settings.secure_cookie is not None:
            return settings.secure_cookie
        forwarded = request.headers.get("x-forwarded-proto", "") if settings.forwarded_hops else ""
        return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"

    def refuse(request: Request) -> Response:
        """Nothing useful before login: a page navigation goes to the form, the rest gets 401."""
        path = request.url.path
        navigation = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if navigation and not path.startswith(("/_stcore/", "/media/", "/component/")):
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{LOGIN_PATH}?next={quote(target)}", status_code=303)
        response = PlainTextResponse("sign in first\n", status_code=401)
        response.headers["Cache-Control"] = "no-store"
        return _hang_up_if_body(request, response)

    def form_page(status: int, **values) -> HTMLResponse:
        response = HTMLResponse(login_html(**values), status_code=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
        )
        return response

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def login(request: Request) -> Response:
        if request.method == "GET":
            if signed_in(request.cookies) is not None:
                return RedirectResponse(safe_next(request.query_params.get("next")), 303)
            return form_page(200, next_path=request.query_params.get("next") or "/")
        if not same_origin(request.headers):
            return PlainTextResponse("cross-site sign-in refused\n", status_code=403)
        try:
            body = await _read_body(request, _LOGIN_FORM_BYTES)
        except _TooLarge:
            return _hang_up_if_body(request, PlainTextResponse("too large\n", status_code=413))
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=5)
        account = (fields.get("account") or [""])[0].strip().lower()[:64]
        password = (fields.get("password") or [""])[0]
        next_path = safe_next((fields.get("next") or ["/"])[0])
        address = client_address(request.client, request.headers)
        wait = settings.limiter.retry_after(address, account)
        if wait > 0:
            log.warning(
                "login refused (too many failures): address=%s account=%r time=%s retry_in=%.0fs",
                address,
                account,
                _utc(settings.clock()),
                wait,
            )
            response = form_page(
                429,
                account=account,
                next_path=next_path,
                message=f"Too many failed sign-ins. Try again in {int(wait) + 1} seconds.",
            )
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        found = await asyncio.to_thread(settings.directory.verify, account, password)
        if found is None:
            settings.limiter.failed(address, account)
            log.warning(
                "login failed: address=%s account=%r time=%s",
                address,
                account,
                _utc(settings.clock()),
            )
            await asyncio.sleep(settings.failure_delay)
            return form_page(
                401, account=account, next_path=next_path, message="Wrong account or password."
            )
        settings.limiter.succeeded(account)
        log.info("login: address=%s account=%r", address, found.name)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE_NAME,
            signer.dumps({"u": found.name}),
            max_age=settings.session_seconds,
            httponly=True,
            samesite="lax",
            secure=is_https(request),
            path="/",
        )
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(COOKIE_NAME, path="/")
        return response

    async def forward(request: Request) -> Response:
        account = signed_in(request.cookies)
        if account is None:
            return refuse(request)  # the body is never read
        try:
            body = await _read_body(request, settings.max_body_bytes)
        except _TooLarge:
            return _hang_up_if_body(request, PlainTextResponse("too large\n", status_code=413))
        headers = forwarded_headers(
            request.headers.items(),
            user=account.name,
            role=account.role,
            token=settings.upstream.token,
            cookie_name=COOKIE_NAME,
        )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return await proxy_http(settings.upstream, request.method, target, headers, body)

    async def stream(websocket: WebSocket) -> None:
        account = signed_in(websocket.cookies)
        if account is None or not same_origin(websocket.headers):
            await websocket.close(code=1008)  # before accepting: the handshake gets 403
            return
        headers = forwarded_headers(
            websocket.headers.items(),
            user=account.name,
            role=account.role,
            token=settings.upstream.token,
            cookie_name=COOKIE_NAME,
            websocket=True,
        )
        await proxy_websocket(
            settings.upstream,
            websocket,
            headers,
            max_message=settings.max_message_bytes,
            still_allowed=lambda: settings.directory.get(account.name) is not None,
        )

    return Starlette(
        routes=[
            Route(HEALTH_PATH, health, methods=["GET", "HEAD"]),
            Route(LOGIN_PATH, login, methods=["GET", "POST"]),
            Route(LOGOUT_PATH, logout, methods=["GET", "POST"]),
            WebSocketRoute("/_stcore/stream", stream),
            Route("/{path:path}", forward, methods=_METHODS),
        ]
    )


def _hang_up_if_body(request: Request, response: Response) -> Response:
    """Close the connection after answering, so an unread body is never taken in (uvicorn
    would otherwise read and drop it to keep the connection alive)."""
    if request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers:
        response.headers["Connection"] = "close"
    return response


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            raise _TooLarge from None
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
