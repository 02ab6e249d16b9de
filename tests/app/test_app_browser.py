"""End to end: `streamlit run` on 127.0.0.1, driven in Debian's Chromium through Playwright.

The app is started with the command line `photosearch app` builds, on a real indexed album.
A user uploads a reference photo, sees the photos the labels say show that person, switches to
a fixed face distance and makes it stricter, marks one result "not me", downloads the zip, tries
a text file, and picks a face in a group photo. Screenshots of each state land in
test-artifacts/app/.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from app_album import (
    OBAMA_REFERENCE,
    PHOTOS,
    TWO_FACES_REFERENCE,
    album_keys_showing,
    shared_album,
)
from conftest import REPO_ROOT

from photosearch.app import launch

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "app"
VIEWPORT = {"width": 1400, "height": 1000}
STEP_TIMEOUT_MS = 90_000  # one user step, model loading included, on a busy 2-core machine

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sync_api():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    return shared_album(tmp_path_factory)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(sync_api, album, tmp_path_factory):
    pytest.importorskip("streamlit", reason="streamlit is not installed")
    work = tmp_path_factory.mktemp("app-server")
    port = free_port()
    environment = launch.app_environment(str(album.album), str(album.index), False, None)
    environment["PHOTOSEARCH_DATA_DIR"] = str(work / "data")
    command = launch.streamlit_command("127.0.0.1", port, headless=True)
    log_path = work / "streamlit.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command, env=environment, cwd=work, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def page(sync_api, app_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
            tab = context.new_page()
            tab.set_default_timeout(STEP_TIMEOUT_MS)
            tab.goto(app_url)
            yield tab
        finally:
            browser.close()


def settle(page) -> None:
    """Wait until the app has finished its rerun (Streamlit paints text before widgets)."""
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached")
    page.wait_for_timeout(200)


def screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the window to fit."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(
        "Math.max(document.querySelector('[data-testid=stMain]')?.scrollHeight || 0,"
        " window.innerHeight)"
    )
    page.set_viewport_size({"width": VIEWPORT["width"], "height": min(int(height) + 40, 4000)})
    settle(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size(VIEWPORT)


def results(page) -> list[tuple[str, float]]:
    """(album key, distance) of the result grid, in display order."""
    shown = []
    for caption in page.locator("[data-testid=stImageCaption]").all_inner_texts():
        if " · distance " in caption:
            photo, distance = caption.rsplit(" · distance ", 1)
            shown.append((photo.strip(), float(distance)))
    return shown


def wait_for_count(page, count: int) -> None:
    headline = "1 photo found" if count == 1 else f"{count} photos found"
    page.get_by_role("heading", name=headline).wait_for()
    settle(page)
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=stImageCaption]')]"
        ".filter(e => e.innerText.includes(' · distance ')).length === n",
        arg=count,
    )


def upload(page, *files) -> None:
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(list(files))


def test_find_yourself_in_the_browser(page, album, tmp_path):
    page.get_by_text("Who are you looking for?").wait_for()
    settle(page)
    assert page.get_by_test_id("stMetricValue").first.inner_text() == str(
        sum(1 for p in album.album.rglob("*") if p.is_file())
    )
    screenshot(page, "01-start")

    # 1. Upload a reference photo: exactly the photos labelled with that person appear.
    upload(page, PHOTOS / OBAMA_REFERENCE)
    expected = album_keys_showing("Barack_Obama")
    wait_for_count(page, len(expected))
    found = results(page)
    assert {photo for photo, _ in found} == expected  # the automatic (adaptive) search
    page.get_by_text("The usual setting").wait_for()
    screenshot(page, "02-matches")

    # A fixed face distance instead (dlib's 0.6): the same photos, nearest first.
    page.get_by_text("Fixed face distance").click()
    page.get_by_text("Match threshold").wait_for()
    wait_for_count(page, len(expected))
    found = results(page)
    assert {photo for photo, _ in found} == expected
    assert [d for _, d in found] == sorted(d for _, d in found)  # best first

    # 2. Stricter threshold (keyboard on the slider): only the matches under it stay.
    cut = round((found[1][1] + found[2][1]) / 2, 2)
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(round((0.60 - cut) * 100)):
        page.keyboard.press("ArrowLeft")
    page.get_by_test_id("stSliderThumbValue").filter(has_text=f"{cut:.2f}").wait_for()
    wait_for_count(page, 2)
    assert results(page) == found[:2]
    page.get_by_text("Stricter than usual").wait_for()
    screenshot(page, "03-stricter")
    slider.focus()
    for _ in range(round((0.60 - cut) * 100)):
        page.keyboard.press("ArrowRight")
    wait_for_count(page, len(found))

    # 3. "Not me" on the weakest match: it disappears.
    weakest = found[-1][0]
    card = page.locator("[class*='st-key-match-']").filter(has_text=f"{weakest} · distance")
    card.get_by_role("button", name="Not me").click()
    wait_for_count(page, len(found) - 1)
    remaining = [photo for photo, _ in results(page)]
    assert remaining == [photo for photo, _ in found[:-1]]
    screenshot(page, "04-not-me")

    # 4. Download everything shown: a zip of exactly those photos, byte for byte.
    with page.expect_download() as download_info:
        page.get_by_role("button", name=re.compile(r"Download all \(\d+\)")).click()
    download = download_info.value
    assert download.suggested_filename.endswith(".zip")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with zipfile.ZipFile(saved) as archive:
        assert sorted(archive.namelist()) == sorted(remaining)
        for photo in remaining:
            assert archive.read(photo) == (album.album / photo).read_bytes()

    # 5. A text file as a reference: a clear error, and the search goes on with the photo.
    upload(page, {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"milk, eggs\n"})
    error = page.get_by_test_id("stAlertContentError")
    error.wait_for()
    settle(page)
    assert "“notes.txt” can't be used: not an image" in error.inner_text()
    screenshot(page, "05-not-a-photo")

    # 6. A group photo as a second reference: pick which face is the person.
    upload(page, PHOTOS / TWO_FACES_REFERENCE)
    page.get_by_text("shows 2 people").wait_for()
    settle(page)
    screenshot(page, "06-choose-face")
    # Biden is face 2 (faces are counted left to right); the largest face is chosen first, and
    # both are about as large, so which one that is depends on the detector's boxes.
    if page.get_by_role("button", name="Face 2", exact=True).count():
        page.get_by_role("button", name="Face 2", exact=True).click()
    biden = album_keys_showing("Joe_Biden")
    both = set(remaining) | biden
    wait_for_count(page, len(both))
    assert {photo for photo, _ in results(page)} == both
    page.get_by_role("button", name=re.compile(r"^✓ Face \d+$")).wait_for()
    screenshot(page, "07-two-people")
