"""The network: spectrogram encoder, transformer controller and DiffMST (docs/design.md §1, §6)."""

from diffmst_lite.model.diffmst import DiffMST, DiffMSTConfig

__all__ = ["DiffMST", "DiffMSTConfig"]
