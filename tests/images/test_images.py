"""The images, built and run: every image built with podman (``deploy/podman/images.py``), each one
listed to show it carries only its own service and runs as uid 10001, then the whole system (SeaweedFS,
NATS, the Triton host, the four stages, a worker, the API) played from the rendered ``podman`` overlay of
the Kubernetes manifests (``deploy/podman/kube_play.py``): readiness through the API's ``/readyz``, every
probe of the manifests answered by the running pods, the test clip submitted to the API container with
``hpe3d submit``, its artefacts checked and its poses equal to the local process stack's to 1e-6; then the
lifter3d container is killed with SIGKILL during a job, podman starts it again (restart policy Always), and
the job still finishes with the same poses.

Skips, saying why, where podman cannot run containers (not installed, not root, no working runtime):
``make podman`` installs it with apt-get as root, and ``deploy/podman/containers.conf`` holds the settings
these machines need (``CONTAINERS_CONF``, which this test sets when it is unset).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT, TEST_DATA

pytestmark = [pytest.mark.images]

CLIP = TEST_DATA / "two_people_office_24f.mp4"
NETWORK = "hpe3d-test-images"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "podman"
BUILD_TIMEOUT_S = 3600
READY_TIMEOUT_S = 600
JOB_TIMEOUT_S = 600
ATOL = 1e-6  # the fault tests' tolerance: identical up to float noise of JSON round trips
TERMINAL = ("succeeded", "failed", "cancelled")
os.environ.setdefault("CONTAINERS_CONF", str(ROOT / "deploy" / "podman" / "containers.conf"))



def _load(name: str):
    """A script of deploy/podman/ as a module (the folder is not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"deploy_podman_{name}", ROOT / "deploy" / "podman" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


image_builds = _load("images")
kube_play = _load("kube_play")

# what each hpe3d image may hold under /app: its own service, the shared code and the generated stubs
SHARED = ("proto/", "services/__init__.py", "services/common/")
OWN = {
    "decoder": ("services/decoder/",),
    "pose2d": ("services/pose2d/",),
    "lifter3d": ("services/lifter3d/",),
    "renderer": ("services/renderer/",),
    "pose2d-triton": ("services/triton/", "deploy/tools/upload_model_repository.py"),
    "gateway": ("gateway/__init__.py", "gateway/jobs/", "gateway/api/"),
    "worker": ("gateway/__init__.py", "gateway/jobs/", "gateway/worker/"),
}
# the project's own top-level packages, which no image may hold in its virtual environment
PROJECT_TOPS = ("services", "gateway", "training", "tests", "hpe3d_cli", "bench", "hpe3d")


def _podman_unusable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (`make podman` installs it with apt-get as root)"
    if os.geteuid() != 0:
        return "podman runs the images rootful here and this is not root"
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=120)
    if info.returncode != 0:
        return f"podman info fails: {info.stderr.strip()[-300:]}"
    return None


def podman(*args: str, check: bool = True, timeout: float = 300) -> str:
    run = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {run.stderr.strip()[-2000:]}")
    return run.stdout


@pytest.fixture(scope="module")
def built():
    """Every image, built (cached layers make a second build quick)."""
    reason = _podman_unusable()
    if reason:
        pytest.skip(reason)
    run = subprocess.run([sys.executable, str(ROOT / "deploy/podman/images.py"), "build", "--quiet"], cwd=ROOT,
                         capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert run.returncode == 0, f"make images failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    print(run.stdout[run.stdout.find("built on"):])
    return {spec.name: image_builds.image_ref(spec, "hpe3d", "0.1.0")
            for spec in image_builds.IMAGES + image_builds.STAND_INS}


# -- what each image holds -----------------------------------------------------------------------
LIST_FILES = """
import os, site, sys
for top, dirs, files in os.walk('/app'):
    dirs[:] = [d for d in dirs if d != '__pycache__']
    for f in files:
        print('app', os.path.relpath(os.path.join(top, f), '/app'))
for sp in site.getsitepackages():
    if os.path.isdir(sp):
        for name in os.listdir(sp):
            print('venv', name)
"""


@pytest.mark.parametrize("name", list(OWN))
def test_image_holds_only_its_service_and_runs_as_10001(built, name):
    ref = built[name]
    user = podman("image", "inspect", "--format", "{{.Config.User}}", ref).strip()
    assert user in ("10001", "10001:10001"), f"{ref} runs as {user!r}"
    out = podman("run", "--rm", "--network", "none", "--entrypoint", "python", ref, "-c", LIST_FILES)
    app = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("app ")]
    venv = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("venv ")]
    assert app, f"{ref} has nothing under /app"
    allowed = SHARED + OWN[name]
    foreign = sorted(p for p in app if not any(p == a or (a.endswith("/") and p.startswith(a)) for a in allowed))
    assert not foreign, f"{ref} holds files outside its service: {foreign[:20]}"
    own_files = [p for p in app if any(p.startswith(a) for a in OWN[name] if a.endswith("/"))]
    assert own_files, f"{ref} lacks its own service's code"
    assert not [v for v in venv if v in PROJECT_TOPS], f"{ref}'s virtual environment holds project code: {venv}"


