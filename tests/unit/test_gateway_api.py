"""The REST app with a real SeaweedFS store; no stage server runs, so jobs fail as 'unavailable'."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from hpe3d_cli.local_stack import free_port
from gateway.manifest import JobManifest, StoredArtifact, new_job_id


@pytest.fixture(scope="module")
def client(settings, store):
    dead = {f"{s}_addr": f"127.0.0.1:{free_port()}" for s in ("decoder", "pose2d", "lifter3d", "renderer")}
    s = dataclasses.replace(settings, max_upload_mb=1, stage_retries=0, **dead)
    with TestClient(create_app(s, store)) as c:
        yield c


def wait_finished(client, url: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = client.get(url).json()
        if body["state"] in ("succeeded", "failed", "cancelled"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {url} did not finish: {body}")


def test_upload_over_the_limit_is_413(client):
    r = client.post("/v1/jobs", files={"file": ("big.mp4", b"x" * (1024 * 1024 + 1), "video/mp4")})
    assert r.status_code == 413
    assert "limit of 1 MB" in r.json()["detail"]


def test_declared_content_length_over_the_limit_is_refused_early(client):
    r = client.post("/v1/jobs", content=b"small", headers={"Content-Length": str(50 * 1024 * 1024),
                                                          "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


def test_empty_upload_is_422(client):
    r = client.post("/v1/jobs", files={"file": ("empty.mp4", b"", "video/mp4")})
    assert r.status_code == 422 and r.json()["detail"] == "empty upload"


def test_invalid_option_is_422(client):
    r = client.post("/v1/jobs", files={"file": ("a.mp4", b"abc", "video/mp4")}, data={"max_persons": "many"})
    assert r.status_code == 422 and "max_persons" in r.json()["detail"]


def test_accepted_job_is_stored_and_fails_clearly_without_stages(client, store):
    r = client.post("/v1/jobs", files={"file": ("../My clip.mp4", b"not really a video", "video/mp4")},
                    data={"max_persons": "3", "render": "false"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert job["options"] == {"max_persons": 3, "working_size": 0, "render": False}
    assert store.get_bytes(f"jobs/{job['id']}/input/My_clip.mp4") == b"not really a video"
    final = wait_finished(client, r.headers["Location"])
    assert final["state"] == "failed"
    assert final["error"]["stage"] == "decode" and final["error"]["message"].startswith("dependency unavailable")
    assert job["id"] in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
    # SSE after the job finished: the final state, then the stream closes
    text = client.get(f"/v1/jobs/{job['id']}/events").text
    assert "event: progress" in text and text.rstrip().split("\n\n")[-1].startswith("event: done")
    done = json.loads(text.rstrip().split("\n\n")[-1].split("data: ", 1)[1])
    assert done["state"] == "failed"
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert store.list_keys(f"jobs/{job['id']}/") == []


def test_artifact_ranges(client, store):
    job_id = new_job_id()
    body = bytes(range(256)) * 4
    store.put_bytes(f"jobs/{job_id}/output/render.mp4", body, "video/mp4")
    manifest = JobManifest(id=job_id, input_key="k", input_name="k", state="succeeded",
                           artifacts={"render.mp4": StoredArtifact(key=f"jobs/{job_id}/output/render.mp4",
                                                                   content_type="video/mp4", size_bytes=len(body))})
    store.put_bytes(manifest.key, manifest.to_json())
    url = f"/v1/jobs/{job_id}/artifacts/render.mp4"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == body and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == body[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(body)}"
    assert client.get(url, headers={"Range": f"bytes={len(body)}-"}).status_code == 416
    assert client.get(f"/v1/jobs/{job_id}/artifacts/nope.bin").status_code == 404
    assert client.get(f"/v1/jobs/{new_job_id()}").status_code == 404
    assert client.get("/v1/jobs/not-an-id").status_code == 404


def test_operations_endpoints(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    deps = ready.json()["dependencies"]
    assert deps["storage"]["ok"] and not deps["decoder"]["ok"]
    metrics = client.get("/metrics").text
    assert "hpe3d_gateway_upload_bytes_total" in metrics and "hpe3d_gateway_jobs" in metrics
    page = client.get("/")
    assert page.status_code == 200 and "EventSource" in page.text
