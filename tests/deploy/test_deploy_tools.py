"""deploy/tools: what the model-repository upload sends where (no object store needed)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_upload_plan_follows_symlinks_and_skips_caches(tmp_path):
    upload = _load("upload_model_repository")
    weights = tmp_path / "weights.tflite"
    weights.write_bytes(b"tflite")
    repo = tmp_path / "repository"
    (repo / "detector" / "1" / "__pycache__").mkdir(parents=True)
    (repo / "detector" / "config.pbtxt").write_text('name: "detector"')
    (repo / "detector" / "1" / "model.py").write_text("")
    (repo / "detector" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"")
    (repo / "detector" / "1" / "model.tflite").symlink_to(weights)
    extra = tmp_path / "extra.bin"
    extra.write_bytes(b"x")
    plan = upload.plan(repo, "/models/", [f"{extra}=landmarks/1/extra.bin"])
    assert set(plan) == {"models/detector/config.pbtxt", "models/detector/1/model.py",
                         "models/detector/1/model.tflite", "models/landmarks/1/extra.bin"}
    assert plan["models/detector/1/model.tflite"].read_bytes() == b"tflite"
    with pytest.raises(SystemExit):
        upload.plan(repo, "models", ["no-equals-sign"])


def test_the_shipped_repository_is_planned_whole():
    upload = _load("upload_model_repository")
    if not upload.DEFAULT_SRC.is_dir():
        pytest.skip(f"{upload.DEFAULT_SRC} is not written yet")
    plan = upload.plan(upload.DEFAULT_SRC, "models", [])
    configs = [k for k in plan if k.endswith("/config.pbtxt")]
    assert configs, "the model repository has no <model>/config.pbtxt"
    assert all(k.startswith("models/") and "__pycache__" not in k for k in plan)
