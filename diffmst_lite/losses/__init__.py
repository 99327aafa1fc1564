"""Style losses: audio features, AF and MRSTFT losses (docs/design.md §5)."""

from diffmst_lite.losses.style import AFWeights, AudioFeatureLoss, MRSTFTLoss, af_weights

__all__ = ["AFWeights", "AudioFeatureLoss", "MRSTFTLoss", "af_weights"]
