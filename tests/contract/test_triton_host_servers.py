"""The CPU Triton host's two servers as real processes: ``tritonserver`` running our Python-backend
model (the default) bound to a non-loopback address, and PyTriton on the same model folder. Both
answer as the model does in this process; the default server keeps the APIs no remote client may use
(shared memory, statistics, the repository API) shut, and SIGTERM stops it with every process it
started and its serving folder gone."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tgrpc

from hpe3d_cli.local_stack import free_port
from services.common.pose_models import BLAZEPOSE_DETECTOR
from services.triton.repositories import REPOSITORY_DIR, load_runner, missing_model_files

pytestmark = [pytest.mark.contract,
              pytest.mark.skipif(bool(missing_model_files()),
                                 reason="BlazePose .tflite files absent: run `make models`")]

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent[int(entry)] = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        for child, par in parent.items():
            if par == p and child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Host:
    """``python -m services.triton.host`` on one model folder, ready on loopback."""

    def __init__(self, repository: Path, bind: str, server: str, log: Path):
        self.ports = [free_port() for _ in range(3)]
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.triton.host", "--repository", str(repository), "--host", bind,
                 "--grpc-port", str(self.ports[0]), "--http-port", str(self.ports[1]),
                 "--metrics-port", str(self.ports[2]), "--threads", "1", "--server", server],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}"})
        self.url = f"127.0.0.1:{self.ports[0]}"
        self.client = tgrpc.InferenceServerClient(self.url)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.client.is_server_ready() and self.client.is_model_ready(BLAZEPOSE_DETECTOR):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the {server} host did not get ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def detect(self, images: np.ndarray) -> dict[str, np.ndarray]:
        tensor = tgrpc.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        reply = self.client.infer(BLAZEPOSE_DETECTOR, [tensor])
        return {name: reply.as_numpy(name) for name in ("regressors", "scores")}

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """The BlazePose detector's model folder alone (links followed)."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPOSITORY_DIR / BLAZEPOSE_DETECTOR, repo / BLAZEPOSE_DETECTOR, symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return repo


@pytest.fixture(scope="module")
def pod_host(repository, tmp_path_factory):
    host = Host(repository, "0.0.0.0", "tritonserver", tmp_path_factory.mktemp("pod") / "host.log")
    yield host
    host.stop()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    images[1] = 0                               # nothing at all
    images[2, 60:170, 90:140] = (200, 160, 140)  # a block on noise
    return images


def test_tritonserver_answers_as_the_model_in_process(pod_host, images):
    want = load_runner(BLAZEPOSE_DETECTOR, num_threads=1).infer({"image": images})
    got = pod_host.detect(images)
    for name in want:
        assert got[name].shape == want[name].shape
        assert np.allclose(got[name], want[name], atol=1e-5), name
    config = pod_host.client.get_model_config(BLAZEPOSE_DETECTOR, as_json=True)["config"]
    assert int(config["max_batch_size"]) == 16 and [i["name"] for i in config["input"]] == ["image"]
    assert config["parameters"]["tflite_file"]["string_value"] == "pose_detection.tflite"


def test_a_server_bound_beyond_loopback_keeps_shared_memory_statistics_and_the_repository_api_shut(pod_host):
    import tritonclient.utils.shared_memory as shm

    client = pod_host.client
    with pytest.raises(Exception, match="restricted"):
        client.get_inference_statistics(BLAZEPOSE_DETECTOR)
    with pytest.raises(Exception, match="restricted"):
        client.get_system_shared_memory_status()
    with pytest.raises(Exception, match="restricted"):
        client.unload_model(BLAZEPOSE_DETECTOR)
    with pytest.raises(Exception, match="restricted"):
        client.get_model_repository_index()
    region = shm.create_shared_memory_region("hpe3d_test_refused", "/hpe3d_test_refused", 1024)
    try:
        with pytest.raises(Exception, match="restricted"):
            client.register_system_shared_memory("hpe3d_test_refused", "/hpe3d_test_refused", 1024)
    finally:
        shm.destroy_shared_memory_region(region)
    assert client.is_model_ready(BLAZEPOSE_DETECTOR)


def test_pytriton_answers_as_tritonserver(pod_host, repository, images, tmp_path):
    host = Host(repository, "127.0.0.1", "pytriton", tmp_path / "pytriton.log")
    try:
        got, want = host.detect(images), pod_host.detect(images)
        for name in want:
            assert np.allclose(got[name], want[name], atol=1e-5), name
    finally:
        host.stop()
    assert host.proc.returncode == 0


def test_sigterm_stops_tritonserver_its_stubs_and_removes_the_serving_folder(repository, images, tmp_path):
    host = Host(repository, "127.0.0.1", "tritonserver", tmp_path / "host.log")
    children = descendants(host.proc.pid)
    server = next(p for p in children if "tritonserver" in open(f"/proc/{p}/cmdline").read())
    serving = Path(os.readlink(f"/proc/{server}/cwd"))
    assert (serving / "models" / BLAZEPOSE_DETECTOR / "config.pbtxt").is_file()
    assert len(children) >= 2                        # tritonserver and the model's stub
    assert host.detect(images[:1])["scores"].shape == (1, 2254, 1)
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(60) == 0
    host.client.close()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in children if alive(p)]
    assert not serving.exists()


def test_a_host_killed_by_sigkill_takes_its_server_along_and_the_next_removes_its_leftovers(repository, tmp_path):
    first = Host(repository, "127.0.0.1", "tritonserver", tmp_path / "first.log")
    children = descendants(first.proc.pid)
    server = next(p for p in children if "tritonserver" in open(f"/proc/{p}/cmdline").read())
    serving = Path(os.readlink(f"/proc/{server}/cwd"))
    pools = sorted(Path("/dev/shm").glob(f"hpe3d-triton-{first.proc.pid}-*"))
    assert pools                                          # the stub's shared-memory pool
    first.proc.kill()
    first.proc.wait()
    first.client.close()
    deadline = time.monotonic() + 15
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in children if alive(p)]          # tritonserver died with the host, its stub with it
    assert serving.exists()                               # nobody could clean up
    second = Host(repository, "127.0.0.1", "tritonserver", tmp_path / "second.log")
    try:
        assert not serving.exists() and not [p for p in pools if p.exists()]
        assert f"removed {serving}" in second.log.read_text()
    finally:
        second.stop()
