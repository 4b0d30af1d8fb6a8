"""Top-down 2D models end to end on real servers: an official-style HRNet-W32 checkpoint goes through
`hpe3d models export`, the PyTriton host serves the exported folder (ONNX Runtime, CPU) beside
BlazePose, and the pose2d stage runs it when EstimateRequest.pose_model says so.

Random weights, conformance only: the server's heatmaps equal ONNX Runtime in this process and
PyTorch, and the stage's keypoints equal the same pipeline run in this process; they are not
meaningful poses.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from hpe3d.v1 import common_pb2, pose2d_pb2, pose2d_pb2_grpc
from services.common import grpc_server
from services.common.arrays import from_proto
from services.pose2d.server import register
from services.triton.repositories import missing_model_files

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.contract,
              pytest.mark.skipif(bool(missing_model_files()),
                                 reason="BlazePose .tflite files absent (the person detector): run `make models`")]

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "tests" / "data" / "two_people_office_24f.mp4"
JOB = "pose2d-topdown"


def random_hrnet_w32():
    from services.common.pose_models import TOPDOWN_MODELS
    from services.triton.topdown.checkpoint import build_model

    torch.manual_seed(3)
    model = build_model(TOPDOWN_MODELS["hrnet_w32"])
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif key.endswith("running_mean"):
                tensor.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(PyTorch model, repository folder) after `hpe3d models export` of an official-style checkpoint."""
    work = tmp_path_factory.mktemp("hrnet")
    model = random_hrnet_w32()
    weights = work / "pose_hrnet_w32_256x192.pth"
    torch.save(model.state_dict(), weights)
    proc = subprocess.run([sys.executable, "-m", "hpe3d_cli.cli", "models", "export", "hrnet_w32", "--weights",
                           str(weights), "--repository", str(work / "repo")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return model, work / "repo"


@pytest.fixture(scope="module")
def topdown_triton(exported, tmp_path_factory):
    from hpe3d_cli.local_stack import LocalStack

    stack = LocalStack(workdir=tmp_path_factory.mktemp("triton-topdown"), components=("triton",),
                       settings_overrides={"triton_repositories": str(exported[1])})
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def clip_frames():
    with av.open(str(CLIP)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)][:4]


@pytest.fixture(scope="module")
def pose2d_addr(store, settings, topdown_triton):
    stage_settings = dataclasses.replace(settings, triton_url=topdown_triton.settings.triton_url)
    stage = grpc_server.start_server(lambda s: register(s, store, stage_settings), ["hpe3d.v1.Pose2D"], port=0)
    yield f"127.0.0.1:{stage.port}"
    stage.stop(0)


@pytest.fixture(scope="module")
def pose2d(pose2d_addr):
    with grpc_server.channel(pose2d_addr) as ch:
        yield pose2d_pb2_grpc.Pose2DStub(ch)


def test_served_heatmaps_equal_onnx_and_pytorch(exported, topdown_triton):
    from bench.local_models import LocalTopDown
    from services.pose2d.topdown_client import TritonTopDown

    model, repo = exported
    served = TritonTopDown(topdown_triton.settings.triton_url, "hrnet_w32")
    local = LocalTopDown(repo / "hrnet_w32")
    try:
        assert (served.info.width, served.info.height, served.info.input_dtype) == (192, 256, "uint8")
        assert served.info == local.info
        crops = np.random.default_rng(0).integers(0, 256, (3, 256, 192, 3), dtype=np.uint8)
        got, in_process = served.heatmaps(crops), local.heatmaps(crops)
        x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
             - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        with torch.no_grad():
            reference = model(x).numpy()
        assert got.shape == (3, 17, 64, 48)
        np.testing.assert_allclose(got, in_process, atol=1e-5)
        np.testing.assert_allclose(got, reference, atol=1e-4 * max(1.0, float(np.abs(reference).max())))
    finally:
        served.close()


def put_segment(store, frames, index=0):
    import cv2
    h, w = frames[0].shape[:2]
    seg = common_pb2.FrameSegment(start_frame=40, width=w, height=h, source_width=2 * w, source_height=2 * h,
                                  timestamps_s=[(40 + i) / 30 for i in range(len(frames))])
    seg.jpeg.extend(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames)
    ref = store.put_message(f"jobs/{JOB}/segments/{index:05d}.pb", seg)
    return seg, common_pb2.SegmentRef(job_id=JOB, index=index, start_frame=40, frame_count=len(frames), frames=ref)


def test_pose2d_runs_hrnet_w32_and_cannot_tell_the_server(pose2d, store, clip_frames, exported):
    """pose_model=hrnet_w32 through the stage = the same pipeline in this process (the person
    detector and the model in ONNX Runtime), keypoints in original-frame pixels (the segment says
    2x the JPEGs)."""
    from bench.local_models import LocalPersonDetector, LocalTopDown
    from services.pose2d.keypoint_followers import TopDownFollower
    from services.pose2d.people import PeopleOptions, estimate_segment_people

    segment, ref = put_segment(store, clip_frames)
    reply = pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=ref, max_persons=2, pose_model="hrnet_w32"),
                            timeout=300)
    poses = reply.poses
    assert (poses.start_frame, len(poses.frames)) == (40, len(clip_frames))
    assert reply.frames_with_person == len(clip_frames)
    expected = estimate_segment_people(segment, LocalPersonDetector(),
                                       TopDownFollower(LocalTopDown(exported[1] / "hrnet_w32")), PeopleOptions(max_persons=2))
    for got_frame, want_frame in zip(poses.frames, expected.frames):
        assert [p.track_id for p in got_frame.persons] == [p.track_id for p in want_frame.persons]
        for got, want in zip(got_frame.persons, want_frame.persons):
            coco = from_proto(got.coco17)
            assert coco.shape == (17, 3) and not got.HasField("blazepose33")
            np.testing.assert_allclose(coco, from_proto(want.coco17), atol=0.05)
            # in original pixels: inside the person's padded crop region around its box (1280x720 frame)
            box = got.box
            assert 0 <= box.x_min < box.x_max <= 1280 and 0 <= box.y_min < box.y_max <= 720
            h = box.y_max - box.y_min
            assert np.all(coco[:, 1] > box.y_min - h) and np.all(coco[:, 1] < box.y_max + h)
            assert np.all((coco[:, 2] >= 0) & (coco[:, 2] <= 1))
    # the person standing in the middle is where the detector finds them (original pixels)
    first = poses.frames[0].persons[0].box
    assert 400 < (first.x_min + first.x_max) / 2 < 840


