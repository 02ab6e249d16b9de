"""The People page (Streamlit): everyone in the album as a face, most photos first.

Layout only; everything it does is in app.logic.people_view. A grid of cover faces with names
and photo counts; tick two and merge them; open a person to see their photos in a results grid
like the search's (the viewer, "not me", the zip named after them) and rename them. While the
album is being indexed the page refreshes itself as commits land.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from photosearch.app import viewer
from photosearch.app.logic.library import Library
from photosearch.app.logic.people_view import AlbumPeopleView
from photosearch.app.logic.results import match_caption, page_of, zip_bytes, zip_name
from photosearch.people.corrections import PeopleError

__all__ = ["people_page"]

COLUMNS = 6
PER_PAGE = 24
_OPEN = "people_open"  # session key: the id of the person whose photos are shown


@st.cache_resource(show_spinner=False)
def people_view(_library: Library, index_location: str) -> AlbumPeopleView:
    return AlbumPeopleView(_library)


def people_page(library: Library) -> None:
    view = people_view(library, library.index_location)
    st.title("People")

    @st.fragment(run_every=2.0 if library.indexing.running else None)
    def body() -> None:
        if library.searchable() is None:
            st.info("Index the album first (left panel): people appear as photos are indexed.")
            return
        if view.problem:
            st.warning(view.problem)
        person = st.session_state.get(_OPEN)
        if person is not None:
            person_photos(view, library, int(person))
        else:
            grid(view, library)

    body()


def grid(view: AlbumPeopleView, library: Library) -> None:
    cards = view.cards()
    if library.indexing.running:
        st.caption("Indexing: people update as photos are indexed.")
    if not cards:
        st.caption("Nobody yet: a person needs at least 3 photos.")
        return
    chosen = [card.summary.id for card in cards if st.session_state.get(f"pick-{card.summary.id}")]
    info, merge = st.columns([4, 1], vertical_alignment="center")
    info.caption(
        f"{len(cards)} {'person' if len(cards) == 1 else 'people'}, most photos first. Tick "
        "two to merge them; open one to see their photos, rename them or remove a face."
    )
    if merge.button("Merge the two ticked", disabled=len(chosen) != 2, key="merge"):
        try:
            view.merge(chosen[0], chosen[1])
        except PeopleError as error:
            st.error(str(error))
        else:
            for pid in chosen:
                st.session_state.pop(f"pick-{pid}", None)
            st.toast("Merged.")
            st.rerun()
    for start in range(0, len(cards), COLUMNS):
        columns = st.columns(COLUMNS)
        for column, card in zip(columns, cards[start : start + COLUMNS], strict=False):
            pid = card.summary.id
            with column.container(border=True, key=f"person-{pid}"):
                if card.cover:
                    st.image(card.cover, width="stretch")
                st.markdown(f"**{card.summary.label}**")
                st.caption(card.caption.split(" · ")[1])
                st.checkbox("Tick to merge", key=f"pick-{pid}")
                if st.button("Open", key=f"open-{pid}", width="stretch"):
                    st.session_state[_OPEN] = pid
                    st.rerun()


def person_photos(view: AlbumPeopleView, library: Library, pid: int) -> None:
    found = view.current()
    summary = next((s for s in found.summaries() if s.id == pid), None) if found else None
    if st.button("‹ All people", key="people-back"):
        st.session_state.pop(_OPEN, None)
        st.rerun()
    if summary is None:
        st.info("This person is no longer in the album.")
        return
    st.subheader(f"{summary.label} · {summary.photos} photos grouped")
    name_column, rename_column = st.columns([3, 1], vertical_alignment="bottom")
    name = name_column.text_input("Name", value=summary.name or "", key=f"name-{pid}")
    # Never disabled: a button that waits for Enter in the field looks broken.
    if rename_column.button("Save name", key=f"rename-{pid}"):
        try:
            view.rename(pid, name)
        except PeopleError as error:
            st.error(str(error))
        else:
            st.toast(f"Saved: {name.strip() or 'no name'}.")
            st.rerun()
    matches = view.matches(pid)
    st.markdown(f"#### {len(matches)} photo{'s' if len(matches) != 1 else ''} of {summary.label}")
    st.download_button(
        f"Download all ({len(matches)})",
        data=lambda: zip_bytes(library.album, matches),
        file_name=zip_name(summary.label),
        mime="application/zip",
        on_click="ignore",
        key="people-download",
        icon=":material/download:",
    )
    page = page_of(matches, st.session_state.get("people_page", 1), per_page=PER_PAGE)
    shown = page.matches
    for start in range(0, len(shown), 4):
        columns = st.columns(4)
        for offset, (column, match) in enumerate(
            zip(columns, shown[start : start + 4], strict=False)
        ):
            key = hashlib.blake2b(f"{match.photo}\0{match.face_index}".encode(), digest_size=6)
            with column.container(border=True, key=f"person-match-{key.hexdigest()}"):
                thumbnail = library.thumbnails.get(match)
                if isinstance(thumbnail, bytes):
                    st.image(thumbnail, caption=match_caption(match), width="stretch")
                else:
                    st.warning(f"{match.photo}: {thumbnail}")
                left, right = st.columns(2)
                with left:
                    viewer.open_button(
                        matches, page.first - 1 + start + offset, library.album, key.hexdigest()
                    )
                if right.button("Not me", key=f"person-not-me-{key.hexdigest()}"):
                    view.not_this_person(pid, (match.photo, match.face_index))
                    st.toast(f"{match.photo}: not {summary.label} (for good).")
                    st.rerun()
    if page.pages > 1:
        st.pagination(page.pages, key="people_page")
