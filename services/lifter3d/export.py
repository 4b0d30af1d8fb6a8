"""Shrink a lifter checkpoint for shipping: keep weights + config, optionally store floats as float16.

    python -m services.lifter3d.export IN.pt OUT.pt --half

:func:`services.lifter3d.lift.load_lifter` reads both precisions (weights are cast back to float32 on load).
"""
from __future__ import annotations

import argparse

import torch

from services.lifter3d.lift import _safe_load


def export(src: str, dst: str, half: bool = False) -> None:
    """Copy ``model``, ``config``, ``epoch``, ``val`` and ``format`` of ``src`` into ``dst``."""
    ckpt = _safe_load(src, "cpu")
    state = ckpt["model"]
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    keep = {k: ckpt[k] for k in ("config", "epoch", "val", "format") if k in ckpt}
    torch.save({"model": state, **keep, "stored_dtype": "float16" if half else "float32"}, dst)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="checkpoint written by services.lifter3d.train")
    p.add_argument("dst", help="output file")
    p.add_argument("--half", action="store_true", help="store floating-point tensors as float16")
    args = p.parse_args(argv)
    export(args.src, args.dst, args.half)


if __name__ == "__main__":
    main()
