"""Triton Python-backend entry point of ``blazepose_landmarks``: the LiteRT runner shared by both BlazePose models
and the PyTriton host (``../litert_runner.py``, a link to services/triton/litert_runner.py that
an upload to S3 turns into a copy), configured by this model's config.pbtxt."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this model's folder

from litert_runner import TritonPythonModel  # noqa: E402,F401
