"""The PyTriton host's start-up guards (the serving itself is covered by the contract tests)."""
import os
import sysconfig
from pathlib import Path

from services.pose2d import triton_host
from services.pose2d.models import DETECTOR


def test_missing_model_file_is_named_with_make_models(monkeypatch, capsys):
    monkeypatch.setattr(triton_host, "missing_model_files", lambda: [DETECTOR.file])
    assert triton_host.main(["--grpc-port", "1", "--http-port", "2", "--metrics-port", "3"]) == 2
    err = capsys.readouterr().err
    assert str(DETECTOR.file) in err and "make models" in err


def test_libpython_dir_goes_first_once(monkeypatch):
    libdir = sysconfig.get_config_var("LIBDIR")
    monkeypatch.setenv("LD_LIBRARY_PATH", os.pathsep.join(["/opt/other", libdir]))
    assert triton_host.ensure_libpython_first() == libdir
    assert os.environ["LD_LIBRARY_PATH"].split(os.pathsep) == [libdir, "/opt/other"]
    triton_host.ensure_libpython_first()
    assert os.environ["LD_LIBRARY_PATH"].split(os.pathsep) == [libdir, "/opt/other"]
    monkeypatch.delenv("LD_LIBRARY_PATH")
    triton_host.ensure_libpython_first()
    assert os.environ["LD_LIBRARY_PATH"] == libdir and Path(libdir).is_dir()
