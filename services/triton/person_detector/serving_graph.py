"""NanoDet's tf2onnx conversion made into the served model ``person_detector/1/model.onnx``.

    .venv/bin/python -m services.triton.person_detector.serving_graph RAW.onnx \
        --repository services/triton/repository [--check-image PHOTO]

What the served graph adds around the converted one (the tensors are described once, in
``services/triton/repository/person_detector/config.pbtxt``; this module reads them from there):

* input: RGB bytes ``[N, H, W, 3]`` (the letterboxed frame); inside, the channels are put in the
  order NanoDet was trained on (BGR), normalised with its mean and std (``MEAN_BGR``, ``STD_BGR``:
  RangiLyu/nanodet's configs) and transposed to ``[N, 3, H, W]``. The wire carries bytes, a quarter
  of float32.
* batch: the converted graph reshapes each head's output with a literal batch of 1
  (``[1, C, -1]``); those shape constants become ``[0, C, -1]`` (keep the batch), so one call scores
  a batch of frames. Checked below: a batch gives what single frames give.
* outputs: per grid (strides 8, 16, 32; the config names them), the person class (COCO class 0) of
  the 80 sigmoid class scores, and the 4 x (reg_max+1) distribution bins of each cell as they come
  (the client decodes them: see ``services/pose2d/person_detector.py``). A grid's outputs are matched
  to the config's by their number of cells.

``--check-image`` compares the served graph (bytes in, batch of 2) with the converted graph (floats
normalised here, one frame a call) on a real photo and fails above 1e-4.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

MEAN_BGR = (103.53, 116.28, 123.675)
STD_BGR = (57.375, 57.12, 58.395)
NUM_CLASSES = 80
PERSON_CLASS = 0
MODEL_NAME = "person_detector"


def served_tensors(repository: Path):
    """From ``person_detector/config.pbtxt``: the input tensor and ``{cells: (score output, bins output)}``."""
    from services.triton.model_config import read_config

    config = read_config(repository / MODEL_NAME / "config.pbtxt")
    (image,) = config.input
    scores = {int(o.dims[0]): o for o in config.output if len(o.dims) == 1}
    bins = {int(o.dims[0]): o for o in config.output if len(o.dims) == 2}
    if sorted(scores) != sorted(bins):
        raise ValueError(f"{repository / MODEL_NAME}/config.pbtxt: score and bin outputs do not pair up by cells")
    return image, {cells: (scores[cells], bins[cells]) for cells in scores}


def _raw_levels(raw_path: Path, height: int, width: int) -> dict[int, dict[str, str]]:
    """{cells: {"scores": output name, "bins": output name}} of the converted graph, found by
    running it once (its output shapes are not in the graph)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(raw_path), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, height, width), np.float32)
    names = [o.name for o in session.get_outputs()]
    shapes = {n: v.shape for n, v in zip(names, session.run(names, {session.get_inputs()[0].name: x}))}
    levels: dict[int, dict[str, str]] = {}
    for name, shape in shapes.items():
        kind = "scores" if shape[2] == NUM_CLASSES else "bins"
        levels.setdefault(shape[1], {})[kind] = name
    return levels


