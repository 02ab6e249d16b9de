"""The photo viewer (Streamlit): a result opens at screen size, its face boxed and zoomed.

A dialog over the results: the full-resolution photo downscaled to the screen (not the 480 px
thumbnail blown up), the matched face boxed, a zoomed crop of the face beside it, and previous
/ next through the same results (wrapping round). The images come from app.logic.viewer.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from photosearch.app.logic import viewer as logic_viewer
from photosearch.index.album import Album
from photosearch.search.match import Match

__all__ = ["open_button", "show_viewer"]

_STATE = "viewer"  # session key: (results key, position) of the open photo


def open_button(matches: Sequence[Match], position: int, album: Album, key: str) -> None:
    """A "View" button under a result that opens the viewer on it."""
    if st.button("View", key=f"view-{key}", icon=":material/open_in_full:"):
        st.session_state[_STATE] = position
        show_viewer(list(matches), album)


@st.dialog("Photo", width="large")
def show_viewer(matches: list[Match], album: Album) -> None:
    if not matches:
        st.caption("No photo to show.")
        return
    position = min(int(st.session_state.get(_STATE, 0)), len(matches) - 1)
    back, where, forward = st.columns([1, 4, 1], vertical_alignment="center")
    if back.button("‹ Previous", key="viewer-previous", width="stretch"):
        position = logic_viewer.step(position, len(matches), -1)
    if forward.button("Next ›", key="viewer-next", width="stretch"):
        position = logic_viewer.step(position, len(matches), +1)
    st.session_state[_STATE] = position
    match = matches[position]
    where.markdown(f"**{position + 1} of {len(matches)}** · `{match.photo}`")
    images = logic_viewer.safe_view_of(album, match)
    if isinstance(images, str):
        st.warning(f"{match.photo}: {images}")
        return
    photo, face = st.columns([4, 1])
    photo.image(images.photo, width="stretch")
    face.image(images.face, caption="The matched face", width="stretch")
    face.caption(
        f"{images.width} × {images.height} px · face {match.face_index + 1} · "
        f"distance {match.distance:.2f}"
    )
