"""Shrink lifter checkpoints for shipping: keep weights + config, optionally average several, optionally float16.

    python -m training.export IN.pt OUT.pt --half
    python -m training.export EPOCH15.pt EPOCH16.pt EPOCH17.pt OUT.pt   # mean of the weights

:func:`services.lifter3d.lift.load_lifter` reads both precisions (weights are cast back to float32 on load).
"""
from __future__ import annotations

import argparse

import torch

from services.lifter3d.lift import _safe_load


def export(src: str | list[str], dst: str, half: bool = False) -> None:
    """Write ``model`` (the mean over ``src`` files when several are given) and ``config`` to ``dst``.

    Args:
        src: one checkpoint written by :mod:`training.train` (``*.pt`` or ``*.last.pt``), or a list of
            checkpoints of the same model whose floating-point tensors are averaged (integer tensors such as
            batch-norm counters are taken from the last one).
        dst: output file.
        half: store floating-point tensors as float16.
    """
    paths = [src] if isinstance(src, str) else list(src)
    ckpts = [_safe_load(p, "cpu") for p in paths]
    state = {}
    for key, last in ckpts[-1]["model"].items():
        if last.is_floating_point():
            state[key] = (sum(c["model"][key].double() for c in ckpts) / len(ckpts)).to(last.dtype)
        else:
            state[key] = last
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    keep = {k: ckpts[-1][k] for k in ("config", "epoch", "val", "format") if k in ckpts[-1]}
    if len(ckpts) > 1:
        keep["averaged_epochs"] = [c.get("epoch") for c in ckpts]
        keep.pop("val", None)
    torch.save({"model": state, **keep, "stored_dtype": "float16" if half else "float32"}, dst)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", nargs="+", help="checkpoint(s) written by training.train")
    p.add_argument("dst", help="output file")
    p.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    args = p.parse_args(argv)
    export(args.src[0] if len(args.src) == 1 else args.src, args.dst, args.half)


if __name__ == "__main__":
    main()