def build(raw_path: Path, repository: Path) -> Path:
    """Write ``repository/person_detector/1/model.onnx``; returns its path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    image, served = served_tensors(repository)
    height, width, _ = (int(d) for d in image.dims)
    levels = _raw_levels(raw_path, height, width)
    if sorted(levels) != sorted(served):
        raise ValueError(f"{raw_path} has grids of {sorted(levels)} cells; config.pbtxt says {sorted(served)}")
    bin_values = {int(b.dims[1]) for _, b in served.values()}

    model = onnx.load(str(raw_path))
    graph = model.graph
    for i, init in enumerate(graph.initializer):          # [1, C, -1] -> [0, C, -1]: keep the batch
        value = numpy_helper.to_array(init)
        if value.shape == (3,) and value[0] == 1 and value[2] == -1 and value[1] in (NUM_CLASSES, *bin_values):
            graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array([0, value[1], -1], value.dtype), init.name))
    (raw_input,) = graph.input
    raw_input_name = raw_input.name
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(image.name, TensorProto.UINT8, ["batch", height, width, 3]))
    graph.initializer.extend([
        numpy_helper.from_array(np.array([2, 1, 0], np.int64), "serving/bgr_order"),
        numpy_helper.from_array(np.array(MEAN_BGR, np.float32), "serving/mean"),
        numpy_helper.from_array((1.0 / np.array(STD_BGR, np.float64)).astype(np.float32), "serving/inv_std"),
        numpy_helper.from_array(np.array([PERSON_CLASS], np.int64), "serving/person_class"),
    ])
    pre = [
        helper.make_node("Cast", [image.name], ["serving/float"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["serving/float", "serving/bgr_order"], ["serving/bgr"], axis=3),
        helper.make_node("Sub", ["serving/bgr", "serving/mean"], ["serving/centred"]),
        helper.make_node("Mul", ["serving/centred", "serving/inv_std"], ["serving/normalised"]),
        helper.make_node("Transpose", ["serving/normalised"], [raw_input_name], perm=[0, 3, 1, 2]),
    ]
    post = []
    for cells, (scores_out, bins_out) in served.items():
        post += [
            helper.make_node("Gather", [levels[cells]["scores"], "serving/person_class"],
                             [f"serving/person_{cells}"], axis=2),
            helper.make_node("Squeeze", [f"serving/person_{cells}", "serving/squeeze_axis"], [scores_out.name]),
            helper.make_node("Identity", [levels[cells]["bins"]], [bins_out.name]),
        ]
    graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "serving/squeeze_axis"))
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.output[:]
    for pair in served.values():
        for out in pair:
            dims = ["batch", *(int(d) for d in out.dims)]
            graph.output.append(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, dims))
    del graph.value_info[:]
    onnx.checker.check_model(model)
    out = repository / MODEL_NAME / "1" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


def check(raw_path: Path, served_path: Path, repository: Path, photo: Path) -> float:
    """Largest difference between the served graph (bytes, batch of 2: the photo and its mirror) and
    the converted graph (normalised here, one frame a call); raises above 1e-4."""
    import cv2
    import onnxruntime as ort

    image, served = served_tensors(repository)
    height, width, _ = (int(d) for d in image.dims)
    bgr = cv2.imread(str(photo))
    if bgr is None:
        raise SystemExit(f"cannot read {photo}")
    frame = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    frames_bgr = np.stack([frame, frame[:, ::-1]])
    session = ort.InferenceSession(str(served_path), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {image.name: np.ascontiguousarray(frames_bgr[..., ::-1])})))
    raw = ort.InferenceSession(str(raw_path), providers=["CPUExecutionProvider"])
    levels = _raw_levels(raw_path, height, width)
    worst = 0.0
    for k, f in enumerate(frames_bgr):
        x = (f.astype(np.float32) - np.array(MEAN_BGR, np.float32)) / np.array(STD_BGR, np.float32)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        out = dict(zip([o.name for o in raw.get_outputs()], raw.run(None, {raw.get_inputs()[0].name: x})))
        for cells, (scores_out, bins_out) in served.items():
            want_scores = out[levels[cells]["scores"]][0][:, PERSON_CLASS]
            want_bins = out[levels[cells]["bins"]][0]
            worst = max(worst, float(np.abs(got[scores_out.name][k] - want_scores).max()),
                        float(np.abs(got[bins_out.name][k] - want_bins).max()))
    if worst > 1e-4:
        raise SystemExit(f"{served_path} differs from {raw_path} by {worst:.3g} (> 1e-4)")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make NanoDet's tf2onnx output the served person_detector model")
    parser.add_argument("raw", type=Path, help="tf2onnx's output (batch -1)")
    parser.add_argument("--repository", type=Path, default=Path(__file__).resolve().parents[1] / "repository",
                        help="model repository to write person_detector/1/model.onnx into; its config.pbtxt "
                             "describes the tensors (default services/triton/repository)")
    parser.add_argument("--check-image", type=Path, help="a photo to compare served and converted graphs on")
    args = parser.parse_args(argv)
    repository = args.repository
    out = build(args.raw, repository)
    print(f"person detector: wrote {out} ({out.stat().st_size / 1e6:.1f} MB)", flush=True)
    if args.check_image:
        worst = check(args.raw, out, repository, args.check_image)
        print(f"person detector: served graph vs converted graph on {args.check_image.name}, batch of 2: "
              f"largest difference {worst:.2g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
