"""diffmst-lite: a small, readable Differentiable Mixing Style Transfer.

Vanka, Steinmetz, Rolland, Reiss, Fazekas, "Diff-MST: Differentiable Mixing Style
Transfer", ISMIR 2024 (arXiv:2407.08889).
"""

import os

# torchcomp's compressor kernel is a numba loop that is parallel over the batch.
# numba's worker threads and PyTorch's intra-op threads then compete for the same
# cores, and every later PyTorch op slows down (measured 4x on the console's
# forward+backward with 2 cores). One numba thread avoids that; it must be set
# before numba is first imported, so it lives here. Set NUMBA_NUM_THREADS to override.
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

__version__ = "0.1.0"
