"""Files: one atomic writer, audio file I/O and resampling (docs/design.md §3)."""

