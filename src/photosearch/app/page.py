"""The Streamlit page: layout and widgets only; every decision is in photosearch.app.logic.

Run through `photosearch app` (which sets the options below as environment variables), or
`streamlit run src/photosearch/app/page.py` with PHOTOSEARCH_APP_ALBUM set.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import streamlit as st

from photosearch.app import logic, viewer
from photosearch.index.album import AlbumError
from photosearch.index.store import IndexStoreError

st.set_page_config(page_title="Photosearch", page_icon=":material/photo_library:", layout="wide")

GRID_COLUMNS = 4
FACE_CHOICES_PER_ROW = 8
MAX_ERRORS_SHOWN = 200
PAGES = ("Find someone", "People")


@st.cache_resource(show_spinner=False)
def get_library(album: str, index: str | None) -> logic.Library:
    return logic.Library(album, index)


@st.cache_resource(show_spinner=False)
def get_reader() -> logic.ReferenceReader:
    return logic.ReferenceReader()


@st.cache_resource(show_spinner=False)
def get_endpoint_search(endpoint: str, model_id: str | None) -> logic.EndpointSearch:
    return logic.EndpointSearch(endpoint, model_id)


@st.cache_resource(show_spinner=False)
def get_people(location: str, legacy: str | None) -> logic.PeopleStore:
    store = logic.PeopleStore(location)
    if legacy:  # people saved before accounts existed belong to the owner
        logic.adopt_legacy_people(Path(legacy), store)
    return store


def read_config() -> logic.AppConfig:
    try:
        secrets = st.secrets
        secrets.to_dict()  # raises when no secrets file exists
    except Exception:
        secrets = None
    return logic.AppConfig.from_environment(secrets=secrets)


def signed_in_user(config: logic.AppConfig) -> logic.User:
    """Who uses this session; stops the page when nobody is vouched for.

    On the network the gateway (photosearch.app.gateway) signs users in before anything of the
    app answers, and tells the page who they are; on loopback, the user is this computer's
    owner.
    """
    public = config.login_required(st.get_option("server.address"))
    user = logic.page_user(st.context.headers, public)
    if user is None:
        st.error(
            "This app is reachable from the network, so it shows photos only to people who "
            "signed in through its gateway. Start it with `photosearch app --public`."
        )
        st.stop()
    return user


def choose_album(config: logic.AppConfig) -> tuple[str | None, str | None]:
    """The album (and index) in use: picked in the app, or given at start."""
    if "album" in st.session_state:
        return st.session_state["album"], None
    if config.album:
        return config.album, config.index
    if config.index:
        return logic.album_of_index(config.index), config.index
    return None, None


def album_picker(public: bool) -> None:
    known = [album for album, _ in logic.known_albums()]
    with st.form("pick-album", border=False):
        if known:
            chosen = st.selectbox("Albums indexed on this computer", known, index=None)
        else:
            chosen = None
        typed = st.text_input(
            "Album folder", placeholder="/home/me/Pictures or s3://bucket/photos", key="album_path"
        )
        opened = st.form_submit_button("Open album", disabled=public)
    if opened:
        location = typed.strip() or chosen
        if not location:
            st.warning("Type a folder, or pick an album.")
        elif "://" not in location and not Path(location).expanduser().is_dir():
            st.error(f"Folder not found: {location}")
        else:
            st.session_state["album"] = location
            st.session_state.pop("pick_album", None)
            st.session_state.pop("search", None)
            st.rerun()


def album_panel(
    library: logic.Library,
    status: logic.AlbumStatus,
    public: bool,
    user: logic.User,
    can_index: bool = True,
) -> None:
    st.sidebar.header("Album")
    st.sidebar.code(status.album, language=None, wrap_lines=True)
    if status.indexed:
        photos, faces = st.sidebar.columns(2)
        photos.metric("Photos", f"{status.photos:,}")
        faces.metric("Faces", f"{status.faces:,}")
        st.sidebar.caption(f"Last indexed {status.updated.replace('T', ' ').rstrip('Z')} UTC")
        if status.errors:
            unreadable = len(status.errors)
            with st.sidebar.expander(
                f"{unreadable} file{'s' if unreadable != 1 else ''} could not be read",
                icon=":material/warning:",
            ):
                for photo, reason in status.errors[:MAX_ERRORS_SHOWN]:
                    st.markdown(f"**{photo}**  \n{reason}")
                if unreadable > MAX_ERRORS_SHOWN:
                    st.caption(f"…and {unreadable - MAX_ERRORS_SHOWN} more: `photosearch info`.")
    else:
        st.sidebar.info("This album is not indexed yet.")
    if user.is_owner and can_index:  # friends search; only the owner indexes (here or on AWS)
        indexing_panel(library, first_time=not status.indexed)
    elif user.is_owner:
        st.sidebar.caption(
            "Searching through the endpoint: index new photos on AWS with "
            f"`photosearch aws index {status.album} --index {status.index}`."
        )
    with st.sidebar.expander("Details"):
        st.caption(f"Index: `{status.index}`")
        if status.model_id:
            st.caption(f"Face models: `{status.model_id}`")
        if not public and st.button("Open another album"):
            st.session_state.pop("album", None)
            st.session_state["pick_album"] = True
            st.rerun()


def indexing_panel(library: logic.Library, first_time: bool) -> None:
    running = library.indexing.running

    @st.fragment(run_every=1.0 if running else None)
    def panel() -> None:
        progress = library.indexing.progress()
        if progress.state == logic.RUNNING:
            st.session_state["was_indexing"] = True
            st.progress(progress.fraction, text=progress.label())
            st.caption("You can search the photos indexed so far meanwhile.")
            if shown_generation(library) != st.session_state.get("shown_generation"):
                st.rerun()  # a commit landed: the counts and the results take it in
            return
        if st.session_state.pop("was_indexing", False):
            st.rerun()  # refresh the counts and the results with the new photos
        label = "Index the album" if first_time else "Index new photos"
        if st.button(label, type="primary" if first_time else "secondary", width="stretch"):
            library.indexing.start()
            st.session_state["was_indexing"] = True
            st.rerun()
        if progress.state == logic.DONE:
            st.success(progress.message)
        elif progress.state == logic.FAILED:
            st.error(progress.message)

    with st.sidebar:
        panel()


def shown_generation(library: logic.Library) -> int | None:
    current = library.searchable()
    return current.generation if current is not None else None


def people_panel(session: logic.SearchSession, people: logic.PeopleStore) -> None:
    saved = people.list()
    st.sidebar.header("Saved people")
    if not saved:
        st.sidebar.caption("Nobody saved. Uploaded photos are not kept unless you save the person.")
    for person in saved:
        face, name = st.sidebar.columns([1, 3], vertical_alignment="center")
        if person.face:
            face.image(person.face, width=48)
        active = session.person_id == person.id
        name.markdown(f"**{person.name}**" + (" · searching" if active else ""))
        search, forget = st.sidebar.columns(2)
        search.button(
            "Search",
            key=f"use-{person.id}",
            disabled=active,
            on_click=session.use_person,
            args=(person.id,),
            width="stretch",
        )
        with forget.popover("Forget", width="stretch"):
            st.caption(f"Delete what is saved about {person.name}: face descriptors and “not me”.")
            if st.button("Forget for good", key=f"forget-{person.id}", type="primary"):
                people.forget(person.id)
                if active:
                    session.use_person(None)
                st.toast(f"Forgot {person.name}: their descriptors and exclusions are deleted.")
                st.rerun()


def references_section(
    session: logic.SearchSession, people: logic.PeopleStore, reader: logic.ReferenceReader
) -> None:
    st.subheader("1 · Who are you looking for?")
    person = session.person(people)
    if person is not None:
        info, stop = st.columns([4, 1], vertical_alignment="center")
        info.info(f"Searching for **{person.name}** (saved). Add photos below to improve it.")
        stop.button("Stop", on_click=session.use_person, args=(None,), key="stop-person")
    files = st.file_uploader(
        "Upload one or more clear photos of the person (JPEG, PNG, WEBP or HEIC)",
        accept_multiple_files=True,
        key="references",
        help="Photos are only read in memory to find the face; they are not stored.",
    )
    with st.spinner("Looking for faces…"):
        session.sync_uploads(files or [], reader)
    for error in session.upload_errors:
        st.error(error, icon=":material/block:")
    single = [ref.face_thumbnails[0] for _, ref in session.references if ref.face_count == 1]
    if single:
        st.caption("Searching for this face" if len(single) == 1 else "Searching for these faces")
        st.image(single, width=96)
    for upload_id, reference in session.references:
        if reference.face_count == 1:
            continue
        st.markdown(
            f"**{reference.name}** shows {reference.face_count} people. Which one are you "
            "looking for? Click the face in the photo, or use the numbered buttons below it."
        )
        st.caption(f"Searching for face {reference.chosen + 1} of {reference.face_count}.")
        face_picker(upload_id, reference, session)
        for number, thumbnail in enumerate(reference.face_thumbnails):
            if number % FACE_CHOICES_PER_ROW == 0:  # narrow columns: faces side by side
                columns = st.columns(FACE_CHOICES_PER_ROW)
            column = columns[number % FACE_CHOICES_PER_ROW]
            column.image(thumbnail, width=96)
            chosen = number == reference.chosen
            column.button(  # a label per face: "Face 3", not eight "This one" buttons
                f"✓ Face {number + 1}" if chosen else f"Face {number + 1}",
                key=f"face-{upload_id}-{number}",
                type="primary" if chosen else "secondary",
                on_click=session.choose_face,
                args=(upload_id, number),
            )


def face_picker(upload_id: str, reference: logic.Reference, session: logic.SearchSession) -> None:
    """The crowd photo, every face boxed and numbered; a click on a face picks it."""
    if reference.picture is None or reference.photo_size is None:
        return
    from PIL import Image
    from streamlit_image_coordinates import streamlit_image_coordinates

    key = f"picker-{upload_id}"
    click = streamlit_image_coordinates(
        Image.open(io.BytesIO(reference.picture)), key=key, use_column_width="always"
    )
    # The component keeps returning its last click on every rerun: act on a new one only.
    if not click or st.session_state.get(f"{key}-seen") == click.get("unix_time"):
        return
    st.session_state[f"{key}-seen"] = click.get("unix_time")
    point = logic.click_to_photo(click, reference.photo_size)
    face = None if point is None else logic.face_at(point, reference.boxes)
    if face is None:
        st.toast("No face there: click on a face, or use the numbered buttons.")
    elif face != reference.chosen:
        session.choose_face(upload_id, face)
        st.rerun()


def results_section(
    session: logic.SearchSession,
    library: logic.Library,
    people: logic.PeopleStore,
    reader: logic.ReferenceReader,
    public: bool,
) -> None:
    st.subheader("2 · Their photos")
    mode = st.radio(
        "How faces are matched",
        logic.MATCH_MODES,
        horizontal=True,
        key="match_mode",
        help="Automatic compares each face with the album's other people, which stays precise "
        "in big albums. A fixed face distance returns every face closer than it, like the "
        "face_recognition library's tolerance.",
    )
    session.automatic = mode == logic.MATCH_AUTOMATIC
    if session.automatic:
        default = logic.default_strictness(library.searchable())
        strictness = st.slider(
            "Strictness: move right to be stricter, left to be looser",
            min_value=logic.STRICTNESS_MIN,
            max_value=logic.STRICTNESS_MAX,
            value=default,
            step=logic.STRICTNESS_STEP,
            format="%.2f",
            key="strictness",
        )
        # At the (rounded) default, the exact calibrated margin: the CLI's default results.
        session.strictness = None if strictness == default else strictness
        st.caption(logic.strictness_words(strictness, default))
    else:
        session.threshold = st.slider(
            "Match threshold: move left to be stricter, right to be looser",
            min_value=logic.THRESHOLD_MIN,
            max_value=logic.THRESHOLD_MAX,
            value=logic.DEFAULT_THRESHOLD,
            step=logic.THRESHOLD_STEP,
            format="%.2f",
            key="threshold",
        )
        st.caption(logic.threshold_words(session.threshold))
    remote = reader if isinstance(reader, logic.EndpointSearch) else None
    try:
        matches = session.matches(library, people, remote)
    except Exception as error:  # the endpoint: throttled, stopped, unreachable (one line)
        if remote is None:
            raise
        st.error(f"The search service did not answer: {error}")
        return
    album = library.album.location
    hidden_section(session, people, album)
    if library.searchable() is None:
        st.info("Index the album first (left panel): then its photos can be searched.")
        return
    if not matches:
        st.markdown("#### No photos found")
        st.caption("Try a looser setting, or another photo of the person.")
        return
    count = len(matches)
    st.markdown(f"#### {count} photo{'s' if count != 1 else ''} found")
    actions = st.columns([1, 1, 1, 2])
    person = session.person(people)
    actions[0].download_button(
        f"Download all ({count})",
        data=lambda: logic.zip_bytes(library.album, matches),  # made on click
        file_name=logic.zip_name(person.name if person else None),
        mime="application/zip",
        on_click="ignore",
        key="download",
        icon=":material/download:",
    )
    if not public:
        with actions[1].popover("Copy to a folder", icon=":material/folder_copy:"):
            folder = st.text_input(
                "Folder on this computer", key="copy_folder", help="Relative to your home folder"
            )
            if st.button(f"Copy {count} photos", key="copy", disabled=not folder.strip()):
                report = logic.copy_to_folder(library.album, matches, folder)
                if isinstance(report, str):
                    st.error(report)
                else:
                    already = report.already_there
                    st.success(
                        f"Copied {report.copied} to {report.destination}"
                        + (f" ({already} already there)" if already else "")
                    )
                    for line in report.failed:
                        st.error(line)
    with actions[2].popover(
        "Save this person" if person is None else "Update person", icon=":material/person_add:"
    ):
        name = st.text_input("Name", value=person.name if person else "", key="person_name")
        st.caption("Saves the face descriptors and your “not me” choices, not the photos.")
        # Never disabled: the name only reaches the page on Enter or when the field loses focus.
        if st.button("Save", key="save_person"):
            if not name.strip():
                st.warning("Type a name first.")
            else:
                saved = session.save_person(name, people, album, reader.model_id)
                st.toast(f"Saved {saved.name}.")
                st.rerun()

    page = logic.page_of(matches, st.session_state.get("page", 1), per_page=logic.PER_PAGE)
    if st.session_state.get("page", 1) != page.number:
        st.session_state["page"] = page.number
    if page.pages > 1:
        st.caption(f"Showing {page.first}–{page.last} of {page.total}, best matches first")
    for start in range(0, len(page.matches), GRID_COLUMNS):
        columns = st.columns(GRID_COLUMNS)
        for column, match in zip(columns, page.matches[start : start + GRID_COLUMNS], strict=False):
            with column.container(border=True, key=f"match-{match_key(match)}"):
                thumbnail = library.thumbnails.get(match)
                if isinstance(thumbnail, bytes):
                    st.image(thumbnail, caption=logic.match_caption(match), width="stretch")
                else:
                    st.warning(f"{match.photo}: {thumbnail}")
                position = page.first - 1 + page.matches.index(match)
                viewer.open_button(matches, position, library.album, match_key(match))
                st.button(
                    "Not me",
                    key=f"not-me-{match_key(match)}",
                    on_click=mark_not_me,
                    args=(session, match, people, album),
                    help="Hide this photo from this person's results",
                )
    if page.pages > 1:
        st.pagination(page.pages, key="page")


def hidden_section(session: logic.SearchSession, people: logic.PeopleStore, album: str) -> None:
    """The photos marked "not me" for this search, each with an undo."""
    hidden = session.hidden(people, album)
    if not hidden:
        return
    with st.expander(f"Hidden as “not me” ({len(hidden)})", icon=":material/visibility_off:"):
        for photo, face in hidden:
            name, undo = st.columns([4, 1], vertical_alignment="center")
            name.markdown(f"`{photo}` (face {face + 1})")
            undo.button(
                "Show again",
                key=f"unhide-{pair_key(photo, face)}",
                on_click=session.unhide,
                args=(photo, face, people, album),
            )


def pair_key(photo: str, face: int) -> str:
    return hashlib.blake2b(f"{photo}\0{face}".encode(), digest_size=6).hexdigest()


def match_key(match: logic.Match) -> str:
    """A widget key for a result that survives reruns and is safe in a CSS class name."""
    return pair_key(match.photo, match.face_index)


def mark_not_me(
    session: logic.SearchSession, match: logic.Match, people: logic.PeopleStore, album: str
) -> None:
    session.mark_not_me(match, people, album)
    st.toast(f"Hidden {match.photo}. Undo under “Hidden as not me”.")


def main() -> None:
    try:
        config = read_config()
    except logic.StartRefused as error:
        st.error(str(error))
        st.stop()
    user = signed_in_user(config)
    album, index = choose_album(config)
    if album is None or st.session_state.get("pick_album"):
        st.title("Find every photo of someone")
        st.write("First, which album should we look in?")
        album_picker(config.public)
        st.stop()

    from photosearch.index.indexer import data_dir

    library = get_library(album, index)
    endpoint = logic.endpoint_from()
    location = logic.people_location(user.name)
    legacy = data_dir() / "people"
    people = get_people(location, str(legacy) if user.is_owner and "://" not in location else None)
    session: logic.SearchSession = st.session_state.setdefault("search", logic.SearchSession())
    try:
        status = library.status()
    except (IndexStoreError, AlbumError, OSError) as error:
        st.error(f"Cannot read the index at {library.index_location}: {error}")
        st.stop()
    # With an endpoint, faces are found and searched there: no face models in the app.
    reader = get_endpoint_search(endpoint, status.model_id) if endpoint else get_reader()

    st.session_state["shown_generation"] = shown_generation(library)
    album_panel(library, status, config.public, user, can_index=endpoint is None)
    if st.sidebar.radio("Show", PAGES, horizontal=True, key="show") == PAGES[1]:
        from photosearch.app.people_page import people_page

        people_page(library)
        return
    people_panel(session, people)
    if config.public:
        st.sidebar.caption(f"Signed in as **{user.name}** · [Sign out](/_photosearch/logout)")

    st.title("Find every photo of someone")
    if status.model_id and status.model_id != reader.model_id:
        st.warning("This album was indexed with other face models: index it again to search it.")
    if not status.indexed and not library.indexing.running:
        st.info("Start by indexing the album (left panel). It runs in the background.")
    references_section(session, people, reader)
    if session.has_query(people):
        results_section(session, library, people, reader, config.public)


main()
