"""Style losses: audio features, AF and MRSTFT losses (docs/design.md §5)."""

from diffmst_lite.losses.style import AFWeights, AudioFeatureLoss, MRSTFTLoss

__all__ = ["AFWeights", "AudioFeatureLoss", "MRSTFTLoss"]
