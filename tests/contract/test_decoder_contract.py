"""Decoder over real gRPC on loopback with a real S3 store."""
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from hpe3d.v1 import common_pb2, decoder_pb2, decoder_pb2_grpc
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
