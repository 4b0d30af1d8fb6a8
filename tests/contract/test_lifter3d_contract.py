"""Lifter3D over real gRPC on loopback, with a real SeaweedFS and the shipped weights."""
import grpc
import numpy as np
import pytest

from hpe3d.v1 import common_pb2, lifter3d_pb2, lifter3d_pb2_grpc
from services.common.arrays import from_proto, to_proto
from services.common.grpc_server import channel, start_server
from services.lifter3d.server import register
from services.lifter3d.video_lift import load_service_lifter

from ..unit.test_lifter_tracking import _pose


@pytest.fixture(scope="module")
def lifter_stub(store, settings):
    lifter = load_service_lifter(settings.lifter_weights)
    stage = start_server(lambda s: register(s, store, settings, lifter), ["hpe3d.v1.Lifter3D"], port=0)
    yield lifter3d_pb2_grpc.Lifter3DStub(channel(f"127.0.0.1:{stage.port}"))
    stage.stop(0)


def _standing_person(frames: int) -> list[common_pb2.FramePoses2D]:
    # a plausible upright COCO-17 person, 1080p frame, swaying slowly
    base = np.array([[960, 300], [975, 285], [945, 285], [990, 295], [930, 295], [1030, 380], [890, 380],
                     [1050, 480], [870, 480], [1060, 570], [860, 570], [1000, 580], [920, 580], [1005, 720],
                     [915, 720], [1010, 860], [910, 860]], dtype=np.float32)
    out = []
    for f in range(frames):
        kp = np.concatenate([base + [10 * np.sin(f / 10), 0], np.full((17, 1), 0.9)], axis=1)
        out.append(common_pb2.FramePoses2D(frame_index=f, persons=[
            common_pb2.Person2D(track_id=0, score=0.9, coco17=to_proto(kp))]))
    return out


def _lift(stub, request):
    updates = list(stub.Lift(request, timeout=120))
    assert all(u.HasField("progress") for u in updates[:-1])
    assert updates[-1].HasField("result")
    return updates[-1].result


def test_lift_stored_segments_gives_a_grounded_pose_per_frame(lifter_stub, store):
    frames = _standing_person(40)
    refs = []
    for i, chunk in enumerate((frames[:25], frames[25:])):
        refs.append(store.put_message(f"jobs/lift-contract/segments/{i:05d}/poses2d.pb",
                                      common_pb2.Poses2D(start_frame=chunk[0].frame_index, frame_count=len(chunk),
                                                         frames=chunk)))
    result = _lift(lifter_stub, lifter3d_pb2.LiftRequest(
        job_id="lift-contract", width=1920, height=1080, segments=refs,
        output=store.ref("jobs/lift-contract/poses3d.pb")))
    assert len(result.poses.tracks) == 1  # one person across the segment seam
    track = result.poses.tracks[0]
    grounded = from_proto(track.grounded)
    assert grounded.shape == (40, 17, 3)
    assert np.allclose(grounded[:, [3, 6], 1].min(axis=1), 0, atol=1e-4)  # feet on y = 0
    head_above_feet = grounded[:, 10, 1] - grounded[:, [3, 6], 1].mean(axis=1)
    assert np.all((head_above_feet > 1.0) & (head_above_feet < 2.3))  # an upright person, metres
    stored = store.get_message(result.stored, common_pb2.Poses3D)
    assert stored == result.poses


def test_no_person_is_failed_precondition(lifter_stub):
    empty = [common_pb2.FramePoses2D(frame_index=f) for f in range(30)]
    with pytest.raises(grpc.RpcError) as err:
        _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="x", width=640, height=360, frames=empty))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no person found" in err.value.details()


def test_bad_frame_size_is_invalid_argument(lifter_stub):
    frames = [common_pb2.FramePoses2D(frame_index=0, persons=[common_pb2.Person2D(coco17=to_proto(_pose(1, 1)))])]
    with pytest.raises(grpc.RpcError) as err:
        _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="x", width=0, height=0, frames=frames))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_missing_segment_object_is_not_found(lifter_stub, store):
    with pytest.raises(grpc.RpcError) as err:
        _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="x", width=640, height=360,
                                                    segments=[store.ref("jobs/x/nope/poses2d.pb")]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_lift_gives_world_joints_contacts_and_the_camera(lifter_stub):
    frames = _standing_person(40)
    result = _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="lift-world", width=1920, height=1080,
                                                          frames=frames, fps=25))
    poses = result.poses
    assert poses.camera.focal_from_prior
    assert poses.camera.focal_px == pytest.approx(960 / np.tan(np.deg2rad(57.5 / 2)))
    assert -30 < poses.camera.pitch_deg < 30 and 0.2 < poses.camera.height_m < 4
    track = poses.tracks[0]
    world = from_proto(track.world)
    contacts = from_proto(track.foot_contacts)
    assert world.shape == (40, 17, 3) and contacts.shape == (40, 2)
    assert set(np.unique(contacts)) <= {0.0, 1.0} and contacts.mean() > 0.8  # a person standing still
    ankles = world[:, [3, 6], 1]
    assert np.all(ankles.min(axis=1) < 0.2) and np.all(ankles.min(axis=1) > 0.0)  # on the floor, not in it
    assert np.all(world[:, 10, 1] > 1.0)  # head top well above the floor
    # the pose in world is the root-relative pose moved and turned: bone lengths agree
    rel = from_proto(track.root_relative)
    for child, parent in [(3, 2), (13, 12), (10, 9)]:
        assert np.allclose(np.linalg.norm(world[:, child] - world[:, parent], axis=1),
                           np.linalg.norm(rel[:, child] - rel[:, parent], axis=1), atol=1e-3)
    # the caller's focal length is used as given, and a longer lens puts the person further away
    longer = _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="lift-world", width=1920, height=1080,
                                                          frames=frames, focal_px=4000)).poses
    assert not longer.camera.focal_from_prior and longer.camera.focal_px == 4000
    depth = np.linalg.norm(world[:, 0, [0, 2]], axis=1).mean()
    longer_depth = np.linalg.norm(from_proto(longer.tracks[0].world)[:, 0, [0, 2]], axis=1).mean()
    assert longer_depth > 1.8 * depth


