"""The REST API with a real SeaweedFS store and a real nats-server; no worker and no stage server
runs, so submitted jobs stay queued (the queue holds them) and the API deletes them itself."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.jobs import queue
from gateway.jobs import job_index
from gateway.jobs.manifest import JobError, JobManifest, JobState, StoredArtifact, new_job_id, tombstone_key
from hpe3d_cli.local_stack import free_port
from services.common.storage import ObjectStore
from tests.conftest import bearer, make_api_key


@pytest.fixture(scope="module")
def api_settings(settings, nats_url):
    dead = {f"{s}_addr": f"127.0.0.1:{free_port()}" for s in ("decoder", "pose2d", "lifter3d", "renderer")}
    return dataclasses.replace(settings, max_upload_mb=1, nats_url=nats_url, triton_url=f"127.0.0.1:{free_port()}",
                               **dead)


def wait_for_queue(client: TestClient) -> None:
    """The app connects to NATS in the background."""
    for _ in range(200):
        if client.app.state.api.queue.current() is not None:
            return
        time.sleep(0.05)
    raise AssertionError("the API did not connect to NATS")


@pytest.fixture(scope="module")
def admin_key(store):
    """The tests below write manifests of no owner straight into storage: an admin sees them."""
    return make_api_key(store, "operator", admin=True)


@pytest.fixture(scope="module")
def client(api_settings, store, admin_key):
    with TestClient(create_app(api_settings, store), headers=bearer(admin_key)) as c:
        wait_for_queue(c)
        yield c


def queued_messages(nats_url: str) -> int:
    async def count() -> int:
        nc = await queue.connect(nats_url, "test", attempts=1)
        try:
            return (await nc.jetstream().stream_info(queue.STREAM)).state.messages
        finally:
            await nc.close()
    return asyncio.run(count())


def test_upload_over_the_limit_is_413(client):
    r = client.post("/v1/jobs", files={"file": ("big.mp4", b"x" * (1024 * 1024 + 1), "video/mp4")})
    assert r.status_code == 413
    assert "limit of 1 MB" in r.json()["detail"]


def test_declared_content_length_over_the_limit_is_refused_early(client):
    r = client.post("/v1/jobs", content=b"small", headers={"Content-Length": str(50 * 1024 * 1024),
                                                          "Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413


def test_not_multipart_is_415_and_a_broken_body_is_400(client):
    assert client.post("/v1/jobs", content=b"{}", headers={"Content-Type": "application/json"}).status_code == 415
    broken = client.post("/v1/jobs", content=b"--x\r\nContent-Disposition: form-data; name=\"file\"",
                         headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert broken.status_code in (400, 422), broken.text


def test_empty_upload_and_invalid_options_are_422(client):
    r = client.post("/v1/jobs", files={"file": ("empty.mp4", b"", "video/mp4")})
    assert r.status_code == 422 and r.json()["detail"] == "empty upload"
    r = client.post("/v1/jobs", files={"file": ("a.mp4", b"abc", "video/mp4")}, data={"max_persons": "many"})
    assert r.status_code == 422 and "max_persons" in r.json()["detail"]
    r = client.post("/v1/jobs", files={"file": ("a.mp4", b"abc", "video/mp4")}, data={"working_size": "5000"})
    assert r.status_code == 422 and "working_size" in r.json()["detail"]


def test_submitted_job_is_stored_queued_and_deleted_by_the_api_when_no_worker_runs_it(client, store, nats_url):
    before = queued_messages(nats_url)
    r = client.post("/v1/jobs", files={"file": ("../My clip.mp4", b"not really a video", "video/mp4")},
                    data={"max_persons": "3", "render": "false"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert job["options"] == {"max_persons": 3, "working_size": 0, "render": False, "pose_model": "",
                              "lifter_weights": ""}
    assert job["state"] == "queued" and job["attempt"] == 1
    assert set(job["progress"]) == {"decoder", "pose2d", "lifter3d", "renderer"}
    assert store.get_bytes(f"jobs/{job['id']}/input/My_clip.mp4") == b"not really a video"
    assert queued_messages(nats_url) == before + 1  # on the queue, waiting for a worker
    assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "queued"
    assert job["id"] in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert store.list_keys(f"jobs/{job['id']}/") == []
    assert store.exists(tombstone_key(job["id"]))  # a worker taking the queued run later cleans up
    text = client.get(f"/v1/jobs/{job['id']}/events")
    assert text.status_code == 404


def test_events_of_a_finished_job_end_with_done(client, store):
    job = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4", state=JobState.failed,
                      error=JobError(stage="decoder", code="INVALID_ARGUMENT", message="not a video"))
    store.put_bytes(job.key, job.to_json())
    text = client.get(f"/v1/jobs/{job.id}/events").text
    blocks = text.rstrip().split("\n\n")
    assert blocks[0].startswith("event: progress") and blocks[-1].startswith("event: done")
    done = json.loads(blocks[-1].split("data: ", 1)[1])
    assert done["state"] == "failed" and done["error"]["stage"] == "decoder"


def test_a_reconnecting_event_stream_is_not_told_again_what_it_saw(client, store):
    job = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4", state=JobState.succeeded)
    store.put_bytes(job.key, job.to_json())
    first = client.get(f"/v1/jobs/{job.id}/events").text.rstrip().split("\n\n")
    assert first[0].startswith("event: progress") and first[-1].startswith("event: done")
    seen = next(line[len("id: "):] for line in first[0].splitlines() if line.startswith("id: "))
    again = client.get(f"/v1/jobs/{job.id}/events", headers={"Last-Event-ID": seen}).text.rstrip().split("\n\n")
    assert len(again) == 1 and again[0].startswith("event: done")
    stale = client.get(f"/v1/jobs/{job.id}/events", headers={"Last-Event-ID": "2000-01-01T00:00:00+00:00"})
    assert stale.text.startswith("event: progress")


def test_retry_requeues_only_a_failed_job(client, store, nats_url):
    job = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4", state=JobState.failed,
                      error=JobError(stage="pose2d", code="UNAVAILABLE", message="dependency unavailable"))
    store.put_bytes(job.key, job.to_json())
    before = queued_messages(nats_url)
    r = client.post(f"/v1/jobs/{job.id}/retry")
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "queued" and r.json()["attempt"] == 2 and r.json()["error"] is None
    assert queued_messages(nats_url) == before + 1
    again = client.post(f"/v1/jobs/{job.id}/retry")
    assert again.status_code == 409 and "only a failed job" in again.json()["detail"]
    assert client.post(f"/v1/jobs/{new_job_id()}/retry").status_code == 404
    assert client.delete(f"/v1/jobs/{job.id}").status_code == 204


def test_a_running_job_without_a_live_owner_shows_recovering(client, store):
    job = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4", state=JobState.running, owner="gone")
    store.put_bytes(job.key, job.to_json())
    assert client.get(f"/v1/jobs/{job.id}").json()["state"] == "recovering"


def test_a_job_whose_manifest_fails_validation_reads_as_failed_with_the_reason(client, store):
    job = JobManifest(id=new_job_id(), input_key="k", input_name="a.mp4", state=JobState.running, owner="w1")
    stored = json.loads(job.to_json())
    stored["options"]["max_persons"] = 99
    store.put_bytes(job.key, json.dumps(stored).encode())
    for key in (job_index.all_key(job), job_index.user_key(job)):   # listed as the API lists a new job
        store.put_bytes(key, b"", "text/plain")
    r = client.get(f"/v1/jobs/{job.id}")
    assert r.status_code == 200, r.text
    view = r.json()
    assert view["state"] == "failed" and view["input_name"] == "a.mp4"
    assert view["error"]["code"] == "INVALID_MANIFEST" and view["error"]["stage"] == "jobs"
    assert "options.max_persons" in view["error"]["message"] and "99" in view["error"]["message"]
    assert job.id in [j["id"] for j in client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]]
    done = client.get(f"/v1/jobs/{job.id}/events").text.rstrip().split("\n\n")[-1]
    assert done.startswith("event: done") and "INVALID_MANIFEST" in done
    unreadable = new_job_id()
    store.put_bytes(f"jobs/{unreadable}/job.json", b"{not json")
    r = client.get(f"/v1/jobs/{unreadable}")
    assert r.status_code == 200 and r.json()["state"] == "failed", r.text
    assert "Invalid JSON" in r.json()["error"]["message"]
    for job_id in (job.id, unreadable):
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 204
        assert client.get(f"/v1/jobs/{job_id}").status_code == 404


def _finished_job_with(store, body: bytes) -> tuple[str, str, str]:
    """A succeeded job whose render.mp4 is ``body``: (artefact URL, object key, its ETag)."""
    job_id = new_job_id()
    key = f"jobs/{job_id}/output/render.mp4"
    store.put_bytes(key, body, "video/mp4")
    size, etag = store.stat(key)
    manifest = JobManifest(id=job_id, input_key="k", input_name="k", state="succeeded",
                           artifacts={"render.mp4": StoredArtifact(key=key, content_type="video/mp4",
                                                                   size_bytes=size, etag=etag)})
    store.put_bytes(manifest.key, manifest.to_json())
    return f"/v1/jobs/{job_id}/artifacts/render.mp4", key, etag


def test_artifact_ranges_and_the_etag_check(client, store):
    body = bytes(range(256)) * 4
    url, key, etag = _finished_job_with(store, body)
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == body and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["etag"] == f'"{etag}"'
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == body[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(body)}"
    assert client.get(url, headers={"Range": f"bytes={len(body)}-"}).status_code == 416
    assert client.get(url.rsplit("/", 1)[0] + "/nope.bin").status_code == 404
    assert client.get(f"/v1/jobs/{new_job_id()}").status_code == 404
    assert client.get("/v1/jobs/not-an-id").status_code == 404
    # an object overwritten after the job finished is not served
    store.put_bytes(key, b"someone else's bytes", "video/mp4")
    changed = client.get(url)
    assert changed.status_code == 409 and "changed in storage" in changed.json()["detail"]


def test_an_object_replaced_by_one_of_the_same_size_is_refused_by_its_etag(client, store):
    body = bytes(range(256)) * 4
    url, key, etag = _finished_job_with(store, body)
    same_size = bytes(reversed(body))
    store.put_bytes(key, same_size, "video/mp4")
    assert store.stat(key)[0] == len(body) and store.stat(key)[1] != etag   # only the ETag tells
    for headers in ({}, {"Range": "bytes=0-99"}):
        changed = client.get(url, headers=headers)
        assert changed.status_code == 409 and "changed in storage" in changed.json()["detail"]


def test_an_object_replaced_between_the_check_and_the_read_is_never_sent_under_the_old_etag(client, store,
                                                                                          monkeypatch):
    body = bytes(range(256)) * 4
    url, key, etag = _finished_job_with(store, body)
    replacement = bytes(reversed(body))
    stat = store.stat

    def stat_then_replace(ref):  # the object is replaced right after the API checked it
        checked = stat(ref)
        store.put_bytes(key, replacement, "video/mp4")
        return checked
    monkeypatch.setattr(store, "stat", stat_then_replace)
    for headers in ({}, {"Range": "bytes=10-99"}):
        store.put_bytes(key, body, "video/mp4")
        answer = client.get(url, headers=headers)
        assert answer.status_code == 409, (answer.status_code, answer.headers.get("etag"))
        assert "while it was being sent" in answer.json()["detail"]
        assert replacement[:90] not in answer.content


def test_storage_down_is_503_with_the_reason(api_settings, admin_key):
    dead = ObjectStore(f"127.0.0.1:{free_port()}", "a", "b", "hpe3d", retries=0)
    with TestClient(create_app(api_settings, dead), headers=bearer(admin_key)) as c:
        wait_for_queue(c)
        for path in ("/v1/jobs", f"/v1/jobs/{new_job_id()}", f"/v1/jobs/{new_job_id()}/events"):
            r = c.get(path)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["detail"].startswith("storage unavailable")
        r = c.post("/v1/jobs", files={"file": ("a.mp4", b"abc", "video/mp4")})
        assert r.status_code == 503 and r.json()["detail"].startswith("storage unavailable")
        assert c.delete(f"/v1/jobs/{new_job_id()}").status_code == 503


def test_queue_down_refuses_submissions_with_503(settings, store, admin_key):
    s = dataclasses.replace(settings, nats_url=f"nats://127.0.0.1:{free_port()}",
                            decoder_addr=f"127.0.0.1:{free_port()}")
    with TestClient(create_app(s, store), headers=bearer(admin_key)) as c:
        r = c.post("/v1/jobs", files={"file": ("a.mp4", b"abc", "video/mp4")})
        assert r.status_code == 503 and "NATS" in r.json()["detail"]
        ready = c.get("/readyz").json()
        assert not ready["ready"] and not ready["dependencies"]["nats"]["ok"]


def test_operations_endpoints(client, api_settings):
    from gateway.api.operations_app import create_operations_app
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    deps = ready.json()["dependencies"]
    assert set(deps) == {"s3", "nats", "triton", "decoder", "pose2d", "lifter3d", "renderer"}
    assert deps["s3"]["ok"] and deps["nats"]["ok"] and not deps["decoder"]["ok"] and not deps["triton"]["ok"]
    # the public answer names no address and no error: those are for operators, on the operations port
    assert all(set(d) == {"ok"} for d in deps.values())
    for secret in (api_settings.decoder_addr, api_settings.triton_url, api_settings.s3_endpoint, "UNAVAILABLE"):
        assert secret not in ready.text
    assert client.get("/metrics").status_code == 404
    with TestClient(create_operations_app(client.app)) as ops:
        detailed = ops.get("/readyz")
        assert detailed.status_code == 503
        detail = detailed.json()["dependencies"]
        assert detail["decoder"]["detail"].startswith("UNAVAILABLE") and api_settings.decoder_addr in detail["decoder"]["detail"]
        metrics = ops.get("/metrics").text
        assert "hpe3d_gateway_upload_bytes_total" in metrics and "hpe3d_gateway_jobs_submitted_total" in metrics
    assert client.get("/").status_code == 200


def test_the_api_process_serves_its_operations_port_apart(api_settings, tmp_path):
    import os
    import subprocess
    import sys

    import httpx
    api_port, ops_port = free_port(), free_port()
    env = {**os.environ, **dataclasses.replace(api_settings, metrics_port=ops_port).env()}
    proc = subprocess.Popen([sys.executable, "-m", "gateway.api", "--port", str(api_port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "api.log", "w"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code == 200 and \
                        httpx.get(f"http://127.0.0.1:{ops_port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "api.log").read_text()[-2000:]
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5).status_code == 404
        assert "hpe3d_gateway_upload_bytes_total" in httpx.get(f"http://127.0.0.1:{ops_port}/metrics", timeout=5).text
        public = httpx.get(f"http://127.0.0.1:{api_port}/readyz", timeout=10)
        detailed = httpx.get(f"http://127.0.0.1:{ops_port}/readyz", timeout=10).json()
        assert public.status_code == 503 and api_settings.decoder_addr not in public.text
        assert "detail" in detailed["dependencies"]["decoder"]
        assert httpx.get(f"http://127.0.0.1:{ops_port}/v1/jobs", timeout=5).status_code == 404   # no API there
    finally:
        proc.terminate()   # uvicorn shuts down gracefully, then ends by the signal it caught
        assert proc.wait(timeout=40) in (0, -15)
        assert "Application shutdown complete" in (tmp_path / "api.log").read_text()


def test_openapi_documents_errors_and_bounds(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/jobs"]["post"]
    assert {"202", "400", "413", "415", "422", "503"} <= set(post["responses"])
    fields = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert fields["max_persons"]["maximum"] == 16 and fields["working_size"]["maximum"] == 4096
    assert {"202", "404", "409", "503"} <= set(spec["paths"]["/v1/jobs/{job_id}/retry"]["post"]["responses"])
    assert "503" in spec["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]


def test_models_list_needs_the_pose2d_stage(client):
    r = client.get("/v1/models")
    assert r.status_code == 503 and "pose2d" in r.json()["detail"]
    r = client.post("/v1/jobs", files={"file": ("a.mp4", b"abc", "video/mp4")}, data={"pose_model": "HRNet!"})
    assert r.status_code == 422 and "pose_model" in r.json()["detail"]
