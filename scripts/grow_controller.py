"""Grow a checkpoint's controller: more transformer layers and wider output MLPs,
starting out with exactly the checkpoint's predictions (phases 10 and 12 of the README's recipe).

    .venv/bin/python scripts/grow_controller.py runs/p9/step_0000500.pt runs/grown.pt --layers 2 --mlp-hidden 512

Writes a plain model checkpoint (configuration and weights) for ``diffmst-lite train --init``;
see :meth:`diffmst_lite.model.DiffMST.grown`.
"""

import argparse
from pathlib import Path

import torch

from diffmst_lite.model import DiffMST


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="checkpoint to grow")
    parser.add_argument("target", help="where to write the grown model (must not exist)")
    parser.add_argument("--layers", type=int, default=2, help="transformer layers to add (default 2)")
    parser.add_argument("--mlp-hidden", type=int, default=512, help="hidden width of the output MLPs (default 512)")
    parser.add_argument("--seed", type=int, default=123, help="seed of the new weights (default 123)")
    args = parser.parse_args()
    if not Path(args.source).is_file():
        raise SystemExit(f"{args.source}: no such checkpoint")
    if Path(args.target).exists():
        raise SystemExit(f"{args.target} exists: give a new path")
    model = DiffMST.load_checkpoint(args.source)
    torch.manual_seed(args.seed)
    grown = model.grown(args.layers, args.mlp_hidden)
    grown.save_checkpoint(args.target)
    print(f"wrote {args.target}: {model.num_parameters() / 1e6:.2f} M -> {grown.num_parameters() / 1e6:.2f} M parameters")


if __name__ == "__main__":
    main()
