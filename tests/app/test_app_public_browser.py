"""The public app in Chromium, started as the AWS task starts it: two friends sign in
through the gateway, search through the endpoint, each sees only their own saved people, and a
signed-out browser gets nothing.

The command and environment are exactly the task definition's (infra/app-hosting.yaml, its
parameters filled in as `photosearch aws app deploy` fills them), run here outside Docker; the
password comes as the Secrets Manager reference would inject it, and AWS is a loopback moto
server holding the album, its index, the users file and the saved people, with
`photosearch aws serve-local` as the search endpoint. Only the port differs (a free one
instead of 8501). Debian's Chromium is driven through Playwright (never
`playwright install`). Screenshots land in test-artifacts/app/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aws_server
import pytest
from app_album import OBAMA_REFERENCE, PHOTOS, album_keys_showing, shared_album
from conftest import REPO_ROOT
from public_app import FRIENDS, OWNER_PASSWORD, add_users, free_port, running_app

from photosearch.aws.app_hosting import HOSTING_TEMPLATE

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "app"
STEP_TIMEOUT_MS = 90_000
BUCKET = "photosearch-embeddings"  # the saved people, the users file and the index
ALBUM_BUCKET = "photosearch-album"
ENDPOINT = "photosearch-search"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sync_api():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    pytest.importorskip("s3fs", reason="s3fs (the aws extra) is not installed")
    server, endpoint = aws_server.start_moto_server()
    import boto3

    folder = tmp_path_factory.mktemp("aws")
    variables = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": aws_server.REGION,
        "AWS_CONFIG_FILE": str(folder / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=aws_server.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    aws_server.create_bucket(client, BUCKET)
    yield client, variables
    server.stop()


def task_command_and_environment(parameters: dict[str, str]) -> tuple[list[str], dict]:
    """The app container's command and plain environment, resolved as CloudFormation would."""
    template = aws_server.load_template(HOSTING_TEMPLATE)
    resolver = aws_server.TemplateResolver(template, parameters, stack_name="photosearch-app")
    (container,) = template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    environment = {
        item["Name"]: resolver.resolve(item["Value"]) for item in container["Environment"]
    }
    assert [item["Name"] for item in container["Secrets"]] == ["PHOTOSEARCH_APP_PASSWORD"]
    return resolver.resolve(container["Command"]), environment


@pytest.fixture(scope="module")
def app(sync_api, s3, tmp_path_factory):
    pytest.importorskip("streamlit", reason="streamlit is not installed")
    album = shared_album(tmp_path_factory)
    client, variables = s3
    aws_server.create_bucket(client, ALBUM_BUCKET)
    for path in album.album.rglob("*"):
        if path.is_file():
            key = f"album/{path.relative_to(album.album).as_posix()}"
            client.put_object(Bucket=ALBUM_BUCKET, Key=key, Body=path.read_bytes())
    for path in Path(album.index).rglob("*"):
        if path.is_file():
            key = f"index/{path.relative_to(album.index).as_posix()}"
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    parameters = {  # what `photosearch aws app deploy --endpoint photosearch-search` passes
        "AlbumUrl": f"s3://{ALBUM_BUCKET}/album",
        "IndexUrl": f"s3://{BUCKET}/index",
        "PeopleUrl": f"s3://{BUCKET}/saved-people",
        "UsersUrl": f"s3://{BUCKET}/app/users.json",
        "EndpointName": ENDPOINT,
    }
    command, task_environment = task_command_and_environment(parameters)
    assert command[0] == "photosearch" and command[command.index("--port") + 1] == "8501"
    port = free_port()
    command = [str(Path(sys.executable).with_name("photosearch")), *command[1:]]
    command[command.index("--port") + 1] = str(port)
    # A container has a PATH and HOME; AWS credentials come from the task role there, from
    # the moto server's variables here.
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **variables}
    add_users({**base, "PHOTOSEARCH_APP_USERS": parameters["UsersUrl"]}, FRIENDS)
    environment = {
        **base,
        **task_environment,
        "PHOTOSEARCH_APP_PASSWORD": OWNER_PASSWORD,  # as the secret reference injects it
    }
    work = tmp_path_factory.mktemp("public-browser")
    # The search endpoint: `photosearch aws serve-local` on the same S3 index; the app's boto3
    # reaches it as it would reach SageMaker.
    endpoint_port = free_port()
    with open(work / "endpoint.log", "wb") as log:
        endpoint = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("photosearch")),
                "aws",
                "serve-local",
                "--index",
                parameters["IndexUrl"],
                "--port",
                str(endpoint_port),
                "--endpoint-name",
                ENDPOINT,
            ],
            env={**base, "AWS_DEFAULT_REGION": variables["AWS_DEFAULT_REGION"]},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_ping(f"http://127.0.0.1:{endpoint_port}/ping", endpoint, work / "endpoint.log")
        environment["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = f"http://127.0.0.1:{endpoint_port}"
        with running_app(command, environment, work, port, parameters["UsersUrl"]) as running:
            yield running
        assert "POST /endpoints/" in (work / "endpoint.log").read_text()  # it was asked
    finally:
        endpoint.terminate()
        endpoint.wait(20)


def wait_for_ping(url: str, process, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.3)
    raise RuntimeError(f"serve-local did not start:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def browser(sync_api):
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def new_tab(browser, **options):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, **options)
    tab = context.new_page()
    tab.set_default_timeout(STEP_TIMEOUT_MS)
    return tab


def settle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached")
    page.wait_for_timeout(200)


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page, url: str, account: str, password: str) -> None:
    page.goto(url)
    page.get_by_label("Account").fill(account)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def saved_people(page) -> list[str]:
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Saved people").wait_for()
    settle(page)
    names = sidebar.locator("[data-testid=stMarkdownContainer] strong").all_inner_texts()
    return [name for name in names if name.strip() and name not in {"alice", "bob", "owner"}]


