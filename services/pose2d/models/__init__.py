"""BlazePose GHUM as Triton models: names, files and tensors, in one place.

Two models, served under the same names and tensors whichever server hosts them (PyTriton on a
laptop and in CI, the official Triton image on GPU nodes; both read the model repository
``services/triton/repository``):

``blazepose_detector`` -- the person detector (``pose_detection.tflite``)
    input  ``image``            UINT8 [224, 224, 3] RGB pixels, letterboxed (black borders); the
                                                    model sees them as x / 127.5 - 1, in [-1, 1]
    output ``regressors``       FP32 [2254, 12]     per SSD anchor: box centre x, y, width, height,
                                                    then 4 keypoints (x, y) in 224-pixel units
                                                    relative to the anchor centre
    output ``scores``           FP32 [2254, 1]      per anchor: logit of "a person is here"

``blazepose_landmarks`` -- the full landmark model (``pose_landmark_full.tflite``)
    input  ``image``            UINT8 [256, 256, 3] RGB crop of the person's rotated ROI; the model
                                                    sees x / 255, in [0, 1]
    output ``landmarks``        FP32 [195]          39 landmarks x (x, y, z, visibility logit,
                                                    presence logit); x, y, z in 256-pixel crop units
    output ``pose_flag``        FP32 [1]            probability that a person is in the crop
    output ``segmentation``     FP32 [256, 256, 1]  person mask logits over the crop
    output ``heatmap``          FP32 [64, 64, 39]   per-landmark heatmaps over the crop
    output ``world_landmarks``  FP32 [117]          39 landmarks x (x, y, z), metres, hip-centred

Every tensor has a leading batch dimension on the wire (``max_batch_size`` below); the .tflite
models themselves take a batch of one, so the runner loops over the batch. Images travel as
bytes, a quarter of float32 (a landmark crop is 192 KiB instead of 768 KiB), and the served model
scales them (``input_scale``, ``input_offset``) into the range the .tflite file was trained on.

The runner that serves them is ``services/triton/litert_runner.py`` (one implementation for both
hosts: the repository's model folders link to it). The specs below are what the pose2d client
calls; the hosts read each model's config.pbtxt, and ``tests/unit/test_triton_repository.py`` keeps
the two in step. This module is imported by ``fetch_blazepose`` in a bare
Python: standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DETECTOR_MODEL = "blazepose_detector"
LANDMARK_MODEL = "blazepose_landmarks"
MODEL_NAMES = (DETECTOR_MODEL, LANDMARK_MODEL)

MODELS_DIR = Path(__file__).resolve().parent
BLAZEPOSE_DIR = MODELS_DIR / "blazepose"
REPOSITORY_DIR = MODELS_DIR.parents[1] / "triton" / "repository"   # the Triton model repository
DETECTOR_FILE = BLAZEPOSE_DIR / "pose_detection.tflite"
LANDMARK_FILE = BLAZEPOSE_DIR / "pose_landmark_full.tflite"

MAX_BATCH_SIZE = 16
MAX_QUEUE_DELAY_US = 500

DETECTOR_SIZE = 224
LANDMARK_SIZE = 256
NUM_ANCHORS = 2254
NUM_LANDMARKS = 39          # 33 body landmarks + 6 auxiliary (33, 34: hip centre and ROI scale/rotation point)
HEATMAP_SIZE = 64


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the client sends or reads it: Triton name, numpy dtype name,
    dims without the batch dimension."""

    name: str
    dtype: str
    dims: tuple[int, ...]

    @property
    def config_dtype(self) -> str:
        """The data_type of a config.pbtxt (``TYPE_FP32``)."""
        return {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8"}[self.dtype]

    @property
    def wire_dtype(self) -> str:
        """The datatype string of Triton's inference protocol (what tritonclient calls it)."""
        return {"float32": "FP32", "uint8": "UINT8"}[self.dtype]


@dataclass(frozen=True)
class ModelSpec:
    """A model as the client calls it; ``file`` is where `make models` puts its .tflite. How the
    served model maps these tensors onto the .tflite file and scales its input is said once, in the
    model's config.pbtxt."""

    name: str
    file: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def output(self, name: str) -> TensorSpec:
        return next(t for t in self.outputs if t.name == name)


DETECTOR = ModelSpec(
    name=DETECTOR_MODEL,
    file=DETECTOR_FILE,
    inputs=(TensorSpec("image", "uint8", (DETECTOR_SIZE, DETECTOR_SIZE, 3)),),
    outputs=(
        TensorSpec("regressors", "float32", (NUM_ANCHORS, 12)),
        TensorSpec("scores", "float32", (NUM_ANCHORS, 1)),
    ),
)

LANDMARKS = ModelSpec(
    name=LANDMARK_MODEL,
    file=LANDMARK_FILE,
    inputs=(TensorSpec("image", "uint8", (LANDMARK_SIZE, LANDMARK_SIZE, 3)),),
    outputs=(
        TensorSpec("landmarks", "float32", (NUM_LANDMARKS * 5,)),
        TensorSpec("pose_flag", "float32", (1,)),
        TensorSpec("segmentation", "float32", (LANDMARK_SIZE, LANDMARK_SIZE, 1)),
        TensorSpec("heatmap", "float32", (HEATMAP_SIZE, HEATMAP_SIZE, NUM_LANDMARKS)),
        TensorSpec("world_landmarks", "float32", (NUM_LANDMARKS * 3,)),
    ),
)

MODELS = {DETECTOR.name: DETECTOR, LANDMARKS.name: LANDMARKS}


def missing_model_files() -> list[Path]:
    """The .tflite files that ``make models`` has not extracted yet."""
    return [spec.file for spec in MODELS.values() if not spec.file.is_file()]


def load_runner(spec: ModelSpec, num_threads: int = 2):
    """The LiteRT runner (``services/triton/litert_runner.py``) of ``spec``'s model, built from its
    config.pbtxt in the model repository as the Triton hosts build it (needs numpy, protobuf,
    tritonclient and ai-edge-litert); raises ``ModelFileMissing`` naming the file when `make models`
    has not run."""
    from google.protobuf import json_format

    from services.pose2d.models.model_config import read_config
    from services.triton.litert_runner import LiteRTModel, bindings_from_config, input_scaling, model_file

    folder = REPOSITORY_DIR / spec.name
    config = json_format.MessageToDict(read_config(folder / "config.pbtxt"), preserving_proto_field_name=True)
    inputs, outputs = bindings_from_config(config)
    scale, offset = input_scaling(config)
    return LiteRTModel(model_file(config, folder / "1"), inputs, outputs, num_threads=num_threads,
                       input_scale=scale, input_offset=offset)