# -- the system played from the manifests ----------------------------------------------------------
def _rendered() -> list[dict]:
    return kube_play.render(OVERLAY)


def _container(pod: str, container: str) -> str:
    return f"{pod}-{container}"  # how kube play names a Pod's container


def _pod_ip(pod: str, container: str) -> str:
    nets = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", _container(pod, container)))
    return nets[NETWORK]["IPAddress"]


def _logs(objects: list[dict], lines: int = 15) -> str:
    out = []
    for pod, container in _containers(objects):
        log = subprocess.run(["podman", "logs", "--tail", str(lines), _container(pod, container)],
                             capture_output=True, text=True)
        out.append(f"--- {pod}/{container}\n{log.stdout}{log.stderr}")
    return "\n".join(out)


def _containers(objects: list[dict]) -> list[tuple[str, str]]:
    return [(o["metadata"]["name"], c["name"]) for o in objects if o["kind"] in kube_play.WORKLOADS
            for c in o["spec"]["template"]["spec"]["containers"]]


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory):
    """The test clip through the local process stack: the poses the containers must give."""
    from hpe3d_cli.local_stack import LocalStack
    with LocalStack(workdir=tmp_path_factory.mktemp("process-stack"), startup_timeout_s=240) as stack:
        job = _run_job(stack.gateway_url, stack.api_key, JOB_TIMEOUT_S)
        assert job["state"] == "succeeded", job
        return _poses(stack.gateway_url, stack.api_key, job)


@pytest.fixture(scope="module")
def system(built, reference):
    """The podman overlay played; the API's base URL (the gateway pod's address on the podman network)."""
    objects = _rendered()
    try:
        kube_play.up(OVERLAY, NETWORK)
        url = f"http://{_pod_ip('gateway', 'gateway')}:8080"
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            try:
                resp = httpx.get(f"{url}/readyz", timeout=5)
                if resp.status_code == 200:
                    break
                last = resp.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(2)
        else:
            raise AssertionError(f"/readyz not 200 after {READY_TIMEOUT_S} s: {last}\n{_logs(objects)}")
        # the first admin key, made in the API container as an operator does (deploy/README.md)
        made = podman("exec", _container("gateway", "gateway"), "python", "-m", "gateway.api.api_keys", "create",
                      "--name", "images-test", "--admin")
        yield {"url": url, "objects": objects, "key": made.strip().splitlines()[-1]}
    finally:
        kube_play.down(NETWORK, quiet=True)


def _probe_ok(pod_ip: str, ports: dict, probe: dict) -> str | None:
    """None when the probe passes against the running pod, else what it got."""
    if "grpc" in probe:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        port = probe["grpc"]["port"]
        with grpc.insecure_channel(f"{pod_ip}:{port}") as ch:
            try:
                reply = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")), timeout=5)
            except grpc.RpcError as exc:
                return f"grpc health on :{port}: {exc.code()}"
        return None if reply.status == health_pb2.HealthCheckResponse.SERVING else f"grpc :{port} {reply.status}"
    if "httpGet" in probe:
        port = probe["httpGet"]["port"]
        port = ports.get(port, port)
        try:
            resp = httpx.get(f"http://{pod_ip}:{port}{probe['httpGet'].get('path', '/')}", timeout=5)
        except httpx.HTTPError as exc:
            return repr(exc)
        return None if 200 <= resp.status_code < 400 else f"HTTP {resp.status_code} on :{port}"
    return f"a probe this test cannot run: {probe}"


def _run_job(url: str, key: str, timeout_s: float, on_progress=None) -> dict:
    auth = {"Authorization": f"Bearer {key}"}
    with open(CLIP, "rb") as f:
        resp = httpx.post(f"{url}/v1/jobs", files={"file": (CLIP.name, f, "video/mp4")}, headers=auth, timeout=120)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=auth, timeout=10).json()
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if on_progress is not None:
            on_progress(job)
        if job["state"] in TERMINAL:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished after {timeout_s:.0f} s")


def _poses(url: str, key: str, job: dict) -> dict:
    link = next(a for a in job["links"]["artifacts"] if a["name"] == "poses.json")
    return httpx.get(url + link["url"], headers={"Authorization": f"Bearer {key}"}, timeout=60).json()


