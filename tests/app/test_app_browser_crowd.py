"""Browser test: pick the person in a group reference by clicking their face in the photo."""

from __future__ import annotations

import pytest
from app_album import PHOTOS, TWO_FACES_REFERENCE, album_keys_showing
from test_app_browser import (  # noqa: F401  (fixtures: the same Chromium and app server)
    album,
    app_url,
    page,
    results,
    screenshot,
    settle,
    sync_api,
    upload,
    wait_for_count,
)

from photosearch.app import logic

pytestmark = pytest.mark.slow


def test_click_a_face_in_a_group_photo(page):  # noqa: F811  (the imported fixture)
    reference = logic.ReferenceReader().read((PHOTOS / TWO_FACES_REFERENCE).read_bytes(), "two")
    other = 1 - reference.chosen  # the face that is not the largest: not searched at first
    page.get_by_text("Who are you looking for?").wait_for()
    settle(page)
    upload(page, PHOTOS / TWO_FACES_REFERENCE)
    page.get_by_text("shows 2 people").wait_for()
    page.get_by_text(f"Searching for face {reference.chosen + 1} of 2.").wait_for()
    settle(page)
    obama, biden = album_keys_showing("Barack_Obama"), album_keys_showing("Joe_Biden")
    first = {photo for photo, _ in results(page)}
    assert first in (obama, biden)

    # Click the centre of the other face, mapped from photo pixels to the displayed picture.
    picture = page.frame_locator("iframe[title*=streamlit_image_coordinates]").locator("img")
    picture.wait_for()
    shown = picture.bounding_box()
    left, top, right, bottom = reference.boxes[other]
    width, height = reference.photo_size
    picture.click(
        position={
            "x": (left + right) / 2 * shown["width"] / width,
            "y": (top + bottom) / 2 * shown["height"] / height,
        }
    )
    page.get_by_text(f"Searching for face {other + 1} of 2.").wait_for()
    page.get_by_role("button", name=f"✓ Face {other + 1}").wait_for()
    then = biden if first == obama else obama  # the other person's photos, exactly
    wait_for_count(page, len(then))
    assert {photo for photo, _ in results(page)} == then
    screenshot(page, "crowd-click")
