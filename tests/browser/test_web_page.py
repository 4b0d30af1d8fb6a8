"""The web page in a real browser (Debian's chromium driven by Playwright) on the whole local stack.

Every browser context signs in through the page's form with the stack's API key (one test first
opens a permalink signed out: the form, a refused key, then the job). One clip goes through the page's own upload controls; the checks share that job: the result view
(3D canvas drawn, plots with data, seeking the video moves the 3D and the viewer's slider moves the
video), the permalink after a reload and in a fresh browser context, the job history, the phone
layout at 390x844, errors in words for a bad upload and an out-of-bounds option, delete, the form's
defaults and drag and drop, a photo job, and /docs and /redoc served with no request leaving the
machine. Every page's console errors, and any request to another host, fail the test that opened it.

Set HPE3D_SCREENSHOTS=DIR to keep screenshots of each view at 1280x900 and 390x844, and
HPE3D_GATEWAY_URL=http://HOST:PORT (and HPE3D_API_KEY) to test a gateway that is already running instead of a
local stack.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from hpe3d_cli.local_stack import LocalStack
from tests.conftest import TEST_DATA, bearer

pytestmark = pytest.mark.browser

CLIP = TEST_DATA / "two_people_office_24f.mp4"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"]
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWER_BACKGROUND_RGB = (28, 32, 40)  # viewer3d.js BACKGROUND
JOB_TIMEOUT_MS = 600_000
UPLOAD_LIMIT_MB = 2


def chromium_executable() -> str:
    path = os.environ.get("HPE3D_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Debian's chromium is not installed: `make setup` installs it when run as root "
                    "(apt-get install -y chromium); otherwise install it or set HPE3D_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def gateway():
    """(URL, API key) of a local stack started for these tests, or of the gateway at HPE3D_GATEWAY_URL
    (with the key in HPE3D_API_KEY) when that is set."""
    if os.environ.get("HPE3D_GATEWAY_URL"):
        yield os.environ["HPE3D_GATEWAY_URL"].rstrip("/"), os.environ.get("HPE3D_API_KEY", "")
        return
    # a small upload limit, so that refusing a file over it costs the test a few megabytes only
    with LocalStack(startup_timeout_s=240, settings_overrides={"max_upload_mb": UPLOAD_LIMIT_MB}) as stack:
        yield stack.gateway_url, stack.api_key


@pytest.fixture(scope="module")
def base_url(gateway) -> str:
    return gateway[0]


@pytest.fixture(scope="module")
def api(gateway) -> httpx.Client:
    """The REST API with the key, for what the tests check beside the page."""
    url, key = gateway
    with httpx.Client(base_url=url, headers=bearer(key) if key else {}, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    executable = chromium_executable()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


class PageWatch:
    """A page with what it logged and what it asked for: console errors, page errors, every URL."""

    def __init__(self, browser, viewport: dict, base_url: str, key: str = ""):
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.base_url = base_url
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        if key:
            self.sign_in(key)

    def sign_in(self, key: str) -> None:
        """Through the page's own form: the key is kept in this context's localStorage."""
        self.page.goto(self.base_url + "/")
        self.page.fill("#api-key", key)
        self.page.click("#sign-in")
        self.page.wait_for_selector("#opt-max_persons")

    def off_machine(self) -> list[str]:
        """Requests to anything but the gateway (data: and blob: URLs stay in the page)."""
        local = urlparse(self.base_url).netloc
        return [u for u in self.requests
                if urlparse(u).scheme not in ("data", "blob") and urlparse(u).netloc != local]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser, gateway):
    """open_page(viewport) -> PageWatch, signed in unless told not to; at the end, no console error and
    nothing fetched off the machine."""
    opened: list[PageWatch] = []

    def open_(viewport: dict = WIDE, signed_in: bool = True) -> PageWatch:
        watch = PageWatch(browser, viewport, gateway[0], gateway[1] if signed_in else "")
        opened.append(watch)
        return watch
    yield open_
    try:
        for watch in opened:
            assert watch.errors == [], watch.errors
            assert watch.off_machine() == [], watch.off_machine()
    finally:
        for watch in opened:
            watch.close()


def screenshot(page, name: str) -> None:
    folder = os.environ.get("HPE3D_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(1500)  # let the video controls show the loaded duration
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def decode_png(data: bytes) -> np.ndarray:
    import cv2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "screenshot is not a PNG"
    return image[:, :, ::-1].astype(np.int16)  # RGB


def drawn_fraction(rgb: np.ndarray, background=VIEWER_BACKGROUND_RGB) -> float:
    """Share of pixels that differ clearly from the viewer's empty background."""
    return float((np.abs(rgb - np.array(background)).sum(axis=2) > 40).mean())