def test_every_probe_of_the_manifests_answers(system):
    failures, checked = [], 0
    for obj in system["objects"]:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = obj["metadata"]["name"]
        for c in obj["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
            ip = _pod_ip(pod, c["name"])
            if not {"readinessProbe", "livenessProbe"} <= set(c):
                failures.append(f"{pod}/{c['name']} lacks a readiness or liveness probe")
            for kind in kube_play.PROBES:
                if kind in c:
                    checked += 1
                    got = _probe_ok(ip, ports, c[kind])
                    if got:
                        failures.append(f"{pod}/{c['name']} {kind}: {got}")
    assert not failures, "\n".join(failures)
    assert checked >= 18, f"only {checked} probes found in the manifests"


def test_storage_takes_only_the_secrets_credentials(system):
    """S3 (SeaweedFS in MinIO's place) is guarded by the hpe3d-s3 Secret, as MinIO's root user is."""
    import base64

    from minio import Minio
    from minio.error import S3Error
    secret = next(o for o in system["objects"] if o["kind"] == "Secret" and o["metadata"]["name"].startswith("hpe3d-s3"))
    key, password = (base64.b64decode(secret["data"][k]).decode() for k in ("access-key", "secret-key"))
    endpoint = f"{_pod_ip('minio', 'minio')}:9000"
    assert "hpe3d" in {b.name for b in Minio(endpoint, key, password, secure=False).list_buckets()}
    with pytest.raises(S3Error):
        Minio(endpoint, key, "not-the-secret", secure=False).list_buckets()


def test_a_clip_through_the_api_container_gives_the_process_stacks_poses(system, reference, tmp_path):
    from tests.faults.test_kill_parts import assert_same_poses
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "hpe3d_cli.cli", "submit", str(CLIP), "--url", system["url"],
                          "--key", system["key"], "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert run.returncode == 0, f"hpe3d submit: {run.stdout[-2000:]}{run.stderr[-2000:]}\n{_logs(system['objects'])}"
    names = {p.name for p in out.iterdir()}
    for expected in ("poses.json", "render.mp4", "thumbnail.jpg", "joints3d.csv", "joint_angles.csv"):
        assert expected in names, f"{expected} missing from {sorted(names)}"
    assert any(n.startswith("person_") and n.endswith(".bvh") for n in names), sorted(names)
    doc = json.loads((out / "poses.json").read_text())
    assert len(doc["frames"]) == 24
    import av
    with av.open(str(out / "render.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 24
    assert_same_poses(reference, doc)


def test_a_killed_stage_container_is_restarted_and_the_job_finishes(system, reference):
    """lifter3d is killed (SIGKILL to its process, as a crash would) once the job has decoded its frames:
    the lifter call meets it down or starting again, and the worker waits it out."""
    from tests.faults.test_kill_parts import assert_same_poses
    name = _container("lifter3d", "lifter3d")
    restarts = int(podman("inspect", "--format", "{{.RestartCount}}", name).strip() or 0)
    killed = {}

    def kill_once_decoded(job: dict) -> None:
        decoded = (job["progress"].get("decoder") or {}).get("done", 0)
        if decoded >= 1 and not killed:
            pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).strip())
            os.kill(pid, signal.SIGKILL)
            killed["at"] = job["progress"]

    job = _run_job(system["url"], system["key"], JOB_TIMEOUT_S, kill_once_decoded)
    assert killed, f"the job finished before it was decoded: {job}"
    print(f"lifter3d killed at progress {killed['at']}")
    assert job["state"] == "succeeded", f"after killing lifter3d at {killed['at']}: {job}\n{_logs(system['objects'])}"
    after = int(podman("inspect", "--format", "{{.RestartCount}}", name).strip() or 0)
    assert after == restarts + 1, f"{name} restarted {after - restarts} times, not once"
    assert podman("inspect", "--format", "{{.State.Status}}", name).strip() == "running"
    assert_same_poses(reference, _poses(system["url"], system["key"], job))


def test_manifests_played_are_the_rendered_overlay():
    """Nothing of the system comes from elsewhere: every hpe3d container kube_play starts is a container of
    the rendered overlay with the same image, command, environment and user."""
    objects = _rendered()
    _, documents, _ = kube_play.to_podman(objects)
    pods = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Pod"}
    for obj in objects:
        if obj["kind"] not in kube_play.WORKLOADS:
            continue
        spec = obj["spec"]["template"]["spec"]
        played = pods[obj["metadata"]["name"]]["spec"]
        assert played.get("securityContext") == spec.get("securityContext")
        for theirs, ours in zip(spec["containers"], played["containers"], strict=True):
            for key in ("image", "command", "args", "env", "envFrom", "securityContext", "resources"):
                assert ours.get(key) == theirs.get(key), f"{obj['metadata']['name']}/{theirs['name']}: {key}"
            # every mount but a Memory emptyDir at /dev/shm, which podman's own tmpfs /dev/shm stands for
            kept = [m for m in theirs.get("volumeMounts", []) if m["mountPath"] != "/dev/shm"]
            assert ours.get("volumeMounts", []) == kept, f"{obj['metadata']['name']}/{theirs['name']}: volumeMounts"
    assert yaml.safe_dump_all(documents)  # a document podman can read