def save_person(page, name: str) -> None:
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(
        [str(PHOTOS / OBAMA_REFERENCE)]
    )
    count = len(album_keys_showing("Barack_Obama"))
    page.get_by_role("heading", name=f"{count} photos found").wait_for()
    settle(page)
    page.get_by_role("button", name="Save this person").click()
    field = page.get_by_label("Name")
    field.fill(name)
    field.press("Enter")
    settle(page)
    page.get_by_role("button", name="Save", exact=True).click()
    page.get_by_test_id("stSidebar").get_by_text(name).wait_for()
    settle(page)


def test_two_friends_each_see_only_their_own_people(app, browser, s3):
    client, _ = s3
    # Signed out: the sign-in form, and nothing of the app, whatever the address.
    stranger = new_tab(browser)
    for path in ("/", "/?embed=true", "/_stcore/host-config", "/media/x.jpg"):
        answer = stranger.goto(app.url + path)
        assert answer.status in (200, 401)
        assert "streamlit" not in stranger.content().lower()
    stranger.goto(app.url)
    stranger.get_by_role("button", name="Sign in").wait_for()
    screenshot(stranger, "public-01-sign-in")
    sign_in(stranger, app.url, "alice", "not her password")
    stranger.get_by_role("alert").filter(has_text="Wrong account or password.").wait_for()
    assert stranger.locator("[data-testid=stApp]").count() == 0

    alice = new_tab(browser)
    sign_in(alice, app.url, "alice", FRIENDS["alice"])
    alice.get_by_text("Signed in as").wait_for()
    assert saved_people(alice) == []
    # A friend searches; only the owner indexes (on AWS, the endpoint searching here).
    assert alice.get_by_text("index new photos on AWS").count() == 0
    save_person(alice, "Alice's pick")
    screenshot(alice, "public-02-alice-saved")

    # Bob's browser even claims to be alice: the gateway drops the forged headers.
    bob = new_tab(browser, extra_http_headers={"X-Photosearch-User": "alice"})
    sign_in(bob, app.url, "bob", FRIENDS["bob"])
    bob.get_by_text("Signed in as").wait_for()
    assert saved_people(bob) == []
    save_person(bob, "Bob's pick")
    assert saved_people(bob) == ["Bob's pick"]
    screenshot(bob, "public-03-bob-saved")

    alice.reload()
    alice.get_by_text("Signed in as").wait_for()
    assert saved_people(alice) == ["Alice's pick"]

    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="saved-people/").get("Contents", [])
    keys = [o["Key"] for o in listed]
    assert {key.split("/")[1] for key in keys} == {"alice", "bob"}  # one prefix per user
    assert len(keys) == 4  # person.json and face.jpg each: no uploaded photo is stored

    owner = new_tab(browser)
    sign_in(owner, app.url, "owner", OWNER_PASSWORD)
    owner.get_by_text("index new photos on AWS").wait_for()
    assert saved_people(owner) == []

    # Signing out ends the session: the page asks for the password again.
    alice.goto(app.url + "/_photosearch/logout")
    alice.get_by_role("button", name="Sign in").wait_for()
    alice.goto(app.url)
    alice.get_by_role("button", name="Sign in").wait_for()
