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
