"""``hpe3d models export NAME --weights FILE --repository DIR``: an official HRNet / SimpleBaseline
checkpoint -> a Triton model folder ``DIR/NAME/config.pbtxt`` + ``DIR/NAME/1/model.onnx``.

The ONNX graph takes a dynamic batch of person crops and returns ``heatmaps`` ``[N, 17, H/4, W/4]``
float32, equal to the PyTorch model's. Its input, named ``image``, is either

* ``uint8`` (default): raw RGB pixels ``[N, H, W, 3]``; the graph scales them to [0, 1], normalises
  them with the ImageNet mean and std and moves channels first, as the official code feeds its
  model -- a quarter of the bytes of float32 on the wire;
* ``float32``: ``[N, 3, H, W]`` RGB already normalised that way (the official model's own input).

The config says ``platform: "onnxruntime_onnx"``, dynamic batching and, for ``--device gpu`` (the
default, the GPU overlay's choice), a ``KIND_GPU`` instance group with the TensorRT accelerator
in FP16; ``--device cpu`` writes a ``KIND_CPU`` group and no accelerator.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.common.pose_models import IMAGENET_MEAN, IMAGENET_STD, TOPDOWN_MODELS, PoseModel, topdown_model
from services.triton.topdown.checkpoint import CheckpointError, load_checkpoint

INPUT_NAME = "image"
OUTPUT_NAME = "heatmaps"
DEFAULT_MAX_BATCH = 32
DEFAULT_QUEUE_DELAY_US = 1000
OPSET = 17


def with_input_stage(model, input_dtype: str):
    """``model`` behind the input conversion of ``input_dtype`` (see the module docstring)."""
    import torch

    class PixelInput(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("inv_std", 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0))

        def forward(self, image):
            x = image.permute(0, 3, 1, 2).to(torch.float32)
            return self.net((x - self.mean) * self.inv_std)

    if input_dtype == "uint8":
        return PixelInput(model).eval()
    if input_dtype == "float32":
        return model
    raise ValueError(f"input dtype must be uint8 or float32, got {input_dtype!r}")


def input_shape(spec: PoseModel, input_dtype: str) -> tuple[int, int, int]:
    """The input's dims without the batch dimension."""
    return (spec.height, spec.width, 3) if input_dtype == "uint8" else (3, spec.height, spec.width)


def config_text(spec: PoseModel, input_dtype: str = "uint8", device: str = "gpu",
                max_batch_size: int = DEFAULT_MAX_BATCH, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
                instances: int = 1) -> str:
    """The model's config.pbtxt."""
    if device not in ("gpu", "cpu"):
        raise ValueError(f"device must be gpu or cpu, got {device!r}")
    dims_in = ", ".join(map(str, input_shape(spec, input_dtype)))
    dims_out = ", ".join(map(str, spec.heatmap_shape))
    what_in = ("raw RGB pixels of a person crop, uint8" if input_dtype == "uint8"
               else "RGB of a person crop, channels first, (x / 255 - ImageNet mean) / ImageNet std")
    accelerator = """
# TensorRT (FP16) builds an engine from the ONNX graph when the model loads on a GPU node.
optimization {
  execution_accelerators {
    gpu_execution_accelerator: [
      {
        name: "tensorrt"
        parameters { key: "precision_mode" value: "FP16" }
        parameters { key: "max_workspace_size_bytes" value: "1073741824" }
      }
    ]
  }
}
""" if device == "gpu" else ""
    network = f"{spec.backbone} {spec.backbone_size}"
    return f"""# {spec.name}: top-down 2D pose model ({network}, input {spec.width}x{spec.height}),
# exported by `hpe3d models export` from the official checkpoint {spec.checkpoint}.
name: "{spec.name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}

input [
  {{
    name: "{INPUT_NAME}"              # {what_in}
    data_type: {"TYPE_UINT8" if input_dtype == "uint8" else "TYPE_FP32"}
    dims: [ {dims_in} ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"           # one heatmap per COCO-17 joint, a quarter of the crop's size
    data_type: TYPE_FP32
    dims: [ {dims_out} ]
  }}
]

dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
}}

instance_group [
  {{
    count: {instances}
    kind: {"KIND_GPU" if device == "gpu" else "KIND_CPU"}
  }}
]
{accelerator}"""


def export_onnx(model, spec: PoseModel, path: str | Path, input_dtype: str = "uint8") -> Path:
    """Write ``model`` (a PyTorch top-down model with its weights) as ONNX with a dynamic batch."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = with_input_stage(model, input_dtype)
    dtype = torch.uint8 if input_dtype == "uint8" else torch.float32
    example = torch.zeros((1, *input_shape(spec, input_dtype)), dtype=dtype)
    with torch.no_grad():
        torch.onnx.export(net, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    return path


def export_model(name: str, weights: str | Path, repository: str | Path, input_dtype: str = "uint8",
                 device: str = "gpu", max_batch_size: int = DEFAULT_MAX_BATCH) -> Path:
    """Load the checkpoint, write ``repository/name/1/model.onnx`` and ``repository/name/config.pbtxt``;
    returns the model folder."""
    spec = topdown_model(name)
    model = load_checkpoint(spec, weights)
    folder = Path(repository) / spec.name
    export_onnx(model, spec, folder / "1" / "model.onnx", input_dtype)
    (folder / "config.pbtxt").write_text(config_text(spec, input_dtype, device, max_batch_size))
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(TOPDOWN_MODELS), help="model to export")
    parser.add_argument("--weights", required=True, help="the official checkpoint (.pth / .pth.tar)")
    parser.add_argument("--repository", required=True, help="Triton model repository folder to write into")
    parser.add_argument("--input", dest="input_dtype", choices=("uint8", "float32"), default="uint8",
                        help="uint8: raw RGB [N,H,W,3] (default); float32: normalised RGB [N,3,H,W]")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                        help="instance group: gpu (KIND_GPU + TensorRT FP16, default) or cpu")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH)


def run(args: argparse.Namespace) -> int:
    try:
        folder = export_model(args.name, args.weights, args.repository, args.input_dtype, args.device,
                              args.max_batch_size)
    except (FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {folder / 'config.pbtxt'} and {folder / '1' / 'model.onnx'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpe3d models export", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