def test_a_photo_lifts_one_frame_when_asked(lifter_stub):
    frames = _standing_person(1)
    result = _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="lift-photo", width=1920, height=1080,
                                                          frames=frames, min_track_frames=1))
    track = result.poses.tracks[0]
    assert track.frame_count == 1
    assert from_proto(track.world).shape == (1, 17, 3) and from_proto(track.foot_contacts).shape == (1, 2)
    with pytest.raises(grpc.RpcError) as err:  # the default minimum of 5 frames drops it
        _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="lift-photo", width=1920, height=1080, frames=frames))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_stored_camera_motion_turns_the_world_with_the_camera(lifter_stub, store):
    from services.common.rotating_camera import rotation_angle_deg, rotation_from_quaternion
    from ..unit.test_lifter_camera_path import motion_of, turning
    frames = _standing_person(40)
    still = _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="lift-cam", width=1920, height=1080,
                                                         frames=frames)).poses
    assert list(still.camera.quality) == [common_pb2.CAMERA_STILL] * 40 and not still.warnings
    rotations = rotation_from_quaternion(from_proto(still.camera.rotations))
    assert rotations.shape == (40, 3, 3) and np.allclose(rotations, rotations[0], atol=1e-6)
    assert from_proto(still.camera.focal_per_frame) == pytest.approx([still.camera.focal_px] * 40)
    # the same 2D under a camera that turns 12 degrees and zooms (its steps stored as the decoder stores them,
    # two segments at the 640 px working size)
    turns, zoom = turning(40)
    refs = [store.put_message(f"jobs/lift-cam/segments/{i:05d}/camera.pb", m)
            for i, m in enumerate((motion_of(turns, zoom, stop=20), motion_of(turns, zoom, start=20)))]
    moving = _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="lift-cam", width=1920, height=1080, frames=frames,
                                                          focal_px=2100, camera_motions=refs)).poses
    assert list(moving.camera.quality) == [common_pb2.CAMERA_TRACKED] * 40
    per_frame = rotation_from_quaternion(from_proto(moving.camera.rotations))
    for t in (10, 39):   # relative to the first frame, the camera turned as the steps say
        assert rotation_angle_deg(per_frame[0].T @ per_frame[t] @ turns[t] @ turns[0].T) < 0.01
    assert from_proto(moving.camera.focal_per_frame) == pytest.approx(2100 * zoom, rel=1e-4)
    # a person who stays put in the picture while the camera turns 12 degrees moves through the world
    pelvis = from_proto(moving.tracks[0].world)[:, 0]
    assert np.linalg.norm(pelvis[-1, [0, 2]] - pelvis[0, [0, 2]]) > 0.5
    with pytest.raises(grpc.RpcError) as err:   # another job's camera motion is refused
        _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="other-job", width=1920, height=1080, frames=frames,
                                                    camera_motions=refs))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_camera_that_moved_is_warned_in_the_reply(lifter_stub, store):
    from ..unit.test_lifter_camera_path import motion_of, slide_from, turning
    frames = _standing_person(40)
    turns, zoom = turning(40)
    # from frame 10 on the background shows parallax that no turn and zoom explains (the camera slid sideways)
    ref = store.put_message("jobs/lift-slide/segments/00000/camera.pb",
                            slide_from(motion_of(turns, np.ones(40)), turns, 10))
    poses = _lift(lifter_stub, lifter3d_pb2.LiftRequest(job_id="lift-slide", width=1920, height=1080, frames=frames,
                                                         focal_px=2100, camera_motions=[ref])).poses
    assert common_pb2.CAMERA_TRANSLATED in set(poses.camera.quality)
    assert any("camera itself probably moved" in w for w in poses.warnings)
