"""Using a model: inference, test-time optimisation and evaluation (docs/design.md §7)."""

from diffmst_lite.mixing.inference import DEFAULT_CHECKPOINT, load_model
from diffmst_lite.mixing.optimize import optimize_params
from diffmst_lite.mixing.evaluate import equal_loudness_params, score, sections

__all__ = ["DEFAULT_CHECKPOINT", "equal_loudness_params", "load_model", "optimize_params", "score", "sections"]
