"""BlazePose's .tflite models -> ONNX graphs, op by op, so that GPU nodes run them in Triton's ONNX
Runtime backend under the same names and tensors as the LiteRT models.

    python -m services.triton.tflite_to_onnx [--repository services/triton/repository] [--force]

The .tflite flatbuffer is read with the ``tflite`` package (its schema). The weights in these files
are float16 (``DEQUANTIZE``) and partly block-sparse (``DENSIFY``); their float32 values are taken
from a LiteRT interpreter run once with every tensor preserved, so the graph gets exactly the
numbers LiteRT computes with. The graph itself is built here: activations are kept channels first
(NCHW, what ONNX convolutions take) from the input transpose to the output transposes, and each
TFLite op becomes its ONNX equivalent: CONV_2D and DEPTHWISE_CONV_2D (Conv with explicit SAME
padding and the fused activation), ADD, PAD, MAX_POOL_2D, RESIZE_BILINEAR (Resize with the same
coordinate mode), DEPTH_TO_SPACE (DCR order, TensorFlow's), RESHAPE (in channels-last order, batch
kept), CONCATENATION, LOGISTIC. Anything else stops the conversion naming the op.

The ONNX model takes what the served model takes: ``image`` UINT8 ``[N, H, W, 3]``, scaled by the
config's ``input_scale`` / ``input_offset`` inside the graph; the batch is dynamic (the .tflite files
have a batch of one). Outputs carry the Triton names (``regressors``, ``landmarks``, ...), channels
last as LiteRT gives them.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPSET = 17
SAME, VALID = 0, 1


class UnsupportedOp(ValueError):
    """The .tflite file uses an op this converter does not translate."""


@dataclass(frozen=True)
class ConversionSpec:
    """What one served model needs: the .tflite file, the Triton input name and its scaling, and
    Triton output name -> .tflite output tensor name."""

    tflite_file: Path
    input_name: str
    input_scale: float
    input_offset: float
    outputs: dict[str, str]


def _op_names() -> dict[int, str]:
    from tflite.BuiltinOperator import BuiltinOperator
    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


def _options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


class _Builder:
    """Accumulates ONNX nodes and initializers; tensor names are ``t<index>`` for TFLite tensors."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value: np.ndarray, hint: str = "const") -> str:
        from onnx import numpy_helper
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        from onnx import helper
        output = output or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME padding of one spatial axis: (before, after), the odd pixel after."""
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def convert(spec: ConversionSpec):
    """The ``onnx.ModelProto`` of ``spec``'s .tflite file (see the module docstring)."""
    import onnx
    import tflite
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from onnx import TensorProto, helper
    from tflite.ConcatenationOptions import ConcatenationOptions
    from tflite.Conv2DOptions import Conv2DOptions
    from tflite.DepthToSpaceOptions import DepthToSpaceOptions
    from tflite.DepthwiseConv2DOptions import DepthwiseConv2DOptions
    from tflite.Pool2DOptions import Pool2DOptions
    from tflite.ResizeBilinearOptions import ResizeBilinearOptions
    from tflite.AddOptions import AddOptions

    data = Path(spec.tflite_file).read_bytes()
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    names = _op_names()

    # Every constant's float32 value as LiteRT computes with it (float16 and sparse weights decoded).
    interpreter = Interpreter(model_content=data, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    (tfl_input,) = [graph.Inputs(i) for i in range(graph.InputsLength())]
    in_detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(in_detail["index"], np.zeros(in_detail["shape"], np.float32))
    interpreter.invoke()

    def shape(t: int) -> list[int]:
        tensor = graph.Tensors(t)
        return tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []

    def has_data(t: int) -> bool:
        buffer = model.Buffers(graph.Tensors(t).Buffer())
        return buffer is not None and (buffer.DataLength() > 0 or buffer.Size() > 0)

    b = _Builder()
    layout: dict[int, str] = {}          # activation tensor -> "nchw" (4-D, channels first) or "plain"
    constants: dict[int, np.ndarray] = {}

    def constant(t: int) -> np.ndarray:
        if t not in constants:
            constants[t] = np.array(interpreter.get_tensor(t))
        return constants[t]

    def is_constant(t: int) -> bool:
        return t in constants or (t not in layout and has_data(t))

    def ref(t: int) -> str:
        return f"t{t}"

    def activation(x: str, code: int, out: str) -> str:
        if code == 0:
            return b.node("Identity", [x], out)
        if code == 1:
            return b.node("Relu", [x], out)
        if code == 2:
            return b.node("Clip", [x, b.const(np.float32(-1)), b.const(np.float32(1))], out)
        if code == 3:
            return b.node("Clip", [x, b.const(np.float32(0)), b.const(np.float32(6))], out)
        if code == 4:
            return b.node("Tanh", [x], out)
        raise UnsupportedOp(f"fused activation {code}")

    def as_nchw_operand(t: int) -> str:
        """An ADD operand: activations as they are, constants laid out to broadcast over NCHW."""
        if not is_constant(t):
            return ref(t)
        value = constant(t).astype(np.float32)
        if value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        elif value.ndim == 1:
            value = value.reshape(1, -1, 1, 1)
        elif value.ndim != 0:
            raise UnsupportedOp(f"ADD with a constant of shape {value.shape}")
        return b.const(value, "addend")

    def to_nhwc(t: int) -> str:
        return b.node("Transpose", [ref(t)], perm=[0, 2, 3, 1]) if layout.get(t) == "nchw" else ref(t)

    # input: uint8 NHWC -> float, scaled as the served model does, channels first
    x = b.node("Cast", [spec.input_name], to=TensorProto.FLOAT)
    x = b.node("Mul", [x, b.const(np.float32(spec.input_scale))])
    x = b.node("Add", [x, b.const(np.float32(spec.input_offset))])
    b.node("Transpose", [x], ref(tfl_input), perm=[0, 3, 1, 2])
    layout[tfl_input] = "nchw"

    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        ins = [t for t in op.InputsAsNumpy().tolist()]
        out = op.Outputs(0)
        if kind in ("DEQUANTIZE", "DENSIFY"):
            constant(out)                      # a weight: taken as LiteRT decoded it
            continue
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            depthwise = kind == "DEPTHWISE_CONV_2D"
            opts = _options(op, DepthwiseConv2DOptions if depthwise else Conv2DOptions)
            weights = constant(ins[1]).astype(np.float32)
            if depthwise:                      # [1, kh, kw, C*M] -> [C*M, 1, kh, kw]
                w = weights.transpose(3, 0, 1, 2)
                group = shape(ins[0])[3]
            else:                              # [O, kh, kw, I] -> [O, I, kh, kw]
                w = weights.transpose(0, 3, 1, 2)
                group = 1
            kh, kw = w.shape[2:]
            _, h, wd, _ = shape(ins[0])
            dh, dw = opts.DilationHFactor() or 1, opts.DilationWFactor() or 1
            if opts.Padding() == SAME:
                (pt, pb), (pl, pr) = (_same_pads(h, kh, opts.StrideH(), dh), _same_pads(wd, kw, opts.StrideW(), dw))
            else:
                pt = pb = pl = pr = 0
            inputs = [ref(ins[0]), b.const(w, "weight")]
            if len(ins) > 2 and ins[2] >= 0:
                inputs.append(b.const(constant(ins[2]).astype(np.float32), "bias"))
            y = b.node("Conv", inputs, kernel_shape=[kh, kw], strides=[opts.StrideH(), opts.StrideW()],
                       dilations=[dh, dw], pads=[pt, pl, pb, pr], group=group)
            activation(y, opts.FusedActivationFunction(), ref(out))
            layout[out] = "nchw"
        elif kind == "ADD":
            opts = _options(op, AddOptions)
            if all(layout.get(t) == "nchw" or is_constant(t) for t in ins[:2]):
                y = b.node("Add", [as_nchw_operand(ins[0]), as_nchw_operand(ins[1])])
                layout[out] = "nchw"
            else:
                y = b.node("Add", [ref(ins[0]), ref(ins[1])])
                layout[out] = "plain"
            activation(y, opts.FusedActivationFunction(), ref(out))
        elif kind == "PAD":
            pads = constant(ins[1]).astype(np.int64)          # [[before, after]] per NHWC axis
            if layout.get(ins[0]) == "nchw":
                pads = pads[[0, 3, 1, 2]]
            b.node("Pad", [ref(ins[0]), b.const(np.concatenate([pads[:, 0], pads[:, 1]]), "pads")], ref(out),
                   mode="constant")
            layout[out] = layout.get(ins[0], "plain")
        elif kind == "MAX_POOL_2D":
            opts = _options(op, Pool2DOptions)
            _, h, wd, _ = shape(ins[0])
            kh, kw = opts.FilterHeight(), opts.FilterWidth()
            if opts.Padding() == SAME:
                (pt, pb), (pl, pr) = _same_pads(h, kh, opts.StrideH()), _same_pads(wd, kw, opts.StrideW())
            else:
                pt = pb = pl = pr = 0
            y = b.node("MaxPool", [ref(ins[0])], kernel_shape=[kh, kw], strides=[opts.StrideH(), opts.StrideW()],
                       pads=[pt, pl, pb, pr])
            activation(y, opts.FusedActivationFunction(), ref(out))
            layout[out] = "nchw"
        elif kind == "RESIZE_BILINEAR":
            opts = _options(op, ResizeBilinearOptions)
            _, h, wd, _ = shape(ins[0])
            oh, ow = (int(v) for v in constant(ins[1]))
            mode = ("align_corners" if opts.AlignCorners() else
                    "half_pixel" if opts.HalfPixelCenters() else "asymmetric")
            scales = b.const(np.array([1, 1, oh / h, ow / wd], np.float32), "scales")
            b.node("Resize", [ref(ins[0]), "", scales], ref(out), mode="linear",
                   coordinate_transformation_mode=mode)
            layout[out] = "nchw"
        elif kind == "DEPTH_TO_SPACE":
            opts = _options(op, DepthToSpaceOptions)
            b.node("DepthToSpace", [ref(ins[0])], ref(out), blocksize=opts.BlockSize(), mode="DCR")
            layout[out] = "nchw"
        elif kind == "RESHAPE":
            target = np.array(shape(out), np.int64)
            if target.size and target[0] == 1:
                target[0] = 0                  # keep the batch (the .tflite files have a batch of one)
            y = b.node("Reshape", [to_nhwc(ins[0]), b.const(target, "shape")])
            if target.size == 4:
                b.node("Transpose", [y], ref(out), perm=[0, 3, 1, 2])
                layout[out] = "nchw"
            else:
                b.node("Identity", [y], ref(out))
                layout[out] = "plain"
        elif kind == "CONCATENATION":
            opts = _options(op, ConcatenationOptions)
            axis = opts.Axis()
            rank = len(shape(out))
            axis = axis + rank if axis < 0 else axis
            if all(layout.get(t) == "nchw" for t in ins):
                axis = [0, 2, 3, 1][axis]
                layout[out] = "nchw"
                parts = [ref(t) for t in ins]
            else:
                layout[out] = "plain"
                parts = [to_nhwc(t) for t in ins]
            y = b.node("Concat", parts, axis=axis)
            activation(y, opts.FusedActivationFunction(), ref(out))
        elif kind == "LOGISTIC":
            b.node("Sigmoid", [ref(ins[0])], ref(out))
            layout[out] = layout.get(ins[0], "plain")
        else:
            raise UnsupportedOp(f"{Path(spec.tflite_file).name}: op {kind} (operator {i}) is not converted")

    by_name = {graph.Tensors(graph.Outputs(i)).Name().decode(): graph.Outputs(i) for i in range(graph.OutputsLength())}
    outputs = []
    for served, tfl_name in spec.outputs.items():
        if tfl_name not in by_name:
            raise ValueError(f"{Path(spec.tflite_file).name} has no output {tfl_name!r} (for {served})")
        t = by_name[tfl_name]
        if layout.get(t) == "nchw":
            b.node("Transpose", [ref(t)], served, perm=[0, 2, 3, 1])
        else:
            b.node("Identity", [ref(t)], served)
        dims = ["batch", *shape(t)[1:]]
        outputs.append(helper.make_tensor_value_info(served, TensorProto.FLOAT, dims))
    in_dims = ["batch", *shape(tfl_input)[1:]]
    graph_proto = helper.make_graph(b.nodes, Path(spec.tflite_file).stem,
                                    [helper.make_tensor_value_info(spec.input_name, TensorProto.UINT8, in_dims)],
                                    outputs, b.initializers)
    onnx_model = helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="hpe3d tflite_to_onnx")
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    return onnx_model


