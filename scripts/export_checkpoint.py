"""Export a training run's checkpoint as the shipped, weights-only model file.

    .venv/bin/python scripts/export_checkpoint.py runs/stage2/last.pt diffmst_lite/checkpoints/lite.pt

Keeps the model configuration and weights (no optimiser or RNG state), the run's
training configuration (chapter 13 shows it) and the step.
"""

import sys
from pathlib import Path

from diffmst_lite.model import DiffMST
from diffmst_lite.model.diffmst import read_checkpoint


def main(source: str, target: str) -> None:
    ckpt = read_checkpoint(source)
    model = DiffMST.load_checkpoint(source)
    train_config = dict(ckpt.get("train_config", {}), out=None)
    data = ", ".join(Path(root).name for root in str(train_config.get("data") or "").split(",") if root)
    if data:  # the folder names, not this machine's paths
        train_config["data"] = data
    if train_config.get("init"):
        train_config["init"] = "/".join(Path(train_config["init"]).parts[-2:])
    model.save_checkpoint(target, extra={"train_config": train_config, "step": int(ckpt.get("step", 0)),
                                         "note": f"last phase trained on: {data or 'unknown'}"})
    print(f"wrote {target}: {model.num_parameters() / 1e6:.2f} M parameters, step {int(ckpt.get('step', 0))}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
