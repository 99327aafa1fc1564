"""diffmst-lite: a small, readable Differentiable Mixing Style Transfer.

Vanka, Steinmetz, Rolland, Reiss, Fazekas, "Diff-MST: Differentiable Mixing Style
Transfer", ISMIR 2024 (arXiv:2407.08889).
"""

__version__ = "0.1.0"