def spec_from_config(folder: Path) -> ConversionSpec:
    """What to convert, from a LiteRT model's config.pbtxt (``tflite_file``, ``tflite_tensors``,
    ``input_scale``, ``input_offset``): the one description of the model's tensors."""
    from google.protobuf import json_format

    from services.triton.model_config import read_config
    from services.triton.litert_runner import bindings_from_config, input_scaling, model_file

    config = json_format.MessageToDict(read_config(folder / "config.pbtxt"), preserving_proto_field_name=True)
    inputs, outputs = bindings_from_config(config)
    scale, offset = input_scaling(config)
    return ConversionSpec(model_file(config, folder / "1"), inputs[0].name, scale, offset,
                          {b.name: b.tflite_name for b in outputs})


def onnx_path(tflite_file: Path) -> Path:
    """Where the conversion of ``tflite_file`` goes: beside it, ``.onnx``."""
    return Path(tflite_file).with_suffix(".onnx")


def main(argv: list[str] | None = None) -> int:
    from services.triton.repositories import REPOSITORY_DIR

    parser = argparse.ArgumentParser(description="Convert the BlazePose .tflite models of the Triton model "
                                                 "repository to ONNX (written beside the .tflite files)")
    parser.add_argument("--repository", type=Path, default=REPOSITORY_DIR,
                        help="repository whose LiteRT models to convert")
    parser.add_argument("--force", action="store_true", help="convert even when the .onnx file is newer")
    args = parser.parse_args(argv)
    import onnx

    from services.triton.model_config import model_repository_dirs, parameters, read_config

    for folder in model_repository_dirs(args.repository):
        if "tflite_file" not in parameters(read_config(folder / "config.pbtxt")):
            continue
        spec = spec_from_config(folder)
        if not spec.tflite_file.is_file():
            print(f"error: {spec.tflite_file} is missing: run `make models` first", file=sys.stderr)
            return 2
        out = onnx_path(spec.tflite_file.resolve())
        if out.is_file() and out.stat().st_mtime >= spec.tflite_file.stat().st_mtime and not args.force:
            print(f"{out} is up to date")
            continue
        onnx.save(convert(spec), str(out))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
