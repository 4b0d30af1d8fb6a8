"""Stages trust no one: a call may touch only its own job's objects, a stage token (when set) is
required on every call but health checks, and servers listen on 127.0.0.1 unless told otherwise.

Real stage servers on loopback with the real S3 store (SeaweedFS), real gRPC clients.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hpe3d.v1 import (common_pb2, decoder_pb2, decoder_pb2_grpc, lifter3d_pb2, lifter3d_pb2_grpc, pose2d_pb2,
                      pose2d_pb2_grpc, renderer_pb2, renderer_pb2_grpc)
from hpe3d_cli.local_stack import free_port
from services.common import grpc_server
from services.common.grpc_server import CLIENT_OPTIONS, client_target
from services.common.stage_auth import aio_token_interceptors, stage_call_metadata

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
CLIP = DATA / "two_people_office_24f.mp4"
OWN, OTHER = "scope-own", "scope-other"  # the caller's job and another job whose objects it must not touch
TOKEN = "correct-horse-battery-staple"


# -- helpers ----------------------------------------------------------------------------------------
def listening_addresses(port: int) -> set[str]:
    """Local IPs with a TCP socket in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state = cols[1], cols[3]
            ip_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(ip_hex)
            # the kernel writes each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":
                raw = raw[12:]  # an IPv4-mapped IPv6 socket (gRPC binds these) listens on that IPv4 address
            found.add(socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw))
    return found


def denied(call, *args, **kwargs) -> grpc.RpcError:
    """The error of a call that must fail; streaming replies are read to the end."""
    with pytest.raises(grpc.RpcError) as err:
        reply = call(*args, timeout=60, **kwargs)
        if not hasattr(reply, "SerializeToString"):
            list(reply)
    return err.value


def assert_outside(err: grpc.RpcError, key_part: str, job: str = OWN) -> None:
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (err.code(), err.details())
    assert key_part in err.details() and repr(job) in err.details(), err.details()


def own(store, name: str) -> common_pb2.ObjectRef:
    return store.ref(f"jobs/{OWN}/{name}")


def other(store, name: str) -> common_pb2.ObjectRef:
    return store.ref(f"jobs/{OTHER}/{name}")


@pytest.fixture(scope="module")
def victim(store):
    """Objects of another job: its input video and the poses.json the gateway would serve."""
    store.put_bytes(f"jobs/{OTHER}/input/clip.mp4", CLIP.read_bytes(), "video/mp4")
    store.put_bytes(f"jobs/{OTHER}/output/poses.json", b'{"victim": true}', "application/json")
    store.put_bytes(f"jobs/{OWN}/input/clip.mp4", CLIP.read_bytes(), "video/mp4")
    yield store
    assert store.get_bytes(f"jobs/{OTHER}/output/poses.json") == b'{"victim": true}'


def _serve(register, service: str, **kwargs):
    return grpc_server.start_server(register, [service], port=0, **kwargs)


@pytest.fixture(scope="module")
def stages(store, settings, victim):
    """The four stages on loopback (pose2d's Triton is never reached: the calls are refused first)."""
    from services.decoder.server import register as decoder
    from services.lifter3d.server import register as lifter3d
    from services.lifter3d.video_lift import load_service_lifter
    from services.pose2d.server import register as pose2d
    from services.renderer.server import register as renderer

    down = dataclasses.replace(settings, triton_url=f"127.0.0.1:{free_port()}")
    lifter = load_service_lifter(settings.lifter_weights)
    servers = {
        "decoder": _serve(lambda s: decoder(s, store, settings), "hpe3d.v1.Decoder"),
        "pose2d": _serve(lambda s: pose2d(s, store, down), "hpe3d.v1.Pose2D"),
        "lifter3d": _serve(lambda s: lifter3d(s, store, settings, lifter), "hpe3d.v1.Lifter3D"),
        "renderer": _serve(lambda s: renderer(s, store, settings), "hpe3d.v1.Renderer"),
    }
    channels = {name: grpc_server.channel(f"127.0.0.1:{srv.port}") for name, srv in servers.items()}
    yield {"decoder": decoder_pb2_grpc.DecoderStub(channels["decoder"]),
           "pose2d": pose2d_pb2_grpc.Pose2DStub(channels["pose2d"]),
           "lifter3d": lifter3d_pb2_grpc.Lifter3DStub(channels["lifter3d"]),
           "renderer": renderer_pb2_grpc.RendererStub(channels["renderer"]),
           "servers": servers}
    for ch in channels.values():
        ch.close()
    for srv in servers.values():
        srv.stop(0)


