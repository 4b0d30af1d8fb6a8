"""The whole local stack with a stage token set: jobs still succeed (the API and the workers send the
token), and a stray stage call on loopback can neither skip the token nor touch a finished job's
objects (the incident: a Decoder.Decode call that overwrote another job's poses.json)."""
from __future__ import annotations

import io
import time

import grpc
import httpx
import pytest

from hpe3d.v1 import decoder_pb2, decoder_pb2_grpc
from services.common import grpc_server
from services.common.storage import ObjectStore
from tests.conftest import TEST_DATA, bearer

pytestmark = pytest.mark.e2e

GOOD = TEST_DATA / "two_people_office_24f.mp4"
TOKEN = "e2e-stage-token-0123456789abcdef"


@pytest.fixture(scope="module")
def stack():
    from hpe3d_cli.local_stack import LocalStack
    with LocalStack(startup_timeout_s=240, settings_overrides={"stage_token": TOKEN}) as running:
        yield running


def test_jobs_succeed_with_a_stage_token_and_stray_calls_are_refused(stack):
    with httpx.Client(base_url=stack.gateway_url, headers=bearer(stack.api_key), timeout=60) as client:
        reply = client.post("/v1/jobs", files={"file": (GOOD.name, io.BytesIO(GOOD.read_bytes()), "video/mp4")})
        assert reply.status_code == 202, reply.text
        job_id = reply.json()["id"]
        deadline = time.monotonic() + 600
        while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] not in ("succeeded", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(1)
    assert job["state"] == "succeeded", job

    store = ObjectStore.from_settings(stack.settings)
    keys = store.list_keys(f"jobs/{job_id}/")
    poses_key = next(k for k in keys if k.endswith("/poses.json"))
    before = store.get_bytes(poses_key)
    own_video = store.put_file("jobs/intruder/input/clip.mp4", str(GOOD), "video/mp4")

    def stray_decode(channel, job: str):
        """Decode its own video but write the frames over the finished job's poses.json."""
        stub = decoder_pb2_grpc.DecoderStub(channel)
        return stub.Decode(decoder_pb2.DecodeRequest(job_id=job, video=own_video, start_frame=0, frame_count=4,
                                                     output=store.ref(poses_key)), timeout=60)

    with grpc_server.channel(stack.settings.decoder_addr) as ch:  # no token
        with pytest.raises(grpc.RpcError) as err:
            stray_decode(ch, "intruder")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with grpc_server.channel(stack.settings.decoder_addr, token=TOKEN) as ch:  # the token, another job
        with pytest.raises(grpc.RpcError) as err:
            stray_decode(ch, "intruder")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert poses_key in err.value.details() and "'intruder'" in err.value.details()
    assert store.get_bytes(poses_key) == before
