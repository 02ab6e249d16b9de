"""The public app attacked over raw HTTP: nothing answers before login, uploads are bounded,
failed logins are slowed and logged; plus the gateway's parts (accounts, limiter, identity).

The live tests start the real `photosearch app --public` (gateway in front, Streamlit on
loopback behind it) on a real indexed album (tests/public_app.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path

import pytest
from app_album import shared_album
from public_app import FRIENDS, OWNER_PASSWORD, public_app, sign_in

from photosearch.app import launch, logic
from photosearch.app.gateway.accounts import (
    AccountError,
    Directory,
    UsersFile,
    owner_account,
)
from photosearch.app.gateway.limiter import LoginLimiter
from photosearch.app.gateway.login_page import safe_next
from photosearch.app.gateway.proxy import forwarded_headers
from photosearch.app.logic import identity

# Every kind of route Streamlit serves, and a few it does not.
ROUTES = [
    "/",
    "/?embed=true",
    "/index.html",
    "/_stcore/health",
    "/_stcore/host-config",
    "/_stcore/metrics",
    "/_stcore/script-health-check",
    "/_stcore/upload_file/session/file",
    "/_stcore/stream",
    "/media/0123456789abcdef.jpg",
    "/static/js/index.js",
    "/component/x/index.html",
    "/app/static/x.png",
    "/favicon.png",
    "/robots.txt",
    "/../../etc/passwd",
    "/_photosearch/../_stcore/health",
]


# -- parts ---------------------------------------------------------------------------------------


def test_users_file_keeps_hashes_only(tmp_path):
    users = UsersFile(str(tmp_path / "users.json"))
    assert users.accounts() == {}
    users.add("alice", "alice-password-1")
    users.add("carol", "carol-password-1", role="owner")
    text = (tmp_path / "users.json").read_text()
    assert "alice-password-1" not in text and "scrypt$" in text
    assert (tmp_path / "users.json").stat().st_mode & 0o077 == 0
    accounts = users.accounts()
    assert {name: a.role for name, a in accounts.items()} == {"alice": "friend", "carol": "owner"}
    assert users.remove("alice") and not users.remove("alice")
    for bad in ("Alice", "../x", "", "a" * 33, "a b"):
        with pytest.raises(AccountError):
            users.add(bad, "password-123")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(AccountError, match="not a photosearch users file"):
        UsersFile(str(tmp_path / "broken.json")).accounts()


def test_directory_checks_passwords_and_follows_the_file(tmp_path):
    now = [0.0]
    users = UsersFile(str(tmp_path / "users.json"))
    users.add("alice", "alice-password-1")
    owner = owner_account(logic.hash_password("owner-pw"), {})
    directory = Directory(owner, users, refresh_seconds=10, clock=lambda: now[0])
    assert directory.verify("owner", "owner-pw").is_owner
    assert directory.verify("alice", "alice-password-1").role == "friend"
    assert directory.verify("alice", "wrong") is None
    assert directory.verify("nobody", "owner-pw") is None
    users.remove("alice")
    assert directory.get("alice") is not None  # re-read every 10 s
    now[0] = 11
    assert directory.get("alice") is None and directory.get("owner") is not None


def test_failed_logins_wait_longer_each_time():
    now = [1000.0]
    limiter = LoginLimiter(
        free_per_address=5, free_per_account=3, base_wait=2, max_wait=60, clock=lambda: now[0]
    )
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1", "alice") == 0
        limiter.failed("10.0.0.1", "alice")
    waits = []
    for _ in range(5):
        waits.append(limiter.retry_after("10.0.0.1", "alice"))
        now[0] += waits[-1]
        limiter.failed("10.0.0.1", "alice")
    assert waits == [2, 4, 8, 16, 32]  # doubling per account (address: 5 free, then 2, 4...)
    assert limiter.retry_after("10.9.9.9", "alice") == 60  # another address: the account waits
    assert limiter.retry_after("10.0.0.1", "bob") > 0  # another account: the address waits
    assert limiter.retry_after("10.9.9.9", "bob") == 0
    limiter.succeeded("alice")
    assert limiter.retry_after("10.9.9.9", "alice") == 0
    now[0] += 3600
    assert limiter.retry_after("10.0.0.1", "carol") == 0  # a quiet hour forgets


def test_the_page_trusts_identity_only_from_the_gateway():
    env = {identity.ENV_GATEWAY_TOKEN: "token-1"}
    good = {
        identity.HEADER_GATEWAY: "token-1",
        identity.HEADER_USER: "alice",
        identity.HEADER_ROLE: "friend",
    }
    assert identity.page_user(good, True, env) == identity.User("alice", "friend")
    assert identity.page_user({**good, identity.HEADER_GATEWAY: "token-2"}, True, env) is None
    assert identity.page_user({**good, identity.HEADER_USER: "../x"}, True, env) is None
    assert identity.page_user({**good, identity.HEADER_ROLE: "admin"}, True, env) is None
    assert identity.page_user(good, True, {}) is None  # public without a gateway: nobody
    assert identity.page_user({}, False, {}) == identity.User("owner", "owner")  # loopback


def test_forwarded_headers_drop_what_a_client_forges():
    sent = [
        ("Host", "evil"),
        ("X-Photosearch-User", "owner"),
        ("x-photosearch-role", "owner"),
        ("X-Photosearch-Gateway", "guess"),
        ("Cookie", "photosearch_session=abc; _streamlit_xsrf=t"),
        ("Accept", "*/*"),
    ]
    kept = forwarded_headers(
        sent, user="bob", role="friend", token="T", cookie_name="photosearch_session"
    )
    assert ("Cookie", "_streamlit_xsrf=t") in kept and ("Accept", "*/*") in kept
    assert [v for k, v in kept if k.lower() == "x-photosearch-user"] == ["bob"]
    assert [v for k, v in kept if k.lower() == "x-photosearch-role"] == ["friend"]
    assert [v for k, v in kept if k.lower() == "x-photosearch-gateway"] == ["T"]
    assert not [k for k, _ in kept if k.lower() == "host"]
    for target in ("//evil.example/", "https://evil.example/", "/\\evil", "", None):
        assert safe_next(target) == "/"
    assert safe_next("/?embed=true") == "/?embed=true"


# -- the live app --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    pytest.importorskip("streamlit", reason="streamlit is not installed")
    album = shared_album(tmp_path_factory)
    work = tmp_path_factory.mktemp("public-app")
    # One trusted proxy hop: the tests play clients at other addresses through X-Forwarded-For.
    with public_app(
        str(album.album), str(album.index), work, {"PHOTOSEARCH_APP_FORWARDED_HOPS": "1"}
    ) as running:
        yield running


def request(app, method, path, *, headers=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        connection.close()


def test_nothing_answers_before_login(app):
    """The public app answers nobody before login: every route, every method."""
    forged = {"X-Photosearch-User": "owner", "X-Photosearch-Role": "owner"}
    for path in ROUTES:
        for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"):
            for headers in (
                {},
                {"Accept": "text/html"},
                forged,
                {"Cookie": "photosearch_session=x"},
            ):
                status, answer_headers, body = request(app, method, path, headers=headers)
                assert status in (303, 401, 404, 405), (method, path, status)
                if status == 303:
                    assert answer_headers["location"].startswith("/_photosearch/login?next=")
                assert b"streamlit" not in body.lower() and len(body) < 200, (method, path)
    # The sign-in form itself holds nothing of the app.
    status, _, body = request(app, "GET", "/_photosearch/login")
    assert status == 200 and b"streamlit" not in body.lower() and b"<script" not in body


def test_websocket_refused_before_login(app):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    for cookie in (None, "photosearch_session=forged"):
        headers = {"Cookie": cookie} if cookie else {}
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{app.port}/_stcore/stream", additional_headers=headers)
        assert refused.value.response.status_code == 403


def push(app, head: bytes, *, chunked: bool, total: int) -> tuple[bytes, int]:
    """Send a request head, then up to `total` body bytes while the gateway lets us; returns
    the gateway's answer and how many body bytes it took before answering or hanging up."""
    import select

    block = b"\0" * 65536
    if chunked:
        block = b"%x\r\n" % len(block) + block + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", app.port), timeout=30) as raw:
        raw.sendall(head)
        answer = b""
        while sent < total:
            readable, _, _ = select.select([raw], [], [], 0)
            if readable:
                break
            try:
                raw.sendall(block)
            except OSError:
                break
            sent += len(block)
        try:
            raw.settimeout(30)
            answer = raw.recv(4096)
        except OSError:
            pass
    return answer, sent