# -- job scope: each stage ------------------------------------------------------------------------
def test_decoder_refuses_another_jobs_objects(stages, store):
    stub = stages["decoder"]
    # the incident: a loopback Decode that writes over another job's poses.json
    err = denied(stub.Decode, decoder_pb2.DecodeRequest(
        job_id=OWN, video=own(store, "input/clip.mp4"), start_frame=0, frame_count=4,
        output=other(store, "output/poses.json")))
    assert_outside(err, f"jobs/{OTHER}/output/poses.json")
    assert "output" in err.details()
    err = denied(stub.Decode, decoder_pb2.DecodeRequest(
        job_id=OWN, video=other(store, "input/clip.mp4"), start_frame=0, frame_count=4,
        output=own(store, "segments/00000/frames.pb")))
    assert_outside(err, f"jobs/{OTHER}/input/clip.mp4")
    assert not store.exists(f"jobs/{OWN}/segments/00000/frames.pb")
    # Probe names its job in the metadata
    err = denied(stub.Probe, decoder_pb2.ProbeRequest(video=other(store, "input/clip.mp4")),
                 metadata=(("x-job-id", OWN),))
    assert_outside(err, f"jobs/{OTHER}/input/clip.mp4")
    # a call that names an object but no job
    err = denied(stub.Probe, decoder_pb2.ProbeRequest(video=own(store, "input/clip.mp4")))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "names no job" in err.details()
    # the same calls inside their own job go through
    info = stub.Probe(decoder_pb2.ProbeRequest(video=own(store, "input/clip.mp4")), metadata=(("x-job-id", OWN),))
    assert info.frame_count == 24
    ref = stub.Decode(decoder_pb2.DecodeRequest(job_id=OWN, video=own(store, "input/clip.mp4"), start_frame=0,
                                                frame_count=4, output=own(store, "segments/00000/frames.pb")))
    assert ref.frame_count == 4 and store.exists(ref.frames)


def test_decoder_track_camera_refuses_another_jobs_segments(stages, store):
    stub = stages["decoder"]
    err = denied(stub.TrackCamera, decoder_pb2.TrackCameraRequest(
        job_id=OWN, frames=own(store, "segments/00001/frames.pb"), poses2d=own(store, "segments/00001/poses2d.pb"),
        previous_frames=own(store, "segments/00000/frames.pb"),
        previous_poses2d=other(store, "segments/00000/poses2d.pb"), output=own(store, "segments/00001/camera.pb")))
    assert_outside(err, f"jobs/{OTHER}/segments/00000/poses2d.pb")
    assert "previous_poses2d" in err.details() and not store.exists(f"jobs/{OWN}/segments/00001/camera.pb")


