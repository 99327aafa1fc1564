"""Signal processing with no parameter table: gains, biquads and K-weighting, FFT convolution, dynamics, panning, loudness (docs/design.md §3-§4)."""