def test_uploads_are_refused_unread_before_login_and_bounded_after(app):
    upload = b"PUT /_stcore/upload_file/session/file HTTP/1.1\r\nHost: x\r\n"
    form = b"Content-Type: multipart/form-data; boundary=b\r\n"
    # 40 MB before login: refused at once, and the connection is closed: nothing is taken in.
    for chunked in (False, True):
        length = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: 40000000\r\n"
        answer, sent = push(
            app, upload + form + length + b"\r\n", chunked=chunked, total=40_000_000
        )
        assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
        assert sent < 8_000_000  # what the sockets' buffers hold, not 40 MB
    # Signed in: a body over the app's upload limit is refused too.
    cookie = sign_in(app, "alice", FRIENDS["alice"]).encode()
    limit = (launch.MAX_UPLOAD_MB + launch.MULTIPART_OVERHEAD_MB) * 2**20
    for chunked in (False, True):
        length = (
            b"Transfer-Encoding: chunked\r\n"
            if chunked
            else b"Content-Length: %d\r\n" % (limit + 1)
        )
        head = upload + form + b"Cookie: " + cookie + b"\r\n" + length + b"\r\n"
        answer, sent = push(app, head, chunked=chunked, total=limit + 2**20)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert sent < limit + 8_000_000


