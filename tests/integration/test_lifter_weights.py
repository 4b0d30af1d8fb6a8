"""Per-job lifter weights: a user uploads adapted weights through the API (``hpe3d weights upload``), lists them, and
the lifter3d stage lifts with them when the worker's request names them; another user neither sees nor uses them.
Real SeaweedFS and nats-server, the API served by uvicorn on loopback, the lifter3d stage over real gRPC."""
from __future__ import annotations

import asyncio
import io

import grpc
import httpx
import numpy as np
import pytest
import torch

from gateway.api.lifter_weights import check_lifter_weights
from gateway.jobs.manifest import JobOptions, user_slug
from hpe3d.v1 import lifter3d_pb2
from hpe3d_cli.cli import main
from services.common.arrays import from_proto
from services.common.lifter_weights import stage_weights_spec, user_weights_key
from services.lifter3d.lift import DEFAULT_WEIGHTS
from tests.conftest import bearer, make_api_key

from ..contract.test_lifter3d_contract import _lift, _standing_person, lifter_stub  # noqa: F401 (fixture)

TWO_D_ONLY = DEFAULT_WEIGHTS.parent / "gastnet_2d_only_27f.pt"


@pytest.fixture(scope="module")
def users(store):
    """Two users' API keys and their ``user`` names (what the job manifest records)."""
    return {"ann": (make_api_key(store, "ann"), "key:ann"), "bob": (make_api_key(store, "bob"), "key:bob")}


@pytest.fixture(scope="module")
def anns_weights(api_url, users, tmp_path_factory, monkeypatch_module):
    """Ann's adapted weights as ``hpe3d adapt`` leaves them (weights + card beside them), uploaded by the CLI."""
    folder = tmp_path_factory.mktemp("adapted")
    weights = folder / "dance.pt"
    weights.write_bytes(TWO_D_ONLY.read_bytes())
    (folder / "dance.card.md").write_text("# Adapted lifter: dance.pt\n\nAdapted on Ann's dance class videos.\n")
    monkeypatch_module.setenv("HPE3D_API_KEY", users["ann"][0])
    assert main(["weights", "upload", "dance-class", str(weights), "--url", api_url]) == 0
    monkeypatch_module.delenv("HPE3D_API_KEY")
    return "dance-class"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _lift_with(stub, store, job: str, spec: str):
    frames = _standing_person(40)
    return _lift(stub, lifter3d_pb2.LiftRequest(job_id=job, width=1920, height=1080, frames=frames,
                                                lifter_weights=spec))


def test_listing_shows_the_shipped_weights_and_only_the_callers_own(api_url, users, anns_weights, capsys,
                                                                     monkeypatch):
    ann = httpx.get(f"{api_url}/v1/lifter-weights", headers=bearer(users["ann"][0])).json()["weights"]
    bob = httpx.get(f"{api_url}/v1/lifter-weights", headers=bearer(users["bob"][0])).json()["weights"]
    shipped = {"gastnet_bandai_27f", "gastnet_2d_only_27f"}
    assert {w["name"] for w in bob} == shipped
    assert {w["name"] for w in ann} == shipped | {anns_weights}
    own = next(w for w in ann if w["name"] == anns_weights)
    assert own["kind"] == "own" and own["summary"] == "Adapted on Ann's dance class videos."
    assert own["size_bytes"] == TWO_D_ONLY.stat().st_size
    assert [w["name"] for w in ann if w["default"]] == ["gastnet_bandai_27f"]
    # one entry: Ann reads her card; Bob gets 404, as for a name that does not exist
    card = httpx.get(f"{api_url}/v1/lifter-weights/{anns_weights}", headers=bearer(users["ann"][0])).json()["card"]
    assert "dance class" in card
    assert httpx.get(f"{api_url}/v1/lifter-weights/{anns_weights}", headers=bearer(users["bob"][0])).status_code == 404
    assert httpx.get(f"{api_url}/v1/lifter-weights/nothing-here", headers=bearer(users["ann"][0])).status_code == 404
    assert httpx.get(f"{api_url}/v1/lifter-weights").status_code == 401
    monkeypatch.setenv("HPE3D_API_KEY", users["ann"][0])
    assert main(["weights", "list", "--url", api_url]) == 0
    out = capsys.readouterr().out
    assert "dance-class  (own" in out and "gastnet_bandai_27f  (shipped, default)" in out


def test_uploads_are_checked(api_url, users):
    headers = bearer(users["ann"][0])
    not_torch = httpx.post(f"{api_url}/v1/lifter-weights", headers=headers, data={"name": "junk"},
                           files={"weights": ("junk.pt", b"not a checkpoint", "application/octet-stream")})
    assert not_torch.status_code == 422 and "not a PyTorch checkpoint" in not_torch.json()["detail"]
    shipped_name = httpx.post(f"{api_url}/v1/lifter-weights", headers=headers, data={"name": "gastnet_bandai_27f"},
                              files={"weights": ("w.pt", TWO_D_ONLY.read_bytes(), "application/octet-stream")})
    assert shipped_name.status_code == 409
    bad_name = httpx.post(f"{api_url}/v1/lifter-weights", headers=headers, data={"name": "../x"},
                          files={"weights": ("w.pt", TWO_D_ONLY.read_bytes(), "application/octet-stream")})
    assert bad_name.status_code == 422


