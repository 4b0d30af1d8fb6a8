"""Who may do what through the REST API: API keys, OpenID Connect JWTs verified against a JWKS served
here on loopback, the page's session cookie, ownership (another owner's job answers 404 on every
route), the paginated job list, and 405 answers naming every method of a path. A real SeaweedFS
store and nats-server; no worker runs, so submitted jobs stay queued."""
from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import time
from datetime import datetime, timezone

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from gateway.api.api_keys import ApiKeyStore
from gateway.api.app import create_app
from gateway.api.browser_sessions import SESSION_COOKIE
from gateway.jobs import job_index
from gateway.jobs.manifest import JobManifest, JobState, StoredArtifact, new_job_id
from hpe3d_cli.local_stack import free_port
from tests.conftest import bearer, make_api_key
from tests.integration.test_gateway_api import wait_for_queue

AUDIENCE = "hpe3d-test"


class Issuer:
    """An OpenID Connect issuer on loopback: its discovery document and JWKS (one RSA key, kid k1)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        documents = {"/.well-known/openid-configuration": {"issuer": self.url, "jwks_uri": f"{self.url}/jwks"},
                     "/jwks": {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, sub: str = "ada", expires_in: float = 300, audience: str = AUDIENCE, key=None) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "sub": sub, "aud": audience, "iat": now, "exp": now + int(expires_in)}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def issuer():
    server = Issuer()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def api_settings(settings, nats_url, issuer):
    dead = {f"{s}_addr": f"127.0.0.1:{free_port()}" for s in ("decoder", "pose2d", "lifter3d", "renderer")}
    return dataclasses.replace(settings, nats_url=nats_url, triton_url=f"127.0.0.1:{free_port()}",
                               oidc_issuer=issuer.url, oidc_audience=AUDIENCE, quota_jobs_in_flight=0,
                               quota_uploads_per_hour=0, quota_stored_mb=0, **dead)


@pytest.fixture(scope="module")
def keys(store):
    return {"alice": make_api_key(store, "alice"), "bob": make_api_key(store, "bob"),
            "admin": make_api_key(store, "root", admin=True)}


@pytest.fixture(scope="module")
def client(api_settings, store):
    with TestClient(create_app(api_settings, store)) as c:
        wait_for_queue(c)
        yield c


def submit(client, key: str, name: str = "clip.mp4") -> dict:
    r = client.post("/v1/jobs", files={"file": (name, b"not really a video", "video/mp4")}, headers=bearer(key))
    assert r.status_code == 202, r.text
    return r.json()


def finished_job(store, user: str, created_at: datetime | None = None) -> JobManifest:
    """A succeeded job of ``user`` with derived objects and its index entries, as a worker leaves one."""
    job_id = new_job_id()
    for key in (f"jobs/{job_id}/input/clip.mp4", f"jobs/{job_id}/segments/00000/frames.pb",
                f"jobs/{job_id}/segments/00000/poses2d.pb", f"jobs/{job_id}/poses3d.pb"):
        store.put_bytes(key, b"x")
    out = f"jobs/{job_id}/output/poses.json"
    store.put_bytes(out, b"{}", "application/json")
    size, etag = store.stat(out)
    job = JobManifest(id=job_id, input_key=f"jobs/{job_id}/input/clip.mp4", input_name="clip.mp4", input_bytes=1,
                      state=JobState.succeeded, user=user, created_at=created_at or datetime.now(timezone.utc),
                      artifacts={"poses.json": StoredArtifact(key=out, content_type="application/json",
                                                              size_bytes=size, etag=etag)})
    store.put_bytes(job.key, job.to_json())
    for key in job_index.keys_of(job):
        store.put_bytes(key, b"")
    return job


def routes_of(job_id: str) -> list[tuple[str, str]]:
    base = f"/v1/jobs/{job_id}"
    return [("GET", base), ("GET", f"{base}/events"), ("GET", f"{base}/artifacts/poses.json"),
            ("POST", f"{base}/retry"), ("DELETE", base)]


def test_another_owners_job_is_404_on_every_route_and_absent_from_their_list(client, store, keys):
    queued = submit(client, keys["alice"])
    done = finished_job(store, "key:alice")
    assert queued["user"] == "key:alice" and queued["expires_at"]
    for job_id in (queued["id"], done.id):
        for method, path in routes_of(job_id):
            r = client.request(method, path, headers=bearer(keys["bob"]))
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert r.json()["detail"] == f"no job {job_id}"
    bobs = client.get("/v1/jobs", headers=bearer(keys["bob"])).json()["jobs"]
    assert not {queued["id"], done.id} & {j["id"] for j in bobs}
    alices = client.get("/v1/jobs", headers=bearer(keys["alice"])).json()["jobs"]
    assert {queued["id"], done.id} <= {j["id"] for j in alices}
    assert all(j["user"] == "key:alice" for j in alices)
    # the owner and an admin reach both
    for key in (keys["alice"], keys["admin"]):
        assert client.get(f"/v1/jobs/{done.id}/artifacts/poses.json", headers=bearer(key)).content == b"{}"
    everyone = client.get("/v1/jobs?limit=500", headers=bearer(keys["admin"])).json()["jobs"]
    assert {queued["id"], done.id} <= {j["id"] for j in everyone}
    # X-API-Key is the same key
    assert client.get(f"/v1/jobs/{queued['id']}", headers={"X-API-Key": keys["alice"]}).status_code == 200
    assert client.delete(f"/v1/jobs/{queued['id']}", headers=bearer(keys["alice"])).status_code == 204


def test_no_key_is_401_with_www_authenticate_on_every_route_that_returns_data(client, keys):
    spec = client.get("/openapi.json").json()
    job_id = new_job_id()
    open_routes = {("get", "/healthz"), ("get", "/readyz"), ("delete", "/v1/session")}
    tried = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            if (method, path) in open_routes:
                continue
            url = path.replace("{job_id}", job_id).replace("{name}", "poses.json").replace("{key_id}", "0" * 16)
            for headers in ({}, bearer("hpe3d_0123456789abcdef_" + "x" * 43), bearer("not-a-key")):
                r = client.request(method.upper(), url, headers=headers)
                assert r.status_code == 401, (method, url, headers, r.status_code, r.text)
                challenge = r.headers["www-authenticate"]
                assert challenge.startswith('Bearer realm="hpe3d"'), challenge
                assert ("invalid_token" in challenge) == bool(headers), challenge
            tried += 1
    assert tried >= 12
    for path in ("/healthz", "/", f"/jobs/{job_id}", "/static/js/main.js", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_a_revoked_key_is_401_at_once_and_keys_are_managed_by_admins(client, store, keys):
    made = client.post("/v1/keys", json={"name": "carol"}, headers=bearer(keys["admin"]))
    assert made.status_code == 201, made.text
    carol = made.json()
    assert carol["key"].startswith("hpe3d_") and not carol["admin"]
    assert client.get("/v1/session", headers=bearer(carol["key"])).json()["user"] == "key:carol"
    # only the hash is stored
    stored = store.get_bytes(f"auth/keys/{carol['id']}.json").decode()
    assert carol["key"] not in stored and carol["key"].split("_", 2)[2] not in stored
    assert client.post("/v1/keys", json={"name": "eve"}, headers=bearer(carol["key"])).status_code == 403
    listed = client.get("/v1/keys", headers=bearer(keys["admin"])).json()["keys"]
    assert carol["id"] in {k["id"] for k in listed} and all("key" not in k for k in listed)
    assert client.delete(f"/v1/keys/{carol['id']}", headers=bearer(keys["admin"])).status_code == 204
    r = client.get("/v1/jobs", headers=bearer(carol["key"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert client.delete(f"/v1/keys/{'f' * 16}", headers=bearer(keys["admin"])).status_code == 404
    # a key with the right id but a wrong secret
    alice_id = keys["alice"].split("_")[1]
    assert client.get("/v1/jobs", headers=bearer(f"hpe3d_{alice_id}_{'A' * 43}")).status_code == 401


def test_oidc_tokens_are_verified_against_the_issuers_jwks(client, issuer):
    good = issuer.token("ada")
    who = client.get("/v1/session", headers=bearer(good))
    assert who.status_code == 200 and who.json()["user"] == "oidc:ada" and not who.json()["admin"]
    job = submit(client, good)
    assert job["user"] == "oidc:ada"
    assert client.get(f"/v1/jobs/{job['id']}", headers=bearer(issuer.token("someone-else"))).status_code == 404
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad, why in ((issuer.token("ada", expires_in=-120), "expired"),
                     (issuer.token("ada", key=stranger), "Signature verification failed"),
                     (issuer.token("ada", audience="another-app"), "Audience"),
                     (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "")):
        r = client.get(f"/v1/jobs/{job['id']}", headers=bearer(bad))
        assert r.status_code == 401, (why, r.text)
        assert why in r.json()["detail"] and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert client.delete(f"/v1/jobs/{job['id']}", headers=bearer(good)).status_code == 204


def test_the_session_cookie_opens_reads_only_and_ends_with_its_key(client, store, keys):
    dave_record, dave = ApiKeyStore(store).create("dave")
    job = finished_job(store, "key:dave")
    signed_in = client.post("/v1/session", headers=bearer(dave))
    assert signed_in.status_code == 200 and signed_in.json()["session_expires_at"]
    cookie = signed_in.cookies[SESSION_COOKIE]
    set_cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    client.cookies.clear()
    jar = {SESSION_COOKIE: cookie}
    url = f"/v1/jobs/{job.id}/artifacts/poses.json"
    assert client.get(url, cookies=jar).content == b"{}"
    assert client.get(f"/v1/jobs/{job.id}/events", cookies=jar).status_code == 200
    assert client.delete(f"/v1/jobs/{job.id}", cookies=jar).status_code == 401  # changes need the key
    assert client.post("/v1/session", cookies=jar).status_code == 401  # a session cannot renew itself
    assert client.get(url, cookies={SESSION_COOKIE: cookie[:-2] + "xx"}).status_code == 401
    ApiKeyStore(store).revoke(dave_record.id)
    assert client.get(url, cookies=jar).status_code == 401
    assert client.delete("/v1/session", cookies=jar).status_code == 204
    client.cookies.clear()


def test_the_job_list_is_paged_with_a_cursor_from_the_index(client, store, keys):
    erin = make_api_key(store, "erin")
    ids = [submit(client, erin, f"clip{i}.mp4")["id"] for i in range(3)]
    first = client.get("/v1/jobs?limit=2", headers=bearer(erin)).json()
    assert [j["id"] for j in first["jobs"]] == ids[:0:-1] and first["next_cursor"]
    second = client.get(f"/v1/jobs?limit=2&cursor={first['next_cursor']}", headers=bearer(erin)).json()
    assert [j["id"] for j in second["jobs"]] == ids[:1] and second["next_cursor"] is None
    assert client.get("/v1/jobs?cursor=../../x", headers=bearer(erin)).status_code == 422
    for job_id in ids:
        assert client.delete(f"/v1/jobs/{job_id}", headers=bearer(erin)).status_code == 204
    assert client.get("/v1/jobs", headers=bearer(erin)).json() == {"jobs": [], "next_cursor": None}


def test_delete_of_a_finished_job_leaves_nothing_of_it_in_the_bucket(client, store, keys):
    job = finished_job(store, "key:alice")
    before = [k for k in store.list_keys("") if job.id in k]
    assert len(before) >= 9  # input, segments, poses, output, manifest and the index entries
    assert client.delete(f"/v1/jobs/{job.id}", headers=bearer(keys["alice"])).status_code == 204
    assert [k for k in store.list_keys("") if job.id in k] == []


def test_405_and_options_name_every_method_of_the_path(client, keys):
    job_id = new_job_id()
    for method in ("OPTIONS", "PUT", "PATCH"):
        r = client.request(method, "/v1/jobs", headers=bearer(keys["alice"]))
        assert r.status_code == 405 and r.headers["allow"] == "GET, POST", (method, r.headers)
        r = client.request(method, f"/v1/jobs/{job_id}")
        assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET", (method, r.headers)
    assert client.options("/v1/jobs/{job_id}/retry".replace("{job_id}", job_id)).headers["allow"] == "POST"