def test_signed_in_requests_reach_the_app(app):
    cookie = sign_in(app, "bob", FRIENDS["bob"])
    status, _, body = request(app, "GET", "/", headers={"Cookie": cookie})
    assert status == 200 and b"<!doctype html>" in body.lower()
    status, _, body = request(app, "GET", "/_stcore/health", headers={"Cookie": cookie})
    assert (status, body) == (200, b"ok")
    cookie_header = sign_in(app, "owner", OWNER_PASSWORD)
    assert "HttpOnly" not in cookie_header  # the attributes are in Set-Cookie, checked below
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
    connection.request(
        "POST",
        "/_photosearch/login",
        body=f"account=bob&password={FRIENDS['bob']}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    set_cookie = connection.getresponse().getheader("Set-Cookie")
    connection.close()
    assert "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie and "Path=/" in set_cookie


def test_failed_logins_are_slowed_and_logged(app):
    address = "203.0.113.7"

    def attempt(account, password, address=address):
        started = time.monotonic()
        status, headers, _ = request(
            app,
            "POST",
            "/_photosearch/login",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Forwarded-For": address,
            },
            body=f"account={account}&password={password}",
        )
        return status, headers, time.monotonic() - started

    # Per account: three free failures, each answered a second late; then a wait, even for
    # the right password, from anywhere.
    for _ in range(3):
        status, _, took = attempt("alice", "guess")
        assert status == 401 and took >= 1.0
    status, headers, took = attempt("alice", FRIENDS["alice"], address="198.51.100.1")
    assert status == 429 and int(headers["retry-after"]) >= 1 and took < 1.0
    time.sleep(int(headers["retry-after"]))
    assert attempt("alice", FRIENDS["alice"], address="198.51.100.1")[0] == 303

    # Per address: one address guessing many accounts.
    for number in range(2):  # 3 failures above + 2 = the 5 free ones
        assert attempt(f"made-up-{number}", "guess")[0] == 401
    assert attempt("bob", FRIENDS["bob"])[0] == 429

    log = app.log()
    failures = [line for line in log.splitlines() if "login failed" in line]
    assert sum(f"address={address}" in line and "account='alice'" in line for line in failures) == 3
    assert all(" time=20" in line for line in failures)
    assert any("login refused (too many failures)" in line for line in log.splitlines())
    assert "guess" not in log and FRIENDS["alice"] not in log  # no password reaches the log


def test_users_removed_while_running_lose_access(app):
    from photosearch.app.gateway.accounts import UsersFile

    cookie = sign_in(app, "bob", FRIENDS["bob"])
    assert request(app, "GET", "/_stcore/health", headers={"Cookie": cookie})[0] == 200
    assert UsersFile(str(app.users_file)).remove("bob")
    time.sleep(10.5)  # the gateway re-reads the users file every 10 s
    assert request(app, "GET", "/_stcore/health", headers={"Cookie": cookie})[0] == 401
    assert json.loads(Path(app.users_file).read_text())["users"].keys() == {"alice"}


def test_an_unreadable_users_file_fails_closed_but_keeps_the_owner(tmp_path):
    now = [0.0]
    path = tmp_path / "users.json"
    users = UsersFile(str(path))
    users.add("alice", "alice-password-1")
    owner = owner_account(logic.hash_password("owner-pw"), {})
    directory = Directory(owner, users, refresh_seconds=10, clock=lambda: now[0])
    path.write_text("{half a file")  # being replaced, or storage down
    now[0] = 11
    assert directory.get("alice") is None and directory.get("owner") is not None
    path.unlink()
    users.add("alice", "alice-password-2")  # readable again: alice is back at the next refresh
    now[0] = 22
    assert directory.verify("alice", "alice-password-2") is not None