def test_escapes_and_disagreements_are_refused(stages, store):
    stub = stages["decoder"]
    video = own(store, "input/clip.mp4")

    def decode(job_id: str, output: common_pb2.ObjectRef, metadata=()):
        return denied(stub.Decode, decoder_pb2.DecodeRequest(job_id=job_id, video=video, start_frame=0,
                                                             frame_count=2, output=output), metadata=metadata)

    climbing = common_pb2.ObjectRef(key=f"jobs/{OWN}/../{OTHER}/output/poses.json")
    err = decode(OWN, climbing)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "'..'" in err.details()
    err = decode(OWN, common_pb2.ObjectRef(bucket="another-bucket", key=f"jobs/{OWN}/x.pb"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "another-bucket" in err.details()
    err = decode(OWN, own(store, "x.pb"), metadata=(("x-job-id", OTHER),))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and repr(OTHER) in err.details()
    err = decode("../" + OTHER, own(store, "x.pb"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "not a valid job id" in err.details()
    err = decode(OWN, common_pb2.ObjectRef(key=f"jobs/{OWN}-2/x.pb"))  # a job whose id starts like ours
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_pose2d_refuses_another_jobs_objects(stages, store):
    stub = stages["pose2d"]
    segment = common_pb2.SegmentRef(job_id=OWN, index=0, frames=other(store, "segments/00000/frames.pb"))
    err = denied(stub.Estimate, pose2d_pb2.EstimateRequest(segment=segment))
    assert_outside(err, f"jobs/{OTHER}/segments/00000/frames.pb")
    assert "segment.frames" in err.details()
    segment.frames.CopyFrom(own(store, "segments/00000/frames.pb"))
    err = denied(stub.Estimate, pose2d_pb2.EstimateRequest(segment=segment,
                                                           output=other(store, "output/poses.json")))
    assert_outside(err, f"jobs/{OTHER}/output/poses.json")


def test_lifter3d_refuses_another_jobs_objects(stages, store):
    stub = stages["lifter3d"]
    mine = store.put_message(f"jobs/{OWN}/segments/00000/poses2d.pb", common_pb2.Poses2D())
    err = denied(stub.Lift, lifter3d_pb2.LiftRequest(job_id=OWN, width=640, height=360,
                                                     segments=[mine, other(store, "segments/00000/poses2d.pb")]))
    assert_outside(err, f"jobs/{OTHER}/segments/00000/poses2d.pb")
    assert "segments[1]" in err.details()
    err = denied(stub.Lift, lifter3d_pb2.LiftRequest(job_id=OWN, width=640, height=360, segments=[mine],
                                                     output=other(store, "output/poses.json")))
    assert_outside(err, f"jobs/{OTHER}/output/poses.json")


def test_lifter3d_with_inline_keypoints_needs_no_job(stages):
    # an integrator's call that names no object is not a job's: it is not refused for naming none
    empty = [common_pb2.FramePoses2D(frame_index=f) for f in range(5)]
    err = denied(stages["lifter3d"].Lift, lifter3d_pb2.LiftRequest(width=640, height=360, frames=empty))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION  # "no person found": it ran


def test_renderer_refuses_another_jobs_objects(stages, store):
    stub = stages["renderer"]
    info = common_pb2.VideoInfo(width=640, height=360, fps=30, frame_count=24)
    base = dict(job_id=OWN, video=own(store, "input/clip.mp4"), video_info=info, skip_video=True)
    err = denied(stub.Render, renderer_pb2.RenderRequest(output_prefix=f"jobs/{OTHER}/output/", **base))
    assert_outside(err, f"jobs/{OTHER}/output/")
    assert "output_prefix" in err.details()
    err = denied(stub.Render, renderer_pb2.RenderRequest(output_prefix=f"jobs/{OWN}/output/",
                                                         poses3d=other(store, "poses3d.pb"), **base))
    assert_outside(err, f"jobs/{OTHER}/poses3d.pb")
    err = denied(stub.Render, renderer_pb2.RenderRequest(output_prefix=f"jobs/{OWN}/output/", bucket="elsewhere",
                                                         **base))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "elsewhere" in err.details()


# -- the stage token --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded_decoder(store, settings, victim):
    from services.decoder.server import register
    server = _serve(lambda s: register(s, store, settings), "hpe3d.v1.Decoder", token=TOKEN)
    yield f"127.0.0.1:{server.port}"
    server.stop(0)


def _probe(channel, metadata=()):
    request = decoder_pb2.ProbeRequest(video=store_ref(f"jobs/{OWN}/input/clip.mp4"))
    return decoder_pb2_grpc.DecoderStub(channel).Probe(request, metadata=(("x-job-id", OWN), *metadata), timeout=60)


def store_ref(key: str) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(key=key)


def test_missing_or_wrong_token_is_unauthenticated(guarded_decoder):
    with grpc_server.channel(guarded_decoder) as ch:
        with pytest.raises(grpc.RpcError) as err:
            _probe(ch)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "missing" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            _probe(ch, metadata=(("authorization", "Bearer not-the-token"),))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and "wrong" in err.value.details()
        # health checks stay open for probes
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="hpe3d.v1.Decoder"),
                                                      timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    with grpc_server.channel(guarded_decoder, token="not-the-token") as ch:
        with pytest.raises(grpc.RpcError) as err:
            _probe(ch)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_right_token_is_accepted(guarded_decoder, settings):
    with grpc_server.channel(guarded_decoder, token=TOKEN) as ch:
        assert _probe(ch).frame_count == 24
    with grpc_server.channel(guarded_decoder) as ch:  # the same, by hand
        metadata = stage_call_metadata(dataclasses.replace(settings, stage_token=TOKEN))
        assert _probe(ch, metadata=metadata).frame_count == 24


def test_streaming_stage_checks_the_token_and_asyncio_clients_send_it(store, settings, victim):
    """The worker's clients (grpc.aio, unary and server-streaming) carry the token through their
    channel interceptors; a streaming call without it is refused."""
    from services.decoder.server import register as decoder
    from services.renderer.server import register as renderer

    dec = _serve(lambda s: decoder(s, store, settings), "hpe3d.v1.Decoder", token=TOKEN)
    ren = _serve(lambda s: renderer(s, store, settings), "hpe3d.v1.Renderer", token=TOKEN)
    info = common_pb2.VideoInfo(width=640, height=360, fps=30, frame_count=24)
    render = renderer_pb2.RenderRequest(job_id=OWN, video_info=info, output_prefix=f"jobs/{OWN}/output/",
                                        skip_video=True)

    async def calls(token: str):
        channels = [grpc.aio.insecure_channel(client_target(f"127.0.0.1:{srv.port}"), options=CLIENT_OPTIONS,
                                              interceptors=aio_token_interceptors(token)) for srv in (dec, ren)]
        try:
            probe = await decoder_pb2_grpc.DecoderStub(channels[0]).Probe(
                decoder_pb2.ProbeRequest(video=store_ref(f"jobs/{OWN}/input/clip.mp4")),
                metadata=(("x-job-id", OWN),), timeout=60)
            updates = [u async for u in renderer_pb2_grpc.RendererStub(channels[1]).Render(render, timeout=60)]
            return probe, updates
        finally:
            for ch in channels:
                await ch.close()

    try:
        probe, updates = asyncio.run(calls(TOKEN))
        assert probe.frame_count == 24
        assert {a.name for a in updates[-1].result.artifacts} >= {"poses.json"}
        with pytest.raises(grpc.RpcError) as err:
            asyncio.run(calls("not-the-token"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc_server.channel(f"127.0.0.1:{ren.port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                list(renderer_pb2_grpc.RendererStub(ch).Render(render, timeout=60))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        dec.stop(0)
        ren.stop(0)


# -- where servers listen -----------------------------------------------------------------------------
def test_servers_bind_loopback_by_default(stages):
    for name, server in stages["servers"].items():
        assert listening_addresses(server.port) == {"127.0.0.1"}, name
        with grpc_server.channel(f"127.0.0.1:{server.port}") as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_bind_address_is_configurable():
    server = grpc_server.start_server(lambda s: None, [], port=0, host="0.0.0.0")
    try:
        bound = listening_addresses(server.port)
        assert bound and bound <= {"0.0.0.0", "::"}, bound  # every interface (gRPC binds [::], dual stack)
    finally:
        server.stop(0)


def _stage_process(settings, extra_env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, **settings.env(), "HPE3D_GRPC_PORT": str(port), **extra_env}
    if "HPE3D_BIND_HOST" not in extra_env:
        del env["HPE3D_BIND_HOST"]  # the default applies
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "proto"), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "services.decoder.server"], env=env, cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not listening_addresses(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"decoder did not start: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return proc, port


def test_stage_process_listens_on_loopback_and_requires_its_token(settings, victim):
    """``python -m services.decoder.server`` as the local stack runs it: HPE3D_BIND_HOST unset means
    127.0.0.1; HPE3D_STAGE_TOKEN set means calls without it are refused."""
    proc, port = _stage_process(settings, {"HPE3D_STAGE_TOKEN": TOKEN})
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
        with grpc_server.channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                _probe(ch)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with grpc_server.channel(f"127.0.0.1:{port}", token=TOKEN) as ch:
            assert _probe(ch).frame_count == 24
    finally:
        proc.terminate()
        proc.wait(30)


def test_triton_host_listens_on_loopback(triton_stack):
    """The local Triton host (PyTriton), started as the local stack starts it: gRPC, HTTP and metrics
    on 127.0.0.1 only."""
    for name in ("triton_grpc", "triton_http", "triton_metrics"):
        port = triton_stack.ports[name][0]  # one port per replica
        assert listening_addresses(port) == {"127.0.0.1"}, (name, listening_addresses(port))
