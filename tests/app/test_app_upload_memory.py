"""Uploads stay in memory: Starlette's form parser (which Streamlit's upload route uses) must
not spool a reference photo to a temporary file once `keep_uploads_in_memory` has run."""

from __future__ import annotations

import asyncio
import os

from starlette.formparsers import MultiPartParser
from starlette.requests import Request

from photosearch.app.launch import MAX_UPLOAD_MB, MULTIPART_OVERHEAD_MB
from photosearch.app.streamlit_main import keep_uploads_in_memory

BOUNDARY = "photosearchboundary"


def _files_open() -> set[str]:
    """Regular files this process holds open (a spooled upload is an unlinked temp file)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            found.add(target)
    return found


def _parse_upload(size: int) -> tuple[int, set[str]]:
    """Parse one multipart upload of `size` bytes as Streamlit's upload route does
    (starlette_routes.py: `await request.form()`); returns the bytes read back and the
    regular files opened while the form was alive."""
    payload = os.urandom(size)
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="me.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    async def receive():
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {
        "type": "http",
        "method": "PUT",
        "path": "/_stcore/upload_file/x/y",
        "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
    }

    async def run() -> tuple[int, set[str]]:
        before = _files_open()
        async with Request(scope, receive).form() as form:
            upload = form["file"]
            data = await upload.read()
            opened = _files_open() - before
        assert data == payload
        return len(data), opened

    return asyncio.run(run())


def test_a_large_upload_is_parsed_without_a_temporary_file(monkeypatch):
    monkeypatch.setattr(MultiPartParser, "spool_max_size", MultiPartParser.spool_max_size)
    keep_uploads_in_memory((MAX_UPLOAD_MB + MULTIPART_OVERHEAD_MB) * 2**20)
    size, opened = _parse_upload(20 * 2**20)  # a 20 MB photo, under the 25 MB limit
    assert size == 20 * 2**20
    assert opened == set()


def test_without_the_setting_starlette_spools_it_to_disk(monkeypatch):
    # The check above can fail: Starlette's own default spools anything over 1 MB.
    monkeypatch.setattr(MultiPartParser, "spool_max_size", 2**20)
    _, opened = _parse_upload(4 * 2**20)
    assert len(opened) == 1
