"""The training loop, run directories and DDP (docs/design.md §6)."""