def test_only_the_owner_deletes_their_weights(api_url, users, store, capsys, monkeypatch):
    ann, bob = bearer(users["ann"][0]), bearer(users["bob"][0])
    made = httpx.post(f"{api_url}/v1/lifter-weights", headers=ann, data={"name": "to-delete"},
                      files={"weights": ("w.pt", TWO_D_ONLY.read_bytes(), "application/octet-stream"),
                             "card": ("w.card.md", b"# card\n\nShort-lived.\n", "text/markdown")})
    assert made.status_code == 201, made.text
    url = f"{api_url}/v1/lifter-weights/to-delete"
    # another caller is answered as for a name that does not exist, and nothing is removed
    assert httpx.delete(url, headers=bob).status_code == 404
    assert httpx.delete(url).status_code == 401
    assert httpx.get(url, headers=ann).status_code == 200
    shipped = httpx.delete(f"{api_url}/v1/lifter-weights/gastnet_bandai_27f", headers=ann)
    assert shipped.status_code == 409 and "shipped" in shipped.json()["detail"]
    monkeypatch.setenv("HPE3D_API_KEY", users["ann"][0])
    assert main(["weights", "delete", "to-delete", "--url", api_url]) == 0
    assert "deleted to-delete" in capsys.readouterr().out
    assert httpx.get(url, headers=ann).status_code == 404
    assert not store.list_keys(user_weights_key(user_slug(users["ann"][1]), "to-delete").removesuffix(".pt"))
    assert main(["weights", "delete", "to-delete", "--url", api_url]) == 1  # gone: said, exit 1


def test_a_job_naming_another_users_weights_is_refused(api_url, users, anns_weights, store):
    def submit(key: str, weights: str) -> httpx.Response:
        return httpx.post(f"{api_url}/v1/jobs", headers=bearer(key), data={"lifter_weights": weights},
                          files={"file": ("clip.mp4", b"\x00" * 64, "video/mp4")})
    refused = submit(users["bob"][0], anns_weights)
    assert refused.status_code == 422, refused.text
    assert f"lifter_weights {anns_weights!r}" in refused.json()["detail"]
    assert submit(users["bob"][0], "no-such-weights").status_code == 422
    # Ann's own name passes the same check (asked directly: a submission would go on to probe the upload)
    asyncio.run(check_lifter_weights(store, users["ann"][1], anns_weights))
    assert JobOptions.model_validate({"lifter_weights": anns_weights}).lifter_weights == anns_weights


def test_the_stage_lifts_with_the_named_weights(lifter_stub, store, users, anns_weights):
    default = _lift_with(lifter_stub, store, "weights-default", "")
    own = _lift_with(lifter_stub, store, "weights-own", stage_weights_spec(anns_weights, user_slug(users["ann"][1])))
    shipped = _lift_with(lifter_stub, store, "weights-shipped", stage_weights_spec("gastnet_2d_only_27f", ""))
    assert default.poses.model == "gastnet_bandai_27f.pt"
    assert own.poses.model == f"{anns_weights}.pt" and shipped.poses.model == "gastnet_2d_only_27f.pt"
    a = from_proto(default.poses.tracks[0].root_relative)
    b = from_proto(own.poses.tracks[0].root_relative)
    c = from_proto(shipped.poses.tracks[0].root_relative)
    assert a.shape == b.shape == (40, 17, 3)
    assert np.abs(a - b).mean() > 0.01  # other weights, other 3D (metres)
    assert np.allclose(b, c, atol=1e-5)  # Ann's file is the 2D-only network's bytes


def test_the_stage_refuses_another_users_missing_or_broken_weights(lifter_stub, store, users, anns_weights):
    bobs_key = stage_weights_spec(anns_weights, user_slug(users["bob"][1]))  # Bob has no weights of that name
    with pytest.raises(grpc.RpcError) as missing:
        _lift_with(lifter_stub, store, "weights-bob", bobs_key)
    assert missing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bobs_key in missing.value.details() and "not stored" in missing.value.details()
    # a checkpoint whose tensors do not fit the network its config names
    ckpt = torch.load(TWO_D_ONLY, weights_only=True)
    ckpt["config"] = dict(ckpt["config"], channels=64)
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    wrong = user_weights_key(user_slug(users["bob"][1]), "wrong-shape")
    store.put_bytes(wrong, buffer.getvalue())
    with pytest.raises(grpc.RpcError) as broken:
        _lift_with(lifter_stub, store, "weights-wrong", wrong)
    assert broken.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert wrong in broken.value.details() and "do not fit" in broken.value.details()
    with pytest.raises(grpc.RpcError) as outside:
        _lift_with(lifter_stub, store, "weights-outside", "jobs/other/secret.pt")
    assert outside.value.code() == grpc.StatusCode.INVALID_ARGUMENT