def wait_for_result(page) -> None:
    page.wait_for_selector("#main[data-state=succeeded] #viewer canvas", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#viewer').dataset.frame === '0'")
    page.wait_for_function("Number(document.querySelector('#angle-plots .charts')?.dataset.points) > 0")
    page.wait_for_function("document.querySelector('#result-video').readyState >= 2")


@pytest.fixture(scope="module")
def job_id(browser, gateway) -> str:
    """The clip uploaded through the page's file input and Start button, followed to its result."""
    base_url, key = gateway
    watch = PageWatch(browser, WIDE, base_url, key)
    try:
        page = watch.page
        page.goto(base_url + "/")
        page.wait_for_selector("#opt-max_persons")
        screenshot(page, "home_1280x900")
        page.set_input_files("#file", str(CLIP))
        page.click("#start")
        page.wait_for_url("**/jobs/*")
        job = page.url.rstrip("/").rsplit("/", 1)[1]
        page.wait_for_selector("#job-progress .stage, #main[data-state=succeeded]")
        wait_for_result(page)
        assert watch.errors == [], watch.errors
        assert watch.off_machine() == [], watch.off_machine()
        return job
    finally:
        watch.close()


def test_result_view_draws_3d_and_plots(open_page, base_url, job_id):
    watch = open_page(WIDE)
    page = watch.page
    page.goto(f"{base_url}/jobs/{job_id}")
    wait_for_result(page)
    canvas = decode_png(page.locator("#viewer canvas").screenshot())
    assert drawn_fraction(canvas) > 0.02, "the 3D canvas is blank"
    # the skeleton: pixels far from the grey grid and the background, coloured like a track
    saturation = canvas.max(axis=2) - canvas.min(axis=2)
    assert (saturation > 80).sum() > 200, "no coloured skeleton in the 3D view"
    assert page.locator("#person-picker button").count() >= 1
    assert page.get_attribute("#person-picker button", "aria-checked") == "true"
    assert page.locator("#angle-plots .chart canvas").count() >= 2
    assert "degrees" in page.inner_text("#angle-plots")
    names = page.locator("#downloads a").all_inner_texts()
    assert {"render.mp4", "poses.json"} <= set(names)
    assert all(page.locator("#downloads .what").all_inner_texts()), "an artefact has no description"
    screenshot(page, "result_1280x900")


def test_seeking_the_video_moves_the_3d_and_the_slider_moves_the_video(open_page, base_url, api, job_id):
    watch = open_page(WIDE)
    page = watch.page
    page.goto(f"{base_url}/jobs/{job_id}")
    wait_for_result(page)
    before = decode_png(page.locator("#viewer canvas").screenshot())
    last = int(page.get_attribute("#scrub", "max"))
    assert last > 0
    page.evaluate("(() => { const v = document.querySelector('#result-video'); v.currentTime = v.duration - 0.01; })()")
    page.wait_for_function(f"document.querySelector('#viewer').dataset.frame === '{last}'")
    page.wait_for_function("document.querySelector('#result-video').seeking === false")
    after = decode_png(page.locator("#viewer canvas").screenshot())
    changed = float((np.abs(after - before).sum(axis=2) > 40).mean())
    assert changed > 0.001, f"the 3D view did not change after seeking ({changed:.5f} of pixels)"
    assert page.input_value("#scrub") == str(last)

    middle = last // 2
    page.fill("#scrub", str(middle))  # the viewer's own slider drives the video
    page.wait_for_function(f"document.querySelector('#viewer').dataset.frame === '{middle}'")
    video_time = page.evaluate("document.querySelector('#result-video').currentTime")
    fps = api.get(f"/v1/jobs/{job_id}").json()["video"]["fps"]
    assert abs(video_time - middle / fps) < 1.0 / fps, (video_time, middle, fps)

    page.click(".viewer-controls .play")  # the viewer's Play plays the video, and the 3D follows it
    page.wait_for_function(f"document.querySelector('#viewer').dataset.frame !== '{middle}'", timeout=10_000)
    page.evaluate("document.querySelector('#result-video').pause()")
    page.wait_for_function("document.querySelector('.viewer-controls .play').textContent === 'Play'")


def test_permalink_survives_reload_and_another_browser(open_page, base_url, job_id):
    first = open_page(WIDE).page
    first.goto(f"{base_url}/jobs/{job_id}")
    wait_for_result(first)
    first.reload()
    wait_for_result(first)
    assert job_id in first.url
    other = open_page(PHONE).page  # a fresh context: nothing shared with the first
    other.goto(f"{base_url}/jobs/{job_id}")
    wait_for_result(other)
    assert other.inner_text(".job-head .input-name") == CLIP.name


def test_a_permalink_asks_a_fresh_browser_to_sign_in_first(open_page, gateway, job_id):
    base_url, key = gateway
    if not key:
        pytest.skip("the gateway under test runs without authentication")
    watch = open_page(WIDE, signed_in=False)
    page = watch.page
    page.goto(f"{base_url}/jobs/{job_id}")
    page.wait_for_selector("#sign-in-form")
    assert not [u for u in watch.requests if "/v1/" in u], "the page asked the API for something before sign-in"
    page.fill("#api-key", key[:-4] + "AAAA")  # a wrong key is refused in words, and kept nowhere
    page.click("#sign-in")
    page.wait_for_selector("#sign-in-message.error")
    assert "refused" in page.inner_text("#sign-in-message")
    watch.errors = [e for e in watch.errors if "401" not in e]  # the refused request, logged by the browser
    page.fill("#api-key", key)
    page.click("#sign-in")
    wait_for_result(page)
    assert page.url == f"{base_url}/jobs/{job_id}" and key not in page.url
    assert "Kept until" in page.inner_text(".job-head .expires")
    assert "Sign out" in page.inner_text("#account")
    page.click("#sign-out")
    page.wait_for_selector("#sign-in-form")
    assert page.evaluate("localStorage.length") == 0


def test_history_lists_the_job_with_a_permalink(open_page, base_url, job_id):
    page = open_page(WIDE).page
    page.goto(base_url + "/")
    link = page.locator(f"#history a[href='/jobs/{job_id}']")
    link.wait_for()
    text = link.inner_text()
    assert CLIP.name in text and "done" in text
    link.click()
    page.wait_for_url(f"**/jobs/{job_id}")
    wait_for_result(page)


def test_phone_layout_stacks_and_never_scrolls_sideways(open_page, base_url, job_id):
    page = open_page(PHONE).page
    page.goto(base_url + "/")
    page.wait_for_selector("#opt-max_persons")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "home_390x844")
    page.goto(f"{base_url}/jobs/{job_id}")
    wait_for_result(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    video = page.locator("#result-video").bounding_box()
    viewer = page.locator("#viewer").bounding_box()
    plots = page.locator("#angle-plots").bounding_box()
    assert viewer["y"] >= video["y"] + video["height"] - 1, "the 3D view is not under the video"
    assert plots["y"] >= viewer["y"] + viewer["height"] - 1, "the plots are not under the 3D view"
    assert viewer["width"] >= PHONE["width"] - 60 and viewer["height"] >= 200, viewer
    screenshot(page, "result_390x844")


def test_bad_upload_is_explained_and_the_failed_job_can_be_deleted(open_page, base_url, api, job_id, tmp_path):
    watch = open_page(WIDE)
    page = watch.page
    page.goto(base_url + "/")
    page.wait_for_selector("#opt-max_persons")
    notes = tmp_path / "notes.mp4"
    notes.write_text("this is a text file, not a video\n" * 20)
    page.set_input_files("#file", str(notes))
    page.click("#start")
    message = page.locator("#upload-message.error")
    message.wait_for()
    assert "not a video" in message.inner_text().lower()
    # the server answered 422 on purpose; the browser logs that failed request as a console error
    watch.errors = [e for e in watch.errors if "422" not in e]
    screenshot(page, "upload_error_1280x900")
    message.locator("a").click()
    page.wait_for_selector("#main[data-state=failed]")
    failed = page.url.rsplit("/", 1)[1]
    assert "not a video" in page.inner_text("#job-message").lower()
    assert page.locator("button", has_text="Retry").count() == 1
    page.once("dialog", lambda d: d.accept())
    page.click("button:has-text('Delete')")
    page.wait_for_url(base_url + "/")
    assert api.get(f"/v1/jobs/{failed}").status_code == 404

    # the same refusal again, this job deleted from the history list
    page.wait_for_selector("#opt-max_persons")
    page.set_input_files("#file", str(notes))
    page.click("#start")
    page.locator("#upload-message.error a").wait_for()
    second = page.get_attribute("#upload-message.error a", "href").rsplit("/", 1)[1]
    watch.errors = [e for e in watch.errors if "422" not in e]
    row = page.locator("#history li", has=page.locator(f"a[href='/jobs/{second}']"))
    row.wait_for()
    page.once("dialog", lambda d: d.accept())
    row.locator("button", has_text="Delete").click()
    page.wait_for_function("document.querySelector('.history-head + .note').textContent.startsWith('Deleted')")
    assert page.locator(f"#history a[href='/jobs/{second}']").count() == 0
    assert api.get(f"/v1/jobs/{second}").status_code == 404


def test_options_show_real_defaults_with_help(open_page, base_url, api):
    page = open_page(WIDE).page
    page.goto(base_url + "/")
    page.wait_for_selector("#opt-max_persons")
    described = {o["name"]: o for o in api.get("/v1/options").json()["options"]}
    for name, option in described.items():
        field = page.locator(f"#opt-{name}")
        if option["type"] == "boolean":
            assert field.is_checked() == option["default"]
        else:
            assert field.input_value() == str(option["default"]) and field.input_value() != "0"
        assert page.inner_text(f"#opt-{name}-help").strip()
    # a file dropped on the box is the one chosen
    page.evaluate("""() => {
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(2048)], "dropped_clip.mp4", {type: "video/mp4"}));
        const drop = document.querySelector("#drop");
        drop.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
        drop.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
    }""")
    assert "dropped_clip.mp4 (2.0 KB)" in page.inner_text("#drop")
    # a value out of bounds is said in words next to the Start button, and nothing is uploaded
    jobs_before = len(api.get("/v1/jobs").json()["jobs"])
    page.set_input_files("#file", str(CLIP))
    page.fill("#opt-max_persons", str(described["max_persons"]["maximum"] + 1))
    page.click("#start")
    message = page.locator("#upload-message.error")
    message.wait_for()
    assert str(described["max_persons"]["maximum"]) in message.inner_text()
    assert len(api.get("/v1/jobs").json()["jobs"]) == jobs_before


@pytest.mark.parametrize("path, ready", [
    ("/docs", ".swagger-ui .info .title"),
    ("/redoc", "redoc-wrap, .redoc-wrap, [role=navigation]"),
])
def test_api_docs_load_with_nothing_from_the_internet(open_page, base_url, path, ready):
    watch = open_page(WIDE)
    page = watch.page
    page.goto(base_url + path)
    page.wait_for_selector(ready, timeout=30_000)
    page.wait_for_load_state("networkidle")
    assert "hpe3d" in page.content()
    assert any(u.endswith("/openapi.json") for u in watch.requests)


def test_photo_job_shows_the_image_result(open_page, base_url, api, job_id, tmp_path):
    """A photo, lifted with the caller's own weights chosen in the page's list."""
    import av
    import cv2
    weights = Path(__file__).resolve().parents[2] / "services/lifter3d/weights/gastnet_2d_only_27f.pt"
    made = api.post("/v1/lifter-weights", data={"name": "page-choice"},
                    files={"weights": ("w.pt", weights.read_bytes(), "application/octet-stream")})
    assert made.status_code == 201, made.text
    with av.open(str(CLIP)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="bgr24")
    photo = tmp_path / "office_photo.jpg"
    cv2.imwrite(str(photo), frame)
    page = open_page(PHONE).page
    page.goto(base_url + "/")
    page.wait_for_selector("#opt-max_persons")
    choices = page.locator("#opt-lifter_weights option")
    texts = [choices.nth(i).inner_text() for i in range(choices.count())]
    assert texts[0] == "default (gastnet_bandai_27f)" and "gastnet_2d_only_27f" in texts, texts
    assert "page-choice (yours)" in texts, texts
    page.select_option("#opt-lifter_weights", "page-choice")
    page.set_input_files("#file", str(photo))
    page.click("#start")
    page.wait_for_url("**/jobs/*")
    assert api.get(f"/v1/jobs/{page.url.rsplit('/', 1)[1]}").json()["options"]["lifter_weights"] == "page-choice"
    page.wait_for_selector("#main[data-state=succeeded] #viewer canvas", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#result-image')?.naturalWidth > 0")
    assert page.locator("#result-video").count() == 0
    assert "photo" in page.inner_text(".job-head .facts")
    assert page.locator("#angle-plots table tr").count() > 1
    assert drawn_fraction(decode_png(page.locator("#viewer canvas").screenshot())) > 0.02
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "photo_result_390x844")


def test_upload_over_the_limit_is_refused_in_words(open_page, base_url, api, tmp_path):
    limit_mb = api.get("/v1/options").json()["limits"]["max_upload_mb"]
    if limit_mb > 16:
        pytest.skip(f"the gateway accepts {limit_mb} MB; this test uploads more than the limit only when it is small")
    big = tmp_path / "too_big.mp4"
    big.write_bytes(os.urandom((limit_mb + 1) * 1024 * 1024))
    watch = open_page(WIDE)
    page = watch.page
    page.goto(base_url + "/")
    page.wait_for_selector("#opt-max_persons")
    page.set_input_files("#file", str(big))
    page.click("#start")
    message = page.locator("#upload-message.error")
    message.wait_for()
    assert f"up to {limit_mb} MB" in message.inner_text()  # said before sending a byte

    def options_without_the_limit(route):  # the page does not know the limit: the server's 413 is shown
        response = route.fetch()
        body = response.json()
        body["limits"]["max_upload_mb"] = 10_000
        route.fulfill(response=response, body=json.dumps(body))
    page.route("**/v1/options", options_without_the_limit)
    page.goto(base_url + "/")
    page.wait_for_selector("#opt-max_persons")
    page.set_input_files("#file", str(big))
    page.click("#start")
    page.wait_for_function("document.querySelector('#upload-message').textContent.startsWith('Too large')")
    assert f"{limit_mb} MB" in message.inner_text()
    watch.errors = [e for e in watch.errors if "413" not in e]  # the refused request, logged by the browser
    screenshot(page, "upload_413_1280x900")
