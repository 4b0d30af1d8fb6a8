"""The live view in real Chromium with a fake camera: the test clip, turned into a Y4M file with PyAV,
is what Chromium's fake capture device films (looping). "Use camera" opens it; the page must draw the
camera picture with moving 2D skeletons, the 3D view and the angle charts from the server's answers,
show the latency readout, log no console error and ask nothing of another host; Record / Stop
recording must leave a job whose poses.json has the recorded frames."""
from __future__ import annotations

import math
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest

from hpe3d_cli.local_stack import LocalStack
from tests.browser.test_web_page import (CHROMIUM_FLAGS, PHONE, WIDE, PageWatch, chromium_executable, decode_png,
                                         drawn_fraction, screenshot)
from tests.conftest import TEST_DATA

pytestmark = pytest.mark.browser

CLIP = TEST_DATA / "two_people_office_24f.mp4"
ANSWERS_BEFORE_CHECKS = 40
JOB_TIMEOUT_S = 600


def write_y4m(clip: Path, out: Path, fps: int = 30) -> Path:
    """The clip's frames as a YUV4MPEG2 (4:2:0) file, the format Chromium's fake camera reads."""
    with av.open(str(clip)) as container:
        frames = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    height = frames[0].shape[0] * 2 // 3
    width = frames[0].shape[1]
    with out.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for planes in frames:
            f.write(b"FRAME\n")
            f.write(np.ascontiguousarray(planes).tobytes())
    return out


@pytest.fixture(scope="module")
def gateway():
    with LocalStack(startup_timeout_s=240) as stack:
        yield stack.gateway_url, stack.api_key


@pytest.fixture(scope="module")
def camera_browser(tmp_path_factory):
    executable = chromium_executable()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
    y4m = write_y4m(CLIP, tmp_path_factory.mktemp("camera") / "office.y4m")
    flags = CHROMIUM_FLAGS + ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                              f"--use-file-for-fake-video-capture={y4m}"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=flags)
        yield browser
        browser.close()


def readout(page) -> dict:
    return page.evaluate("({...document.querySelector('#live-latency').dataset})")


def test_live_view_draws_moving_skeletons_and_a_recording_becomes_a_job(camera_browser, gateway):
    base_url, key = gateway
    watch = PageWatch(camera_browser, WIDE, base_url, key)   # signed in through the page's form
    try:
        page = watch.page
        page.goto(base_url + "/")
        page.click("header nav a[href='/live']")
        page.wait_for_url("**/live")
        page.click("#live-start")
        page.wait_for_function(f"Number(document.querySelector('#live-latency').dataset.answered) >= "
                               f"{ANSWERS_BEFORE_CHECKS}", timeout=180_000)
        # the camera picture with the 2D skeletons of the people found in it
        page.wait_for_function("Number(document.querySelector('#live-picture').dataset.persons) >= 1")
        picture = decode_png(page.locator("#live-picture").screenshot())
        assert drawn_fraction(picture, (0, 0, 0)) > 0.5, "the camera picture is not drawn"
        # the 3D view: coloured skeletons, moving as the people in the clip move
        page.wait_for_function("Number(document.querySelector('#viewer').dataset.persons) >= 1")
        first = decode_png(page.locator("#viewer canvas").screenshot())
        saturation = first.max(axis=2) - first.min(axis=2)
        assert (saturation > 80).sum() > 200, "no coloured skeleton in the 3D view"
        moved = 0.0
        for _ in range(10):
            page.wait_for_timeout(300)
            later = decode_png(page.locator("#viewer canvas").screenshot())
            moved = max(moved, float((np.abs(later - first).sum(axis=2) > 40).mean()))
        assert moved > 0.001, f"the 3D skeleton did not move ({moved:.5f} of pixels changed)"
        # the angle charts fill as frames are answered
        page.wait_for_function("Number(document.querySelector('#angle-plots .charts')?.dataset.points) > 0")
        assert page.locator("#angle-plots .chart canvas").count() >= 2
        # the latency readout
        stats = readout(page)
        assert math.isfinite(float(stats["p50"])) and math.isfinite(float(stats["p95"]))
        assert float(stats["p95"]) >= float(stats["p50"]) > 0 and float(stats["fps"]) > 0
        assert "p95" in page.inner_text("#live-latency")
        screenshot(page, "live_1280x900")
        page.set_viewport_size(PHONE)
        page.wait_for_timeout(500)
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "scrolls sideways on a phone"
        screenshot(page, "live_390x844")
        page.set_viewport_size(WIDE)
        print(f"live view in Chromium: p50 {float(stats['p50']):.0f} ms, p95 {float(stats['p95']):.0f} ms, "
              f"{float(stats['fps']):.1f} frames/s answered, {stats['dropped']} dropped, {stats['answered']} answered")

        # record about two seconds, stop: a job with those frames
        page.click("#live-record")
        page.wait_for_function("!document.querySelector('#live-record-stop').disabled")
        started = time.monotonic()
        page.wait_for_timeout(2000)
        page.click("#live-record-stop")
        recorded_for = time.monotonic() - started
        page.wait_for_selector("#live-job-link", timeout=120_000)
        href = page.get_attribute("#live-job-link", "href")
        assert href.startswith("/jobs/")
        job_id = href.rsplit("/", 1)[1]
        page.click("#live-stop")
        assert page.is_enabled("#live-start")
    finally:
        errors, off_machine = list(watch.errors), watch.off_machine()
        watch.close()
    assert errors == [], errors
    assert off_machine == [], off_machine

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as api:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (job := api.get(f"/v1/jobs/{job_id}").json())["state"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(1)
        assert job["state"] == "succeeded", job
        poses = api.get(f"/v1/jobs/{job_id}/artifacts/poses.json").json()
    frames = len(poses["frames"])
    assert frames >= 10, f"{frames} frames recorded in {recorded_for:.1f} s"
    assert sum(1 for f in poses["frames"] if f["persons"]) >= frames // 2
