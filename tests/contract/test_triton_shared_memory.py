"""Tensors in system shared memory between the pose2d clients and the real Triton host (PyTriton on
loopback): the same landmarks, boxes and tracks as with the tensors in the gRPC messages, regions
registered once and reused, registered again after the server forgot them, and freed on close."""
from __future__ import annotations

import os

import av
import numpy as np
import pytest
import tritonclient.grpc as tgrpc

from services.pose2d.client import TritonBlazePose
from services.pose2d.keypoint_followers import BlazePoseFollower
from services.pose2d.people import PeopleOptions, track_people
from services.pose2d.person_detector import TritonPersonDetector
from services.triton.repositories import REPOSITORY_DIR, missing_model_files
from tests.conftest import TEST_DATA

pytestmark = [pytest.mark.contract,
              pytest.mark.skipif(bool(missing_model_files()) or not (REPOSITORY_DIR / "person_detector" / "1" /
                                                                     "model.onnx").is_file(),
                                 reason="model files absent: run `make models` and `make detector`")]

CLIP = TEST_DATA / "two_people_office_24f.mp4"


@pytest.fixture(scope="module")
def frames():
    with av.open(str(CLIP)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def clients(triton_stack):
    url = triton_stack.settings.triton_url
    made = {mode: (TritonBlazePose(url, shared_memory=mode), TritonPersonDetector(url, shared_memory=mode))
            for mode in ("auto", "off")}
    yield made
    for blazepose, detector in made.values():
        blazepose.close()
        detector.close()


def registered(url: str) -> set[str]:
    client = tgrpc.InferenceServerClient(url)
    try:
        return {r.name for r in client.get_system_shared_memory_status().regions.values()}
    finally:
        client.close()


def test_a_loopback_server_gets_the_tensors_in_shared_memory(clients, frames, triton_stack):
    blazepose, detector = clients["auto"]
    assert blazepose.tensors.shared_memory and detector.tensors.shared_memory
    assert not clients["off"][0].tensors.shared_memory
    track_people(frames[:2], detector, BlazePoseFollower(blazepose), PeopleOptions(max_persons=2))
    assert blazepose.tensors.shared_memory and detector.tensors.shared_memory   # not refused, no fallback
    names = registered(triton_stack.settings.triton_url)
    ours = {n for n in names if n.startswith(blazepose.tensors.shm._prefix)}   # noqa: SLF001
    assert ours, f"no region of the BlazePose client among {names}"


def test_shared_memory_gives_the_same_tracks_and_landmarks_as_grpc(clients, frames):
    """The whole 2D path on a real two-person clip (detector, landmarks with heatmaps, tracker)."""
    results = {}
    for mode, (blazepose, detector) in clients.items():
        results[mode] = track_people(frames, detector, BlazePoseFollower(blazepose), PeopleOptions(max_persons=4))
    shared, plain = results["auto"], results["off"]
    assert sum(len(people) for people in plain) >= len(frames)          # someone in every frame, at least
    assert [[p.track_id for p in people] for people in shared] == [[p.track_id for p in people] for people in plain]
    for people_shm, people_grpc in zip(shared, plain):
        for a, b in zip(people_shm, people_grpc):
            np.testing.assert_array_equal(a.found.blazepose33, b.found.blazepose33)
            np.testing.assert_array_equal(a.found.coco17, b.found.coco17)
            assert a.found.box == b.found.box


def test_outputs_equal_for_batches_larger_than_before(clients, frames):
    """A larger request than any before grows the slot's regions; the outputs stay those of gRPC."""
    blazepose, _ = clients["auto"]
    crops = np.stack([f[40:296, 200:456] for f in frames[:5]])[..., ::-1].copy()
    shared = blazepose.landmarks(crops)
    plain = clients["off"][0].landmarks(crops)
    assert set(shared) == set(plain)
    for name in plain:
        np.testing.assert_array_equal(shared[name], plain[name])


def test_regions_the_server_forgot_are_registered_again(triton_stack, frames):
    url = triton_stack.settings.triton_url
    detector = TritonPersonDetector(url, shared_memory="on")
    try:
        image = np.zeros((1, 416, 416, 3), np.uint8)
        image[0, :360] = frames[0][:, :416, ::-1]
        first = detector.infer(image)
        admin = tgrpc.InferenceServerClient(url)
        try:
            for name in registered(url):
                if name.startswith(detector.tensors.shm._prefix):   # noqa: SLF001
                    admin.unregister_system_shared_memory(name)       # as a restarted server would have none
        finally:
            admin.close()
        assert not any(n.startswith(detector.tensors.shm._prefix) for n in registered(url))   # noqa: SLF001
        again = detector.infer(image)
        assert detector.tensors.shared_memory
        assert any(n.startswith(detector.tensors.shm._prefix) for n in registered(url))   # noqa: SLF001
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
    finally:
        detector.close()


def test_close_unregisters_and_frees_the_regions(triton_stack, frames):
    url = triton_stack.settings.triton_url
    blazepose = TritonBlazePose(url, shared_memory="on")
    blazepose.landmarks(np.zeros((1, 256, 256, 3), np.uint8))
    prefix = blazepose.tensors.shm._prefix   # noqa: SLF001
    assert any(n.startswith(prefix) for n in registered(url))
    assert any(f.startswith(prefix) for f in os.listdir("/dev/shm"))
    blazepose.close()
    assert not any(n.startswith(prefix) for n in registered(url))
    assert not any(f.startswith(prefix) for f in os.listdir("/dev/shm"))


def test_regions_of_a_killed_client_are_freed_by_the_next(triton_stack):
    """A client process killed before it could unregister leaves its registrations behind (Python's
    resource tracker unlinks the files, but the server keeps them mapped); the next client process frees
    them before its first region."""
    import subprocess
    import sys
    import textwrap

    url = triton_stack.settings.triton_url
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, numpy as np
        from services.pose2d.client import TritonBlazePose
        client = TritonBlazePose({url!r}, shared_memory="on")
        client.landmarks(np.zeros((1, 256, 256, 3), np.uint8))
        print(os.getpid(), flush=True)
        os._exit(0)                                      # no close(): as a kill -9 would leave it
        """)], capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    prefix = f"hpe3d_{int(killed.stdout.split()[-1])}_"
    assert any(n.startswith(prefix) for n in registered(url))     # the server still maps them
    subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import numpy as np
        from services.pose2d.client import TritonBlazePose
        client = TritonBlazePose({url!r}, shared_memory="on")
        client.landmarks(np.zeros((1, 256, 256, 3), np.uint8))
        client.close()
        """)], check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert not any(f.startswith(prefix) for f in os.listdir("/dev/shm"))
    assert not any(n.startswith(prefix) for n in registered(url))
