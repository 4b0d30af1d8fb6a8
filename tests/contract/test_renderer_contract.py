"""Renderer over real gRPC on loopback with a real S3 store and synthetic stored poses."""
import json
import tempfile
from pathlib import Path

import av
import cv2
import grpc
import numpy as np
import pytest

from hpe3d.v1 import common_pb2, renderer_pb2, renderer_pb2_grpc
from services.common import grpc_server
from services.common.arrays import to_proto
from services.decoder.probe import probe_video
from services.renderer.server import register

DATA = Path(__file__).resolve().parent.parent / "data"
CLIP = DATA / "two_people_office_24f.mp4"


@pytest.fixture(scope="module")
def renderer(store, settings):
    stage = grpc_server.start_server(lambda s: register(s, store, settings), ["hpe3d.v1.Renderer"], port=0)
    with grpc_server.channel(f"127.0.0.1:{stage.port}") as ch:
        yield renderer_pb2_grpc.RendererStub(ch)
    stage.stop(0)


def standing(x):
    return np.array([[0, .95, 0], [-.12, .95, 0], [-.12, .5, 0], [-.12, .05, 0], [.12, .95, 0], [.12, .5, 0],
                     [.12, .05, 0], [0, 1.2, 0], [0, 1.45, 0], [0, 1.55, .05], [0, 1.72, 0], [.18, 1.42, 0],
                     [.18, 1.12, 0], [.18, .85, 0], [-.18, 1.42, 0], [-.18, 1.12, 0], [-.18, .85, 0]],
                    np.float32) + np.array([x, 0, -3.0], np.float32)


def stored_inputs(store, job):
    video = store.put_bytes(f"jobs/{job}/input.mp4", CLIP.read_bytes(), "video/mp4")
    info = probe_video(str(CLIP)).to_proto()
    refs = []
    for seg, start in enumerate((0, 12)):
        msg = common_pb2.Poses2D(start_frame=start, frame_count=12)
        for i in range(start, start + 12):
            f = msg.frames.add(frame_index=i, timestamp_s=info.timestamps_s[i])
            kp = np.zeros((17, 3), np.float32)
            kp[:, 0], kp[:, 1], kp[:, 2] = 200 + i, np.linspace(60, 340, 17), 0.9
            f.persons.add(track_id=0, score=0.9, coco17=to_proto(kp))
        refs.append(store.put_message(f"jobs/{job}/poses2d/{seg:05d}.pb", msg))
    tracks = []
    for track_id, x in ((0, -0.5), (1, 0.6)):
        g = np.repeat(standing(x)[None], 20, axis=0)
        tracks.append(common_pb2.Track3D(track_id=track_id, first_frame=2, frame_count=20, world=to_proto(g),
                                         grounded=to_proto(g), root_relative=to_proto(g - g[:, :1])))
    p3 = store.put_message(f"jobs/{job}/poses3d.pb", common_pb2.Poses3D(tracks=tracks, model="test"))
    return renderer_pb2.RenderRequest(job_id=job, video=video, video_info=info, poses2d=refs, poses3d=p3,
                                      output_prefix=f"jobs/{job}/output/")


