"""The CLI's keypoint parsing (GAST-Net demo JSON, our poses.json), --size handling and SSE parsing."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from tests.conftest import require_shared
from hpe3d_cli.cli import main
from hpe3d_cli.client import ServerSentEvent, parse_sse
from hpe3d_cli.keypoints_io import KeypointFormatError, parse_size, read_keypoints
from hpe3d_cli.lift_outputs import ASSUMED_FPS, frame_rate, video_info

POSES_SCHEMA = Path(__file__).resolve().parents[2] / "services" / "renderer" / "poses_schema.json"


def gastnet_doc(frames: int = 4, persons_in_frame=lambda i: 1) -> dict:
    data = []
    for i in range(frames):
        skeletons = [{"pose": [[100.0 + i + p, 200.0 + j] for j in range(17)], "score": [[0.9]] * 17,
                      "bbox": [0, 0, 10, 10]} for p in range(persons_in_frame(i))]
        data.append({"frame_index": i + 1, "skeleton": skeletons})
    return {"label": "demo", "label_index": 0, "data": data}


def test_gastnet_json_needs_a_size():
    with pytest.raises(KeypointFormatError, match="--size WIDTHxHEIGHT"):
        read_keypoints(gastnet_doc())


def test_gastnet_json_is_parsed_into_tracks():
    parsed = read_keypoints(gastnet_doc(5, lambda i: 2 if i in (1, 2) else 1), size=(1280, 720))
    assert parsed.source_format == "gastnet" and parsed.frame_count == 5
    assert (parsed.width, parsed.height) == (1280, 720)
    first, second = parsed.tracks
    assert first.keypoints.shape == (5, 17, 3) and first.first_frame == 0
    assert np.allclose(first.keypoints[3, 4], [103.0, 204.0, 0.9])
    assert second.first_frame == 1 and second.keypoints.shape == (2, 17, 3)


def test_shared_gastnet_demo_file_parses():
    path = require_shared("keypoints/baseball_hrnet_coco17.json")
    parsed = read_keypoints(json.loads(path.read_text()), size=parse_size("1920x1080"))
    assert parsed.frame_count == 277 and parsed.tracks[0].keypoints.shape == (277, 17, 3)


def test_our_export_carries_its_size():
    doc = {"schema_version": "1.0", "video": {"width": 640, "height": 360},
           "frames": [{"index": 0, "persons": [{"track_id": 7, "keypoints_2d": [[1, 2, 0.5]] * 17}]},
                      {"index": 1, "persons": [{"track_id": 7, "keypoints_2d": None}]}]}
    parsed = read_keypoints(doc)
    assert (parsed.width, parsed.height) == (640, 360)
    assert [t.track_id for t in parsed.tracks] == [7] and parsed.tracks[0].keypoints.shape == (1, 17, 3)


@pytest.mark.parametrize("text", ["1920", "0x10", "axb", ""])
def test_bad_sizes(text):
    with pytest.raises(KeypointFormatError):
        parse_size(text)


def test_lift_command_without_size_exits_with_a_clear_error(tmp_path, capsys):
    src = tmp_path / "gast.json"
    src.write_text(json.dumps(gastnet_doc()))
    assert main(["lift", str(src), "-o", str(tmp_path / "out.json")]) == 2
    assert "--size WIDTHxHEIGHT" in capsys.readouterr().out
    assert not (tmp_path / "out.json").exists()


def test_lift_frame_rate_and_video_info():
    parsed = read_keypoints(gastnet_doc(3), size=(100, 80))
    fps, warnings = frame_rate(gastnet_doc(3), None)
    assert fps == ASSUMED_FPS and "--fps" in warnings[0]                      # GAST-Net files record no rate
    assert frame_rate(gastnet_doc(3), 25.0) == (25.0, [])
    assert frame_rate({"video": {"fps": 59.94}}, None) == (59.94, [])         # our poses.json's own rate
    with pytest.raises(ValueError, match="positive"):
        frame_rate({}, 0.0)
    info = video_info(parsed, gastnet_doc(3), 25.0)
    assert (info.width, info.height, info.frame_count, info.fps) == (100, 80, 3, 25.0)
    assert list(info.timestamps_s) == pytest.approx([0, 0.04, 0.08])


def test_sse_parsing():
    lines = ["event: progress", 'data: {"a": 1}', "", ": keep-alive", "", "event: done", "data: x", ""]
    assert list(parse_sse(iter(lines))) == [ServerSentEvent("progress", '{"a": 1}'), ServerSentEvent("done", "x")]


def test_lift_command_writes_3d_for_every_frame(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from services.lifter3d.model import build_model
    config = {"kind": "gastnet", "channels": 16, "filter_widths": (3, 3)}
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pt"
    torch.save({"model": build_model(config).state_dict(), "config": config}, weights)
    src = tmp_path / "gast.json"
    src.write_text(json.dumps(gastnet_doc(12, lambda i: 2 if i >= 6 else 1)))
    out = tmp_path / "out.json"
    assert main(["lift", str(src), "-o", str(out), "--size", "640x480", "--weights", str(weights)]) == 0
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(POSES_SCHEMA.read_text()))  # the same poses.json as a job's
    assert doc["schema_version"] == "2.0" and doc["video"]["fps"] == ASSUMED_FPS and "--fps" in doc["warnings"][0]
    assert doc["model"] == "tiny.pt" and len(doc["frames"]) == 12
    assert [len(f["persons"]) for f in doc["frames"]] == [1] * 6 + [2] * 6
    person = doc["frames"][0]["persons"][0]
    assert np.asarray(person["keypoints_3d_root_relative"]).shape == (17, 3)
    assert np.allclose(person["keypoints_3d_root_relative"][0], 0.0, atol=1e-3)  # pelvis at the origin
