"""End to end in Chromium: the People page and the photo viewer, on a copy of the real album.

The user saves a searched person (the Save button needs no Enter), opens People, sees Barack
Obama's face first (the labels say he is in 4 photos; the other people of the album have fewer
than 3), names him without pressing Enter, opens his photos, steps through them in the viewer
(the full photo, not the thumbnail), says one is "not me", and downloads the zip named after
him. Screenshots land in test-artifacts/app/.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
import zipfile

import pytest
from app_album import OBAMA_REFERENCE, PHOTOS, album_keys_showing, shared_album
from test_app_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    STEP_TIMEOUT_MS,
    VIEWPORT,
    free_port,
    results,
    screenshot,
    settle,
)

from photosearch.app import launch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sync_api():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def app_url(sync_api, tmp_path_factory):
    pytest.importorskip("streamlit", reason="streamlit is not installed")
    work = tmp_path_factory.mktemp("people-server")
    album = shared_album(tmp_path_factory).copy_to(work)  # the page writes people.json
    port = free_port()
    environment = launch.app_environment(str(album.album), str(album.index), False, None)
    environment["PHOTOSEARCH_DATA_DIR"] = str(work / "data")
    log_path = work / "streamlit.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            launch.streamlit_command("127.0.0.1", port, headless=True),
            env=environment,
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
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


def test_people_page_and_viewer_in_the_browser(sync_api, app_url, tmp_path):
    obama = album_keys_showing("Barack_Obama")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=VIEWPORT, accept_downloads=True).new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(app_url)
            page.get_by_text("Who are you looking for?").wait_for()
            settle(page)

            # 0. Saving a searched person: the Save button works without Enter in the name.
            page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(
                [PHOTOS / OBAMA_REFERENCE]
            )
            page.get_by_role("heading", name=f"{len(obama)} photos found").wait_for()
            settle(page)
            page.get_by_role("button", name=re.compile("Save this person")).click()
            page.get_by_label("Name").fill("Barack")
            page.get_by_role("button", name="Save", exact=True).click()
            settle(page)
            page.screenshot(path=str(screenshot_path("people-00-saved")))
            page.get_by_test_id("stSidebar").get_by_text("Barack", exact=True).wait_for()

            # 1. The People page: one card per person, most photos first.
            page.get_by_text("People", exact=True).click()
            page.get_by_role("heading", name="People", exact=True).wait_for()
            settle(page)
            page.screenshot(path=str(screenshot_path("people-00-opened")))
            page.get_by_text(f"{len(obama)} photos", exact=True).first.wait_for()
            settle(page)
            cards = page.locator("[class*=st-key-person-]")
            assert cards.count() == 1
            screenshot(page, "people-01-grid")

            # 2. Open him; name him without pressing Enter (the button is enabled).
            page.get_by_role("button", name="Open").first.click()
            page.get_by_role("heading", name=re.compile(r"photos of Person \d+")).wait_for()
            settle(page)
            assert {photo for photo, _ in results(page)} == obama
            page.get_by_label("Name").fill("Barack Obama")
            page.get_by_role("button", name="Save name").click()
            page.get_by_role("heading", name=re.compile(r"^Barack Obama · ")).wait_for()
            settle(page)
            screenshot(page, "people-02-person")

            # 3. The viewer: the photo at screen size, next / previous through the results.
            page.get_by_role("button", name="View").first.click()
            dialog = page.get_by_role("dialog")
            dialog.get_by_text(f"1 of {len(obama)}").wait_for()
            settle(page)
            widths = dialog.locator("img").evaluate_all("els => els.map(e => e.naturalWidth)")
            assert max(widths) > 480  # not the result thumbnail blown up
            page.screenshot(path=str(screenshot_path("people-03-viewer")))
            dialog.get_by_role("button", name="Next ›").click()
            dialog.get_by_text(f"2 of {len(obama)}").wait_for()
            settle(page)
            dialog.get_by_role("button", name="‹ Previous").click()
            # Each click reruns the dialog: wait for it, or a loaded machine loses the 2nd click.
            dialog.get_by_text(f"1 of {len(obama)}").wait_for()
            settle(page)
            dialog.get_by_role("button", name="‹ Previous").click()
            dialog.get_by_text(f"{len(obama)} of {len(obama)}").wait_for()
            page.keyboard.press("Escape")
            dialog.wait_for(state="detached")
            settle(page)

            # 4. The zip is named after him.
            with page.expect_download() as download:
                page.get_by_role("button", name=re.compile(r"Download all")).click()
            assert download.value.suggested_filename == "photos-of-Barack-Obama.zip"
            target = tmp_path / "people.zip"
            download.value.save_as(target)
            with zipfile.ZipFile(target) as archive:
                assert set(archive.namelist()) == obama

            # 5. "Not me" on one photo: it leaves his photos for good.
            first = results(page)[0][0]
            page.get_by_role("button", name="Not me").first.click()
            page.get_by_role("heading", name=f"{len(obama) - 1} photos of Barack Obama").wait_for()
            settle(page)
            assert first not in {photo for photo, _ in results(page)}
            screenshot(page, "people-04-not-me")
        finally:
            browser.close()


def screenshot_path(name: str):
    from test_app_browser import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