def test_render_streams_progress_then_artifacts(renderer, store):
    updates = list(renderer.Render(stored_inputs(store, "r1")))
    progress = [u.progress for u in updates if u.HasField("progress")]
    assert progress and progress[-1].done == progress[-1].total
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert updates[-1].HasField("result")
    artifacts = {a.name: a for a in updates[-1].result.artifacts}
    assert set(artifacts) == {"render.mp4", "thumbnail.jpg", "poses.json", "joints3d.csv", "joint_angles.csv",
                              "person_0.bvh", "person_1.bvh"}
    assert artifacts["render.mp4"].content_type == "video/mp4"
    assert artifacts["thumbnail.jpg"].content_type == "image/jpeg"
    assert store.get_bytes(artifacts["person_1.bvh"].ref).startswith(b"HIERARCHY\nROOT pelvis")
    with tempfile.TemporaryDirectory() as tmp:
        store.get_file(artifacts["render.mp4"].ref, f"{tmp}/r.mp4")
        rendered = probe_video(f"{tmp}/r.mp4")
    assert (rendered.codec, rendered.frame_count, rendered.fps) == ("h264", 24, 30.0)
    doc = json.loads(store.get_bytes(artifacts["poses.json"].ref))
    assert doc["schema_version"] == "2.0"
    assert len(doc["frames"]) == 24 and len(doc["frames"][5]["persons"]) == 2
    assert doc["frames"][0]["persons"][0]["keypoints_3d_world"] is None  # raw 2D only
    assert doc["frames"][5]["persons"][1]["keypoints_3d_world"][0][0] == pytest.approx(0.6)
    csv_text = store.get_bytes(artifacts["joints3d.csv"].ref).decode()
    assert len(csv_text.strip().splitlines()) == 1 + 20 * 2 * 17
    assert artifacts["joints3d.csv"].size_bytes == len(csv_text.encode())


def test_skip_video_writes_only_exports_and_is_idempotent(renderer, store):
    request = stored_inputs(store, "r2")
    request.skip_video = True
    first = list(renderer.Render(request))[-1].result
    second = list(renderer.Render(request))[-1].result
    assert {a.name for a in first.artifacts} == {"thumbnail.jpg", "poses.json", "joints3d.csv", "joint_angles.csv",
                                                 "person_0.bvh", "person_1.bvh"}
    assert [(a.name, a.ref.key, a.size_bytes) for a in first.artifacts] == \
        [(a.name, a.ref.key, a.size_bytes) for a in second.artifacts]
    assert not store.exists("jobs/r2/output/render.mp4")


def test_still_image_gives_a_png_and_one_frame_exports(renderer, store):
    with av.open(str(CLIP)) as c:
        photo = next(c.decode(video=0)).to_ndarray(format="bgr24")
    ok, jpeg = cv2.imencode(".jpg", photo)
    image = store.put_bytes("jobs/r5/input.jpg", jpeg.tobytes(), "image/jpeg")
    info = common_pb2.VideoInfo(width=640, height=360, frame_count=1, still_image=True, timestamps_s=[0.0])
    p3 = store.put_message("jobs/r5/poses3d.pb", common_pb2.Poses3D(tracks=[common_pb2.Track3D(
        track_id=0, first_frame=0, frame_count=1, world=to_proto(standing(0)[None]))]))
    request = renderer_pb2.RenderRequest(job_id="r5", video=image, video_info=info, poses3d=p3,
                                         output_prefix="jobs/r5/output/")
    artifacts = {a.name: a for a in list(renderer.Render(request))[-1].result.artifacts}
    assert set(artifacts) == {"render.png", "thumbnail.jpg", "poses.json", "joints3d.csv", "joint_angles.csv",
                              "person_0.bvh"}
    picture = cv2.imdecode(np.frombuffer(store.get_bytes(artifacts["render.png"].ref), np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (360, 1000, 3) and artifacts["render.png"].content_type == "image/png"
    doc = json.loads(store.get_bytes(artifacts["poses.json"].ref))
    assert doc["video"]["still_image"] is True and len(doc["frames"]) == 1
    assert b"Frames: 1\n" in store.get_bytes(artifacts["person_0.bvh"].ref)


def test_missing_poses_object_is_not_found(renderer, store):
    request = stored_inputs(store, "r3")
    request.poses3d.key = "jobs/r3/nothing-here.pb"
    with pytest.raises(grpc.RpcError) as err:
        list(renderer.Render(request))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_request_without_video_info_is_invalid_argument(renderer, store):
    request = stored_inputs(store, "r4")
    request.video_info.frame_count = 0
    with pytest.raises(grpc.RpcError) as err:
        list(renderer.Render(request))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
