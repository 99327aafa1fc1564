"""Export a training run's checkpoint as the shipped, weights-only model file.

    .venv/bin/python scripts/export_checkpoint.py runs/stage2/last.pt diffmst_lite/checkpoints/lite.pt

Keeps the model configuration and weights (no optimiser or RNG state), the run's
training configuration (chapter 13 shows it) and the step.
"""

import sys

from diffmst_lite.model import DiffMST
from diffmst_lite.model.diffmst import read_checkpoint


def main(source: str, target: str) -> None:
    ckpt = read_checkpoint(source)
    model = DiffMST.load_checkpoint(source)
    train_config = dict(ckpt.get("train_config", {}), out=None)
    model.save_checkpoint(target, extra={"train_config": train_config, "step": int(ckpt.get("step", 0)),
                                         "note": "trained on synthetic songs only (MUSDB18 was not available)"})
    print(f"wrote {target}: {model.num_parameters() / 1e6:.2f} M parameters, step {int(ckpt.get('step', 0))}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