def test_list_models_offers_what_triton_has(pose2d):
    reply = pose2d.ListModels(pose2d_pb2.ListModelsRequest(), timeout=30)
    offered = {m.name: m for m in reply.models}
    assert set(offered) == {"blazepose", "hrnet_w32"}
    assert offered["blazepose"].is_default and not offered["hrnet_w32"].is_default
    hrnet = offered["hrnet_w32"]
    assert (hrnet.kind, hrnet.input_width, hrnet.input_height) == ("top-down", 192, 256)
    assert list(hrnet.triton_models) == ["hrnet_w32", "person_detector"]
    missing = {m.name: m for m in reply.not_loaded}
    assert "hrnet_w32" not in missing and missing["simplebaseline_r50"].checkpoint == "pose_resnet_50_256x192.pth.tar"


def test_a_model_not_exported_names_the_checkpoint(pose2d, store, clip_frames):
    _, ref = put_segment(store, clip_frames[:1], index=1)
    with pytest.raises(grpc.RpcError) as err:
        pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=ref, pose_model="hrnet_w48"), timeout=60)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pose_hrnet_w48_256x192.pth" in err.value.details() and "hpe3d models export" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        pose2d.Estimate(pose2d_pb2.EstimateRequest(segment=ref, pose_model="openpose"), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "hrnet_w32" in err.value.details()


def test_api_lists_models_and_refuses_one_not_loaded(pose2d_addr, settings, store, nats_url):
    """GET /v1/models and the pose_model job option, through the API to the real pose2d stage."""
    from fastapi.testclient import TestClient

    from gateway.api.app import create_app
    from tests.conftest import bearer, make_api_key

    api_settings = dataclasses.replace(settings, pose2d_addr=pose2d_addr, nats_url=nats_url)
    with TestClient(create_app(api_settings, store), headers=bearer(make_api_key(store))) as client:
        for _ in range(100):  # the app connects to NATS in the background
            if client.get("/readyz").json()["dependencies"]["nats"]["ok"]:
                break
            time.sleep(0.05)
        r = client.get("/v1/models")
        assert r.status_code == 200, r.text
        body = r.json()
        assert [(m["name"], m["kind"], m["default"]) for m in body["models"]] == [
            ("blazepose", "landmarks", True), ("hrnet_w32", "top-down", False)]
        assert {m["name"] for m in body["not_loaded"]} >= {"hrnet_w48", "simplebaseline_r50"}
        r = client.post("/v1/jobs", files={"file": ("a.mp4", b"abc", "video/mp4")},
                        data={"pose_model": "simplebaseline_r50"})
        assert r.status_code == 422, r.text
        assert "pose_resnet_50_256x192.pth.tar" in r.json()["detail"] and "hrnet_w32" in r.json()["detail"]


def test_upload_puts_the_exported_model_beside_blazepose(exported, settings, store, monkeypatch):
    """The GPU overlay's repository in S3: deploy/tools/upload_model_repository.py with the built-in
    repository and the exported folder gives Triton's layout <prefix>/<model>/config.pbtxt, 1/model.onnx."""
    sys.path.insert(0, str(ROOT / "deploy" / "tools"))
    import upload_model_repository as upload

    for name, value in settings.env().items():
        monkeypatch.setenv(name, value)
    prefix = "test-model-repository"
    assert upload.main(["--src", str(upload.DEFAULT_SRC), "--src", str(exported[1]), "--prefix", prefix]) == 0
    keys = {o.object_name for o in store.client.list_objects(store.bucket, prefix=prefix + "/", recursive=True)}
    assert {f"{prefix}/hrnet_w32/config.pbtxt", f"{prefix}/hrnet_w32/1/model.onnx",
            f"{prefix}/blazepose_detector/config.pbtxt"} <= keys
    onnx = store.client.stat_object(store.bucket, f"{prefix}/hrnet_w32/1/model.onnx")
    assert onnx.size == (exported[1] / "hrnet_w32" / "1" / "model.onnx").stat().st_size
