"""Decoder over real gRPC on loopback with a real S3 store."""
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from hpe3d.v1 import common_pb2, decoder_pb2, decoder_pb2_grpc
from services.common.arrays import to_proto
from services.common.rotating_camera import apply_homography
from services.common import grpc_server
from services.decoder.server import register

DATA = Path(__file__).resolve().parent.parent / "data"
JOB = "decoder-contract"  # every object of these calls lies under jobs/decoder-contract/
JOB_METADATA = (("x-job-id", JOB),)  # Probe has no job_id field: the job comes from the metadata


@pytest.fixture(scope="module")
def decoder(store, settings):
    servicers = []
    stage = grpc_server.start_server(lambda s: servicers.append(register(s, store, settings)),
                                     ["hpe3d.v1.Decoder"], port=0)
    with grpc_server.channel(f"127.0.0.1:{stage.port}") as ch:
        yield decoder_pb2_grpc.DecoderStub(ch), servicers[0]
    stage.stop(0)


def upload(store, name):
    return store.put_bytes(f"jobs/{JOB}/{name}", (DATA / name).read_bytes(), "video/mp4")


def test_probe_then_decode_segments(decoder, store):
    stub, _ = decoder
    video = upload(store, "two_people_office_24f.mp4")
    info = stub.Probe(decoder_pb2.ProbeRequest(video=video), metadata=JOB_METADATA)
    assert (info.width, info.height, info.frame_count, info.codec) == (640, 360, 24, "h264")
    assert len(info.timestamps_s) == 24
    refs = []
    for index, start in enumerate(range(0, 24, 10)):
        out = store.ref(f"jobs/{JOB}/job1/segments/{index:05d}.pb")
        refs.append(stub.Decode(decoder_pb2.DecodeRequest(
            job_id=JOB, index=index, video=video, start_frame=start, frame_count=10,
            working_size=320, output=out)))
    assert [r.frame_count for r in refs] == [10, 10, 4]
    assert refs[2].start_frame == 20 and refs[2].job_id == JOB and refs[2].index == 2
    seg = store.get_message(refs[1].frames, common_pb2.FrameSegment)
    assert (seg.start_frame, seg.width, seg.height, len(seg.jpeg)) == (10, 320, 180, 10)
    img = cv2.imdecode(np.frombuffer(seg.jpeg[0], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (180, 320, 3)
    # idempotent: the same call writes the same content
    again = stub.Decode(decoder_pb2.DecodeRequest(job_id=JOB, index=1, video=video, start_frame=10,
                                                  frame_count=10, working_size=320, output=refs[1].frames))
    assert store.get_message(again.frames, common_pb2.FrameSegment) == seg


def test_one_video_is_downloaded_once_for_many_calls(decoder, store):
    stub, servicer = decoder
    video = upload(store, "nobody_24f.mp4")
    before = servicer.videos.downloads
    for i in range(4):
        stub.Decode(decoder_pb2.DecodeRequest(job_id=JOB, index=i, video=video, start_frame=i * 6,
                                              frame_count=6, output=store.ref(f"jobs/{JOB}/j2/{i}.pb")))
    info = stub.Probe(decoder_pb2.ProbeRequest(video=video), metadata=JOB_METADATA)
    assert info.frame_count == 24
    assert servicer.videos.downloads == before + 1


def test_overwritten_video_is_downloaded_again(decoder, store):
    stub, _ = decoder
    key = f"jobs/{JOB}/overwritten.mp4"
    store.put_bytes(key, (DATA / "two_people_office_24f.mp4").read_bytes())
    assert stub.Probe(decoder_pb2.ProbeRequest(video=store.ref(key)), metadata=JOB_METADATA).frame_count == 24
    store.put_bytes(key, (DATA / "vfr_12f.mp4").read_bytes())
    assert stub.Probe(decoder_pb2.ProbeRequest(video=store.ref(key)), metadata=JOB_METADATA).frame_count == 12


def test_text_file_is_invalid_argument(decoder, store):
    stub, _ = decoder
    with pytest.raises(grpc.RpcError) as err:
        stub.Probe(decoder_pb2.ProbeRequest(video=upload(store, "not_a_video.mp4")), metadata=JOB_METADATA)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a video" in err.value.details()


def test_missing_object_is_not_found(decoder, store):
    stub, _ = decoder
    with pytest.raises(grpc.RpcError) as err:
        stub.Probe(decoder_pb2.ProbeRequest(video=store.ref(f"jobs/{JOB}/no-such-video.mp4")),
                   metadata=JOB_METADATA)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_start_beyond_the_end_is_invalid_argument(decoder, store):
    stub, _ = decoder
    video = upload(store, "vfr_12f.mp4")
    with pytest.raises(grpc.RpcError) as err:
        stub.Decode(decoder_pb2.DecodeRequest(job_id=JOB, video=video, start_frame=12, frame_count=5,
                                              output=store.ref(f"jobs/{JOB}/j3/0.pb")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _put(store, name: str, path: Path):
    return store.put_bytes(f"jobs/{JOB}/{name}", path.read_bytes(), "application/octet-stream")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A phone-style trim (edit list), a cut-off file with its index first, one without its
    index, and a photo, made from the office clip."""
    from tests.video_fixtures import PEOPLE_CLIP, cut_copy, encode_h264, read_frames, truncate
    d = tmp_path_factory.mktemp("decoder-contract")
    frames = read_frames(PEOPLE_CLIP)
    source = encode_h264(d / "source.mp4", frames, gop=8)
    cut_copy(source, d / "trimmed.mp4", 11 / 30)
    truncate(encode_h264(d / "faststart.mp4", frames * 2, gop=8, faststart=True), d / "cut_short.mp4", 0.5)
    truncate(source, d / "no_index.mp4", 0.6)
    assert cv2.imwrite(str(d / "photo.jpg"), frames[5])
    return d


def test_trimmed_clip_probes_and_decodes_its_shown_frames(decoder, store, made):
    stub, _ = decoder
    video = _put(store, "trimmed.mp4", made / "trimmed.mp4")
    info = stub.Probe(decoder_pb2.ProbeRequest(video=video), metadata=JOB_METADATA)
    assert info.frame_count == info.announced_frame_count == 13 and not info.warnings
    assert info.timestamps_s[0] == 0.0 and not info.still_image
    counts = [stub.Decode(decoder_pb2.DecodeRequest(
        job_id=JOB, index=i, video=video, start_frame=start, frame_count=8,
        output=store.ref(f"jobs/{JOB}/trimmed/{i:05d}.pb"))).frame_count
        for i, start in enumerate(range(0, 13, 8))]
    assert counts == [8, 5]


def test_truncated_file_that_plays_reports_the_missing_frames(decoder, store, made):
    stub, _ = decoder
    info = stub.Probe(decoder_pb2.ProbeRequest(video=_put(store, "cut_short.mp4", made / "cut_short.mp4")),
                      metadata=JOB_METADATA)
    assert 0 < info.frame_count < info.announced_frame_count == 48
    assert list(info.warnings) == [f"truncated: {48 - info.frame_count} of 48 announced frames were missing; "
                                   f"the job uses the {info.frame_count} frames the file holds"]


def test_truncated_file_without_its_index_is_invalid_argument_with_the_reason(decoder, store, made):
    stub, _ = decoder
    with pytest.raises(grpc.RpcError) as err:
        stub.Probe(decoder_pb2.ProbeRequest(video=_put(store, "no_index.mp4", made / "no_index.mp4")),
                   metadata=JOB_METADATA)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("truncated: the index is missing")


def test_photo_is_a_one_frame_still_image(decoder, store, made):
    stub, _ = decoder
    photo = _put(store, "photo.jpg", made / "photo.jpg")
    info = stub.Probe(decoder_pb2.ProbeRequest(video=photo), metadata=JOB_METADATA)
    assert info.still_image and info.frame_count == 1 and info.fps == 0.0 and info.duration_s == 0.0
    assert (info.width, info.height, info.codec) == (640, 360, "mjpeg")
    ref = stub.Decode(decoder_pb2.DecodeRequest(job_id=JOB, video=photo, start_frame=0, frame_count=128,
                                                output=store.ref(f"jobs/{JOB}/photo/00000.pb")))
    segment = store.get_message(ref.frames, common_pb2.FrameSegment)
    assert ref.frame_count == 1 and len(segment.jpeg) == 1 and list(segment.timestamps_s) == [0.0]


def people_on_the_left(start: int, count: int) -> common_pb2.Poses2D:
    """2D of a segment with one person per frame whose joints span the left half of the 640 x 360 frame."""
    joints = np.array([[20 + 280 * (j % 2), 20 + 320 * j / 16, 0.9] for j in range(17)], np.float32)
    poses = common_pb2.Poses2D(start_frame=start, frame_count=count)
    for t in range(start, start + count):
        poses.frames.add(frame_index=t).persons.add(track_id=0, coco17=to_proto(joints))
    return poses


def test_track_camera_stores_the_segments_camera_motion_without_the_people(decoder, store):
    stub, _ = decoder
    video = upload(store, "two_people_office_24f.mp4")
    frames, poses = [], []
    for index, start in enumerate((0, 12)):
        frames.append(stub.Decode(decoder_pb2.DecodeRequest(
            job_id=JOB, index=index, video=video, start_frame=start, frame_count=12, working_size=320,
            output=store.ref(f"jobs/{JOB}/cam/{index:05d}/frames.pb"))).frames)
        poses.append(store.put_message(f"jobs/{JOB}/cam/{index:05d}/poses2d.pb", people_on_the_left(start, 12)))
    requests = [decoder_pb2.TrackCameraRequest(job_id=JOB, frames=frames[0], poses2d=poses[0],
                                               output=store.ref(f"jobs/{JOB}/cam/00000/camera.pb")),
                decoder_pb2.TrackCameraRequest(job_id=JOB, frames=frames[1], poses2d=poses[1],
                                               previous_frames=frames[0], previous_poses2d=poses[0],
                                               output=store.ref(f"jobs/{JOB}/cam/00001/camera.pb"))]
    refs = [stub.TrackCamera(r) for r in requests]
    assert refs[1].key == f"jobs/{JOB}/cam/00001/camera.pb"
    first, second = (store.get_message(r, common_pb2.CameraMotion) for r in refs)
    assert (second.start_frame, second.frame_count, second.width, second.height) == (12, 12, 320, 180)
    assert [s.frame_index for s in second.steps] == list(range(12, 24))
    # the segment's first frame is measured from the previous segment's last frame, so the lifter can chain
    assert first.steps[0].reference_frame == 0 and second.steps[0].reference_frame == 11
    assert all(s.reliable and s.points >= 20 for s in list(first.steps) + list(second.steps))
    # the person's padded box (x < 160 + padding at the 320 px working size) holds none of the fit's points
    assert min(s.support.x_min for s in list(first.steps) + list(second.steps)) > 160
    for s in second.steps:   # a still camera: where the fit's points are, pixels stay put
        box = s.support
        grid = np.stack(np.meshgrid(np.linspace(box.x_min, box.x_max, 5), np.linspace(box.y_min, box.y_max, 5)),
                        -1).reshape(-1, 2)
        moved = apply_homography(np.reshape(s.homography.values, (3, 3)), grid)
        assert np.abs(moved - grid).max() < 0.5, s.frame_index
    # idempotent
    assert stub.TrackCamera(requests[1]) == refs[1]
    assert store.get_message(refs[1], common_pb2.CameraMotion) == second


def test_track_camera_refuses_objects_outside_the_job_and_half_a_previous_segment(decoder, store):
    stub, _ = decoder
    video = upload(store, "two_people_office_24f.mp4")
    frames = stub.Decode(decoder_pb2.DecodeRequest(job_id=JOB, video=video, start_frame=0, frame_count=4,
                                                   working_size=320,
                                                   output=store.ref(f"jobs/{JOB}/cam/x/frames.pb"))).frames
    poses = store.put_message(f"jobs/{JOB}/cam/x/poses2d.pb", people_on_the_left(0, 4))
    with pytest.raises(grpc.RpcError) as err:
        stub.TrackCamera(decoder_pb2.TrackCameraRequest(job_id=JOB, frames=frames, poses2d=poses,
                                                        output=store.ref("jobs/another-job/camera.pb")))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        stub.TrackCamera(decoder_pb2.TrackCameraRequest(job_id=JOB, frames=frames, poses2d=poses,
                                                        previous_frames=frames,
                                                        output=store.ref(f"jobs/{JOB}/cam/x/camera.pb")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "previous_poses2d" in err.value.details()
