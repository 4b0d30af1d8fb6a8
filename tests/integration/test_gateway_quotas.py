"""Per-owner quotas through the REST API (real SeaweedFS and nats-server, no worker): over a limit a
submission gets 429 with Retry-After and an RFC 9457 body naming the limit, nothing already stored
is touched, another owner is not limited by it, and an admin is not limited at all."""
from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from services.lifter3d.lift import DEFAULT_WEIGHTS

from gateway.api.app import create_app
from gateway.jobs.manifest import JobManifest, JobState
from hpe3d_cli.local_stack import free_port
from tests.conftest import bearer, make_api_key
from tests.integration.test_gateway_api import wait_for_queue


@pytest.fixture(scope="module")
def client(settings, store, nats_url):
    dead = {f"{s}_addr": f"127.0.0.1:{free_port()}" for s in ("decoder", "pose2d", "lifter3d", "renderer")}
    limited = dataclasses.replace(settings, nats_url=nats_url, triton_url=f"127.0.0.1:{free_port()}",
                                  quota_jobs_in_flight=2, quota_uploads_per_hour=3, quota_stored_mb=1,
                                  quota_lifter_weights=2, **dead)
    with TestClient(create_app(limited, store)) as c:
        wait_for_queue(c)
        yield c


def submit(client, key: str, size: int = 1000):
    return client.post("/v1/jobs", files={"file": ("clip.mp4", b"v" * size, "video/mp4")}, headers=bearer(key))


def finish(store, job_id: str) -> None:
    job = JobManifest.from_json(store.get_bytes(f"jobs/{job_id}/job.json"))
    job.state = JobState.succeeded
    store.put_bytes(job.key, job.to_json())


def assert_refused(r, limit: str) -> dict:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["status"] == 429 and body["limit"] == limit and body["type"].startswith("urn:hpe3d:")
    assert body["retry_after_s"] == int(r.headers["retry-after"])
    return body


def test_jobs_in_flight_and_uploads_per_hour(client, store):
    key, other, admin = make_api_key(store, "busy"), make_api_key(store, "calm"), make_api_key(store, "ops", admin=True)
    first, second = submit(client, key).json(), submit(client, key).json()
    stored = sorted(store.list_keys("jobs/"))
    body = assert_refused(submit(client, key), "HPE3D_QUOTA_JOBS_IN_FLIGHT")
    assert body["allowed"] == 2 and body["used"] == 2 and "queued or running" in body["detail"]
    assert sorted(store.list_keys("jobs/")) == stored  # the refusal stored nothing and lost nothing
    for job in (first, second):
        assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(key)).json()["state"] == "queued"
    assert submit(client, other).status_code == 202  # another owner has limits of their own
    for _ in range(3):
        assert submit(client, admin).status_code == 202  # admins are not limited

    finish(store, first["id"])  # one job done: one more may run
    third = submit(client, key)
    assert third.status_code == 202, third.text
    finish(store, second["id"])
    body = assert_refused(submit(client, key), "HPE3D_QUOTA_UPLOADS_PER_HOUR")
    assert body["allowed"] == 3 and body["used"] == 3 and int(body["retry_after_s"]) <= 3600
    # deleting jobs does not give their uploads back
    for job in (first, second):
        assert client.delete(f"/v1/jobs/{job['id']}", headers=bearer(key)).status_code == 204
    assert_refused(submit(client, key), "HPE3D_QUOTA_UPLOADS_PER_HOUR")


def test_bytes_stored(client, store):
    key = make_api_key(store, "hoarder")
    kept = submit(client, key, 700 * 1024)
    assert kept.status_code == 202, kept.text
    before = sorted(store.list_keys("jobs/"))
    body = assert_refused(submit(client, key, 700 * 1024), "HPE3D_QUOTA_STORED_MB")
    assert body["allowed"] == 1 and "over the 1 MB" in body["detail"]
    assert sorted(store.list_keys("jobs/")) == before  # the refused upload is gone, the kept job whole
    assert client.get(f"/v1/jobs/{kept.json()['id']}", headers=bearer(key)).status_code == 200
    assert submit(client, key, 200 * 1024).status_code == 202  # what still fits is accepted
    finish(store, kept.json()["id"])
    assert_refused(submit(client, key, 300 * 1024), "HPE3D_QUOTA_STORED_MB")


def test_lifter_weights_kept_per_owner(client, store):
    key, other = make_api_key(store, "adapter"), make_api_key(store, "someone")
    weights = DEFAULT_WEIGHTS.read_bytes()

    def upload(name: str, who: str = key):
        return client.post("/v1/lifter-weights", data={"name": name}, headers=bearer(who),
                           files={"weights": ("w.pt", weights, "application/octet-stream")})
    assert upload("one").status_code == 201 and upload("two").status_code == 201
    body = assert_refused(upload("three"), "HPE3D_QUOTA_LIFTER_WEIGHTS")
    assert body["allowed"] == 2 and body["used"] == 2 and "hpe3d weights delete" in body["detail"]
    names = {w["name"] for w in client.get("/v1/lifter-weights", headers=bearer(key)).json()["weights"]}
    assert {"one", "two"} <= names and "three" not in names  # the refusal stored nothing
    assert upload("two").status_code == 201  # replacing weights of the same name is not a new one
    assert upload("three", other).status_code == 201  # another owner has a limit of their own
    assert client.delete("/v1/lifter-weights/one", headers=bearer(key)).status_code == 204
    assert upload("three").status_code == 201  # a deletion makes room
