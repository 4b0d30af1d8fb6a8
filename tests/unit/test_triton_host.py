"""The PyTriton host: start-up guards and how it reads model folders (the serving itself is covered
by the contract tests)."""
import os
import shutil
import sysconfig
from pathlib import Path

import pytest

from services.common.pose_models import BLAZEPOSE_DETECTOR
from services.triton import host, litert_runner
from services.triton.repositories import REPOSITORY_DIR


def test_missing_model_file_is_named_with_make_models(tmp_path, capsys, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(REPOSITORY_DIR / BLAZEPOSE_DETECTOR, repo / BLAZEPOSE_DETECTOR,
                    ignore=shutil.ignore_patterns("*.tflite", "__pycache__"))
    monkeypatch.delenv("HPE3D_BLAZEPOSE_DIR", raising=False)
    monkeypatch.setattr(litert_runner, "CHECKOUT_MODELS", tmp_path / "no-models")
    assert host.main(["--repository", str(repo), "--grpc-port", "1", "--http-port", "2",
                      "--metrics-port", "3"]) == 2
    err = capsys.readouterr().err
    assert "pose_detection.tflite" in err and "make models" in err


def test_missing_onnx_file_names_the_export_command(tmp_path, capsys):
    folder = tmp_path / "hrnet_w32"
    folder.mkdir()
    (folder / "config.pbtxt").write_text('name: "hrnet_w32"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n')
    assert host.main(["--repository", str(tmp_path), "--grpc-port", "1"]) == 2
    err = capsys.readouterr().err
    assert "hrnet_w32/1/model.onnx" in err and "hpe3d models export" in err


def test_folder_and_config_name_must_agree(tmp_path):
    folder = tmp_path / "hrnet_w32"
    folder.mkdir()
    (folder / "config.pbtxt").write_text('name: "hrnet_w48"\nplatform: "onnxruntime_onnx"\n')
    with pytest.raises(host.ModelUnservable, match="folder name"):
        host.load_model(folder)


def test_unknown_platform_is_refused(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.pbtxt").write_text('name: "m"\nplatform: "tensorflow_savedmodel"\n')
    with pytest.raises(host.ModelUnservable, match="not served on the CPU host"):
        host.load_model(folder)


def test_libpython_dir_goes_first_once(monkeypatch):
    libdir = sysconfig.get_config_var("LIBDIR")
    monkeypatch.setenv("LD_LIBRARY_PATH", os.pathsep.join(["/opt/other", libdir]))
    assert host.ensure_libpython_first() == libdir
    assert os.environ["LD_LIBRARY_PATH"].split(os.pathsep) == [libdir, "/opt/other"]
    host.ensure_libpython_first()
    assert os.environ["LD_LIBRARY_PATH"].split(os.pathsep) == [libdir, "/opt/other"]
    monkeypatch.delenv("LD_LIBRARY_PATH")
    host.ensure_libpython_first()
    assert os.environ["LD_LIBRARY_PATH"] == libdir and Path(libdir).is_dir()


def test_shared_memory_and_statistics_are_open_on_loopback_only():
    from services.triton.host import security_config

    local = security_config("127.0.0.1")
    assert "shared-memory" not in local.restricted_endpoints and "statistics" not in local.restricted_endpoints
    assert {"model-repository", "trace", "logging"} <= set(local.restricted_endpoints)
    assert local.access_token
    pod = security_config("0.0.0.0")
    assert {"shared-memory", "statistics", "model-repository"} <= set(pod.restricted_endpoints)


def test_one_name_in_two_repositories_stops_the_host(tmp_path, capsys):
    for repo in ("a", "b"):
        folder = tmp_path / repo / "hrnet_w32"
        (folder / "1").mkdir(parents=True)
        (folder / "config.pbtxt").write_text('name: "hrnet_w32"\nplatform: "onnxruntime_onnx"\n')
        (folder / "1" / "model.onnx").write_bytes(b"not read before the check")
    assert host.main(["--repository", str(tmp_path / "a"), "--repository", str(tmp_path / "b"),
                      "--grpc-port", "1"]) == 2
    err = capsys.readouterr().err
    assert "hrnet_w32" in err and str(tmp_path / "a") in err and str(tmp_path / "b") in err


def test_serving_repository_is_the_source_configs_run_by_our_python_model(tmp_path):
    from google.protobuf import json_format

    from services.triton.model_config import read_config
    from services.triton.serving_repository import (PYTHON_MODEL, plan_repositories, serving_config,
                                                    write_serving_repository)
    from tritonclient.grpc import model_config_pb2

    # an exported HRNet config for GPU nodes beside the repository's models
    export = tmp_path / "export" / "hrnet_w32"
    (export / "1").mkdir(parents=True)
    (export / "1" / "model.onnx").write_bytes(b"onnx")
    (export / "config.pbtxt").write_text(
        'name: "hrnet_w32"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 32\n'
        'input [{ name: "image" data_type: TYPE_UINT8 dims: [256, 192, 3] }]\n'
        'output [{ name: "heatmaps" data_type: TYPE_FP32 dims: [17, 64, 48] }]\n'
        'dynamic_batching { max_queue_delay_microseconds: 1000 }\n'
        'instance_group [{ count: 3 kind: KIND_GPU }]\n'
        'optimization { execution_accelerators { gpu_execution_accelerator [{ name: "tensorrt" }] } }\n')
    plans = plan_repositories([REPOSITORY_DIR, tmp_path / "export"])
    served = write_serving_repository(plans, tmp_path / "served", num_threads=1)
    assert sorted(p.name for p in served.iterdir()) == sorted(plan.name for plan in plans)
    for plan in plans:
        source, config = plan.config, read_config(served / plan.name / "config.pbtxt")
        assert config == serving_config(plan, 1)
        # what a client sees of the model is the source's
        for field in ("name", "max_batch_size", "input", "output", "dynamic_batching"):
            assert getattr(config, field) == getattr(source, field), (plan.name, field)
        assert config.backend == "python" and config.platform == "" and not config.HasField("optimization")
        assert [(g.kind, g.count) for g in config.instance_group] == [
            (model_config_pb2.ModelInstanceGroup.KIND_CPU, sum(g.count or 1 for g in source.instance_group) or 1)]
        params = {k: v.string_value for k, v in config.parameters.items()}
        assert params["num_threads"] == "1"
        assert params["hpe3d_runner"] == ("litert" if "tflite_file" in params else "onnx")
        for key, value in source.parameters.items():
            if key != "num_threads":
                assert params[key] == value.string_value
        version = served / plan.name / "1"
        assert (version / "model.py").resolve() == PYTHON_MODEL
        assert (version / params["hpe3d_model_file"]).resolve() == plan.model_file.resolve()
        assert json_format.MessageToDict(config)["parameters"]
    hrnet = read_config(served / "hrnet_w32" / "config.pbtxt")
    assert hrnet.instance_group[0].count == 3 and hrnet.dynamic_batching.max_queue_delay_microseconds == 1000


class _Doubler:
    """A runner that doubles its input and counts its calls (run_batched's unit test)."""

    def __init__(self):
        self.batches = []

    def infer(self, inputs, outputs=None):
        x = inputs["x"]
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"x: expected [N, 3], got {list(x.shape)}")
        self.batches.append(len(x))
        return {"y": x * 2, "z": x + 1} if outputs is None else {name: (x * 2 if name == "y" else x + 1)
                                                                  for name in outputs}


def test_requests_of_a_dynamic_batch_run_together_and_fail_alone():
    import numpy as np

    from services.triton.python_model import run_batched

    runner = _Doubler()
    a, b, c = (np.full((n, 3), n, np.float32) for n in (1, 2, 3))
    results = run_batched(runner, [({"x": a}, ("y",)), ({"x": b}, ("y",)), ({"x": c}, None)])
    assert runner.batches == [3, 3]          # a and b in one call, c (other outputs) in another
    assert set(results[0]) == {"y"} and np.array_equal(results[0]["y"], a * 2)
    assert np.array_equal(results[1]["y"], b * 2)
    assert set(results[2]) == {"y", "z"} and np.array_equal(results[2]["z"], c + 1)
    bad = np.zeros((1, 4), np.float32)
    runner.batches.clear()
    results = run_batched(runner, [({"x": a}, ("y",)), ({"x": bad}, ("y",)), ({"x": b}, ("y",))])
    assert isinstance(results[1], ValueError) and "[N, 3]" in str(results[1])
    assert np.array_equal(results[0]["y"], a * 2) and np.array_equal(results[2]["y"], b * 2)


def test_tritonserver_guards_what_no_client_needs_and_shm_on_other_addresses():
    from services.triton.tritonserver_process import guarded_apis, server_command

    assert guarded_apis("127.0.0.1") == ["model-repository", "trace", "logging"]
    assert set(guarded_apis("0.0.0.0")) == {"model-repository", "trace", "logging", "shared-memory", "statistics"}
    assert set(guarded_apis("10.1.2.3")) == set(guarded_apis("0.0.0.0"))
    first = server_command(Path("/m"), Path("/b"), "0.0.0.0", 1, 2, 3)
    second = server_command(Path("/m"), Path("/b"), "0.0.0.0", 1, 2, 3)
    for flag in ("--grpc-restricted-protocol=", "--http-restricted-api="):
        value = next(a for a in first if a.startswith(flag))[len(flag):]
        apis, header = value.split(":", 1)
        assert set(apis.split(",")) == set(guarded_apis("0.0.0.0"))
        key, token = header.split("=", 1)
        assert key == "triton-access-token" and len(token) >= 32
    assert [a for a in first if "restricted" in a] != [a for a in second if "restricted" in a]   # a new token each time
    assert "--model-control-mode=none" in first
    prefixes = [a for a in first + second if "shm-region-prefix-name" in a]
    assert len(set(prefixes)) == 2


def test_leftovers_of_killed_hosts_are_removed_and_no_others(tmp_path):
    import subprocess
    import sys

    from services.triton.tritonserver_process import LEFTOVER_PREFIX, remove_leftovers

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    tmp, shm = tmp_path / "tmp", tmp_path / "shm"
    for folder in (tmp, shm):
        folder.mkdir()
    dead_dir = tmp / f"{LEFTOVER_PREFIX}{gone.pid}-abc"
    (dead_dir / "models").mkdir(parents=True)
    dead_shm = shm / f"{LEFTOVER_PREFIX}{gone.pid}-1234abcd-0f42"
    dead_shm.write_bytes(b"x")
    mine = [tmp / f"{LEFTOVER_PREFIX}{os.getpid()}-xyz", shm / f"{LEFTOVER_PREFIX}{os.getpid()}-1-2"]
    mine[0].mkdir()
    mine[1].write_bytes(b"x")
    others = [tmp / "hpe3d-triton-abc", shm / f"pytriton{gone.pid}-x", shm / f"psm_{gone.pid}"]
    for path in others:
        path.write_bytes(b"x")
    assert sorted(remove_leftovers(tmp, shm)) == sorted([dead_dir, dead_shm])
    assert not dead_dir.exists() and not dead_shm.exists()
    assert all(p.exists() for p in mine + others)
