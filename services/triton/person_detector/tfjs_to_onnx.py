"""TF.js graph model -> ONNX with tf2onnx (a maintained converter), in the conversion venv
(``.venv-convert``: tensorflow-cpu 2.15.1, tf2onnx 1.17.0, onnx 1.17.0; see the Makefile's
``detector`` target).

    .venv-convert/bin/python -m services.triton.person_detector.tfjs_to_onnx MODEL.json OUT.onnx [--batch-dynamic]

Two repairs, both about what the TF.js converter wrote, not about the model:

* attributes: the TF.js converter drops attributes that equal their defaults, and for fused ops the
  ``TArgs`` list; tf2onnx needs them (``NodeDef missing attr 'TArgs'``, ``KeyError: 'index_type'``).
  They are filled in from TensorFlow's own op registry before conversion (needed by MoveNet
  MultiPose; NanoDet converts as it is).
* ``--batch-dynamic``: the input's batch dimension is made -1, so Triton's dynamic batcher can
  stack frames; the serving graph (``serving_graph.py``) then checks that a batch gives what single
  frames give.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

FUSED_OPS = ("_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul")


def fill_attributes(model_json: dict) -> int:
    """Add each node's missing attributes with their registered defaults, and ``TArgs`` of fused
    ops; returns how many were added. Needs TensorFlow."""
    from google.protobuf import json_format
    from tensorflow.python.framework import op_def_registry

    added = 0
    for node in model_json["modelTopology"]["node"]:
        attrs = node.setdefault("attr", {})
        if node["op"] in FUSED_OPS and "TArgs" not in attrs:
            extra = int(attrs.get("num_args", {}).get("i", len(node["input"]) - 2))
            dtype = attrs.get("T", {}).get("type", "DT_FLOAT")
            attrs["TArgs"] = {"list": {"type": [dtype] * extra}}
            added += 1
        op_def = op_def_registry.get(node["op"])
        if op_def is None:
            continue
        for attr in op_def.attr:
            if attr.name not in attrs and attr.HasField("default_value"):
                attrs[attr.name] = json_format.MessageToDict(attr.default_value)
                added += 1
    return added


def input_spec(model_json: dict, batch_dynamic: bool) -> str:
    """tf2onnx's ``--inputs`` value: the signature's input with its shape (batch -1 if asked)."""
    (name, spec), = model_json["signature"]["inputs"].items()
    tensor = spec.get("name", name)
    dims = [int(d["size"]) for d in spec["tensorShape"]["dim"]]
    if batch_dynamic:
        dims[0] = -1
    return f"{tensor if ':' in tensor else tensor + ':0'}[{','.join(map(str, dims))}]"


def convert(model_path: Path, out: Path, batch_dynamic: bool = False) -> Path:
    model_json = json.loads(model_path.read_text())
    added = fill_attributes(model_json)
    with tempfile.TemporaryDirectory() as tmp:
        fixed = Path(tmp) / model_path.name
        fixed.write_text(json.dumps(model_json))
        for weights in model_json["weightsManifest"]:
            for path in weights["paths"]:
                (Path(tmp) / path).symlink_to((model_path.parent / path).resolve())
        out.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "tf2onnx.convert", "--tfjs", str(fixed), "--output", str(out),
                   "--inputs", input_spec(model_json, batch_dynamic)]
        print(f"person detector: {model_path.name}: {added} default attributes filled; tf2onnx -> {out}",
              flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"tf2onnx failed on {model_path}:\n{result.stderr[-3000:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a TF.js graph model to ONNX with tf2onnx")
    parser.add_argument("model", type=Path, help="the TF.js model.json (weights beside it)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch-dynamic", action="store_true", help="make the input's batch dimension -1")
    args = parser.parse_args(argv)
    convert(args.model, args.out, args.batch_dynamic)
    return 0


if __name__ == "__main__":
    sys.exit(main())
