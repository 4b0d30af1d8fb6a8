"""Pose2D over real gRPC on loopback, with a real S3 store and a real Triton server (the PyTriton
host); and the model repository served by the real ``tritonserver`` binary, as the official image
would serve it from S3, answering exactly as the PyTriton host does."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from hpe3d.v1 import common_pb2, pose2d_pb2, pose2d_pb2_grpc
from hpe3d_cli.local_stack import free_port
from services.common import grpc_server
from services.common.arrays import from_proto
from services.pose2d.server import register
from services.common.pose_models import BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS
from services.triton.repositories import REPOSITORY_DIR, missing_model_files

pytestmark = [pytest.mark.contract,
              pytest.mark.skipif(bool(missing_model_files()),
                                 reason="BlazePose .tflite files absent: run `make models`")]

DATA = Path(__file__).resolve().parent.parent / "data"
CLIP = DATA / "two_people_office_24f.mp4"


def segment_of(frames: list[np.ndarray], start: int, source: tuple[int, int]) -> common_pb2.FrameSegment:
    h, w = frames[0].shape[:2]
    seg = common_pb2.FrameSegment(start_frame=start, width=w, height=h, source_width=source[0],
                                  source_height=source[1], timestamps_s=[(start + i) / 30 for i in range(len(frames))])
    seg.jpeg.extend(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames)
    return seg


@pytest.fixture(scope="module")
def clip_frames():
    if not CLIP.exists():
        pytest.skip(f"{CLIP} absent")
    with av.open(str(CLIP)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def start_pose2d(store, settings):
    return grpc_server.start_server(lambda s: register(s, store, settings), ["hpe3d.v1.Pose2D"], port=0)


@pytest.fixture(scope="module")
def pose2d(store, settings, triton_stack):
    stage_settings = dataclasses.replace(settings, triton_url=triton_stack.settings.triton_url)
    stage = start_pose2d(store, stage_settings)
    with grpc_server.channel(f"127.0.0.1:{stage.port}") as ch:
        yield pose2d_pb2_grpc.Pose2DStub(ch)
    stage.stop(0)


def put_segment(store, key, segment):
    ref = store.put_message(key, segment)
    return common_pb2.SegmentRef(job_id="pose2d-test", index=0, start_frame=segment.start_frame,
                                 frame_count=len(segment.jpeg), frames=ref)


def test_estimate_finds_the_people_of_the_office_clip(pose2d, store, clip_frames):
    # working 640x360 JPEGs of a 1280x720 original: keypoints come back in 1280x720 pixels
    source = (1280, 720)
    seg_ref = put_segment(store, "jobs/pose2d-test/job1/segments/00000.pb", segment_of(clip_frames, 100, source))
    out = store.ref("jobs/pose2d-test/job1/poses2d/00000.pb")
    reply = pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=seg_ref, output=out, max_persons=2), timeout=300)
    poses = reply.poses
    assert (poses.start_frame, poses.frame_count, len(poses.frames)) == (100, 24, 24)
    assert [f.frame_index for f in poses.frames] == list(range(100, 124))
    assert poses.frames[3].timestamp_s == pytest.approx(103 / 30)
    assert reply.frames_with_person >= 22
    assert sum(1 for f in poses.frames if len(f.persons) == 2) >= 2
    assert reply.stored.key == out.key
    assert store.get_message(out, common_pb2.Poses2D) == poses
    for frame in poses.frames:
        ids = [p.track_id for p in frame.persons]
        assert len(ids) == len(set(ids))
        for person in frame.persons:
            coco = from_proto(person.coco17)
            blaze = from_proto(person.blazepose33)
            assert coco.shape == (17, 3) and blaze.shape == (33, 3)
            assert 0.5 <= person.score <= 1
            seen = coco[coco[:, 2] > 0.5]
            assert len(seen) >= 8
            margin = 0.1 * source[1]
            assert np.all((seen[:, 0] > -margin) & (seen[:, 0] < source[0] + margin))
            assert np.all((seen[:, 1] > -margin) & (seen[:, 1] < source[1] + margin))
            # on the person: confident joints lie in the person's box (clipped to the frame)
            box = person.box
            assert 0 <= box.x_min < box.x_max <= source[0] and 0 <= box.y_min < box.y_max <= source[1]
            inside = ((seen[:, 0] >= box.x_min - 2) & (seen[:, 0] <= box.x_max + 2)
                      & (seen[:, 1] >= box.y_min - 2) & (seen[:, 1] <= box.y_max + 2))
            assert inside.mean() >= 0.8
            # a plausible upright skeleton: nose above shoulders above hips
            nose, shoulders, hips = coco[0, 1], coco[[5, 6], 1].mean(), coco[[11, 12], 1].mean()
            assert nose < shoulders < hips
            assert hips - shoulders > 0.05 * source[1]
    # the person standing in the middle at the start is found there, in 1280x720 pixels
    first = from_proto(poses.frames[0].persons[0].coco17)
    assert 400 < first[[11, 12], 0].mean() < 840


def test_estimate_is_idempotent(pose2d, store, clip_frames):
    seg_ref = put_segment(store, "jobs/pose2d-test/job2/segments/00000.pb", segment_of(clip_frames[:6], 0, (640, 360)))
    out = store.ref("jobs/pose2d-test/job2/poses2d/00000.pb")
    first = pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=seg_ref, output=out), timeout=120)
    again = pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=seg_ref, output=out), timeout=120)
    assert again == first
    assert store.list_keys("jobs/pose2d-test/job2/poses2d/") == [out.key]
    # without output the result is computed again, and the same
    fresh = pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=seg_ref), timeout=120)
    assert fresh.poses == first.poses and not fresh.stored.key


def test_black_frames_hold_nobody(pose2d, store):
    black = [np.zeros((360, 640, 3), np.uint8)] * 8
    seg_ref = put_segment(store, "jobs/pose2d-test/job3/segments/00000.pb", segment_of(black, 0, (1920, 1080)))
    reply = pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=seg_ref), timeout=120)
    assert reply.frames_with_person == 0 and len(reply.poses.frames) == 8
    assert all(not f.persons for f in reply.poses.frames)


def test_bad_requests_map_to_status_codes(pose2d, store):
    with pytest.raises(grpc.RpcError) as err:
        pose2d.Estimate(pose2d_pb2.EstimateRequest(), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = common_pb2.SegmentRef(job_id="pose2d-test", frames=store.ref("jobs/pose2d-test/nope.pb"))
    with pytest.raises(grpc.RpcError) as err:
        pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=missing), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=missing, max_persons=99), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    not_jpeg = common_pb2.FrameSegment(width=640, height=360, jpeg=[b"garbage"])
    seg_ref = put_segment(store, "jobs/pose2d-test/job4/segments/00000.pb", not_jpeg)
    with pytest.raises(grpc.RpcError) as err:
        pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=seg_ref), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "JPEG" in err.value.details()


def test_triton_down_is_unavailable(store, settings, clip_frames):
    down = dataclasses.replace(settings, triton_url=f"127.0.0.1:{free_port()}")
    stage = start_pose2d(store, down)
    try:
        seg_ref = put_segment(store, "jobs/pose2d-test/job5/segments/00000.pb", segment_of(clip_frames[:2], 0, (640, 360)))
        with grpc_server.channel(f"127.0.0.1:{stage.port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                pose2d_pb2_grpc.Pose2DStub(ch).Estimate(pose2d_pb2.EstimateRequest(segment=seg_ref), timeout=60)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "Triton" in err.value.details()
    finally:
        stage.stop(0)


# -- the model repository, served by the real tritonserver binary -----------------------------------
@pytest.fixture(scope="module")
def repository_server(tmp_path_factory):
    """``tritonserver --model-repository=...`` (the binary PyTriton ships, with its Python backend)
    over a copy of the repository's BlazePose models made as Triton makes one from S3: each model
    folder on its own, links followed."""
    import pytriton
    from pytriton.utils.distribution import get_libs_path, get_stub_path

    dist = Path(pytriton.__file__).resolve().parent / "tritonserver"
    work = tmp_path_factory.mktemp("tritonserver")
    backends = work / "backends"
    shutil.copytree(dist / "backends", backends)
    shutil.copy(get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}"),
                backends / "python" / "triton_python_backend_stub")
    repos = []
    # the Python-backend (LiteRT) models: the binary PyTriton ships has no ONNX Runtime backend, so the
    # ONNX person detector is served here by the PyTriton host only (tests/contract/test_person_detector.py)
    for name in (BLAZEPOSE_DETECTOR, BLAZEPOSE_LANDMARKS):
        repo = work / f"repo_{name}"
        shutil.copytree(REPOSITORY_DIR / name, repo / name, symlinks=False,
                        ignore=shutil.ignore_patterns("__pycache__"))
        repos.append(repo)
    ports = [free_port() for _ in range(3)]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (sysconfig.get_config_var("LIBDIR"), str(get_libs_path()),
                                                         env.get("LD_LIBRARY_PATH", "")) if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    log_path = work / "tritonserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(dist / "bin" / "tritonserver"), *[f"--model-repository={r}" for r in repos],
             f"--backend-directory={backends}", f"--grpc-port={ports[0]}", f"--http-port={ports[1]}",
             f"--metrics-port={ports[2]}", "--grpc-address=127.0.0.1", "--http-address=127.0.0.1",
             "--allow-metrics=false", "--exit-on-error=true", "--strict-readiness=true"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(work))
    from services.pose2d.client import TritonBlazePose
    client = TritonBlazePose(f"127.0.0.1:{ports[0]}")
    try:
        deadline = time.monotonic() + 90
        while not client.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tritonserver did not get ready:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_repository_and_pytriton_host_answer_alike(repository_server, triton_stack, clip_frames):
    from services.pose2d.blazepose import Roi, detector_input, landmark_input
    from services.pose2d.client import TritonBlazePose

    host = TritonBlazePose(triton_stack.settings.triton_url)
    try:
        assert repository_server.info == host.info     # both servers report the same configs
        detector_size, landmark_size = host.info.detector_size, host.info.landmark_size
        frame = clip_frames[0]
        images = np.stack([detector_input(frame, detector_size)[0],
                           detector_input(frame[:, 140:500], detector_size)[0]])
        crops = np.stack([landmark_input(frame, Roi(310, 230, 350, 0.0), landmark_size),
                          landmark_input(frame, Roi(400, 200, 250, 0.2), landmark_size)])
        (regressors, scores), (want_regressors, want_scores) = repository_server.detect(images), host.detect(images)
        assert regressors.shape == (2, 2254, 12) and scores.shape == (2, 2254, 1)
        assert np.allclose(regressors, want_regressors, atol=1e-4) and np.allclose(scores, want_scores, atol=1e-4)
        got, want = repository_server.landmarks(crops), host.landmarks(crops)
        assert set(got) == set(want) == {"landmarks", "pose_flag", "heatmap"}
        for name in got:
            assert np.allclose(got[name], want[name], atol=1e-4)
        assert got["pose_flag"][0, 0] > 0.9
    finally:
        host.close()
